"""One split of a dataset (its images and integer labels) and a dataset's splits.

A `Split` holds its images in exactly one of three forms:
- `paths`: image files on disk (the photo benchmarks read from folders);
- `encoded`: encoded image bytes in memory (JPEG/PNG, e.g. read from TFDS);
- `images`: decoded `uint8` arrays `(N, H, W, C)` (Fashion-MNIST, digits).
Images are decoded only when a pipeline (`balanced_dataset`, `eval_dataset`)
reads them, after sampling.

Labels are the dataset's own class ids, 0-based where the dataset numbers from 1
(Cars-196 class 1 is label 0), so that train and test labels never overlap in
the class-disjoint protocol of deep metric learning.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """Images and integer labels of one split.

    Exactly one of `paths`, `encoded` and `images` is given.

    Args:
        labels: integer class labels, shape `(N,)`.
        paths: image file paths, shape `(N,)`.
        encoded: encoded image bytes (JPEG, PNG, ...), shape `(N,)`.
        images: decoded images, `uint8`, shape `(N, H, W, C)`.
        name: the split's name, for messages ("train", "test", ...).

    Example:

    >>> import numpy as np
    >>> import keras_mdr.data
    >>> split = keras_mdr.data.Split(
    ...     labels=[0, 0, 1], images=np.zeros((3, 8, 8, 1), "uint8"), name="toy")
    >>> split
    Split(name='toy', 3 images of 2 classes, in memory (8, 8, 1))
    >>> split.with_classes([1]).labels.tolist()
    [1]
    """

    labels: np.ndarray
    paths: np.ndarray | None = None
    encoded: np.ndarray | None = None
    images: np.ndarray | None = None
    name: str = ""

    def __post_init__(self):
        sources = [
            field
            for field in ("paths", "encoded", "images")
            if getattr(self, field) is not None
        ]
        if len(sources) != 1:
            raise ValueError(
                "Expected exactly one of `paths`, `encoded` or `images`. "
                f"Received: {sources or 'none'}"
            )
        labels = np.asarray(self.labels)
        if labels.size == 0:
            labels = labels.astype(np.int64)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                "Expected `labels` to be a 1-D array of integers. "
                f"Received: labels with shape={labels.shape}, dtype={labels.dtype}"
            )
        object.__setattr__(self, "labels", labels.astype(np.int64))
        if self.paths is not None:
            values = np.asarray([str(path) for path in self.paths], dtype=object)
            object.__setattr__(self, "paths", values)
        elif self.encoded is not None:
            values = np.asarray(list(self.encoded), dtype=object)
            object.__setattr__(self, "encoded", values)
        else:
            values = np.asarray(self.images)
            if values.dtype != np.uint8 or values.ndim != 4:
                raise ValueError(
                    "Expected `images` to be uint8 with shape (N, H, W, C). "
                    f"Received: shape={values.shape}, dtype={values.dtype}"
                )
            object.__setattr__(self, "images", values)
        if len(values) != len(labels):
            raise ValueError(
                f"Expected as many images as labels. Received: {len(values)} "
                f"images and {len(labels)} labels (split name={self.name!r})"
            )

    def __len__(self):
        return len(self.labels)

    @property
    def source(self):
        """Where the images are: "paths", "encoded" or "images"."""
        if self.paths is not None:
            return "paths"
        return "encoded" if self.encoded is not None else "images"

    @property
    def classes(self):
        """The sorted distinct labels."""
        return np.unique(self.labels)

    @property
    def num_classes(self):
        return len(self.classes)

    def take(self, indices, name=None):
        """The sub-split of the examples at `indices`, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        return Split(
            labels=self.labels[indices],
            paths=None if self.paths is None else self.paths[indices],
            encoded=None if self.encoded is None else self.encoded[indices],
            images=None if self.images is None else self.images[indices],
            name=self.name if name is None else name,
        )

    def with_classes(self, classes, name=None):
        """The sub-split of the examples whose label is in `classes`."""
        keep = np.isin(self.labels, np.asarray(list(classes), dtype=np.int64))
        return self.take(np.flatnonzero(keep), name=name)

    def __repr__(self):
        if self.source == "images":
            where = f"in memory {tuple(self.images.shape[1:])}"
        else:
            where = "from files" if self.source == "paths" else "encoded in memory"
        return (
            f"Split(name={self.name!r}, {len(self)} images of "
            f"{self.num_classes} classes, {where})"
        )


def concatenate_splits(splits, name):
    """One split holding the examples of `splits` (all of one source), in order."""
    sources = {split.source for split in splits}
    if len(sources) != 1:
        raise ValueError(
            f"Expected splits of one source. Received: sources={sorted(sources)}"
        )
    (source,) = sources
    values = np.concatenate([getattr(split, source) for split in splits])
    labels = np.concatenate([split.labels for split in splits])
    return Split(labels=labels, name=name, **{source: values})


def split_validation(train, validation_classes, seed=0):
    """Carves a validation split from the training classes, by class.

    The validation classes are removed from the training split, so the three
    splits train / validation / test have pairwise disjoint classes, and epochs
    can be chosen on validation without looking at the test set.

    Args:
        train: the training `Split`.
        validation_classes: how many training classes go to validation: an
            int (a number of classes, 0 for none) or a float in (0, 1) (a
            fraction of the training classes, rounded, at least one class).
        seed: seeds the choice of the validation classes.

    Returns:
        `(train, validation)`; `validation` is None when `validation_classes`
        is 0.

    Example:

    >>> import numpy as np
    >>> import keras_mdr.data
    >>> split = keras_mdr.data.Split(
    ...     labels=np.repeat(np.arange(10), 2),
    ...     images=np.zeros((20, 8, 8, 1), "uint8"))
    >>> train, validation = keras_mdr.data.split_validation(split, 0.2, seed=1)
    >>> train.num_classes, validation.num_classes
    (8, 2)
    """
    classes = train.classes
    if isinstance(validation_classes, bool) or not isinstance(
        validation_classes, (int, np.integer, float, np.floating)
    ):
        raise ValueError(
            "Expected `validation_classes` to be an int or a float in (0, 1). "
            f"Received: validation_classes={validation_classes!r}"
        )
    if isinstance(validation_classes, (float, np.floating)):
        if not 0.0 < validation_classes < 1.0:
            raise ValueError(
                "Expected a float `validation_classes` in (0, 1) (a fraction of "
                f"the training classes). Received: validation_classes={validation_classes}"
            )
        count = max(1, int(round(validation_classes * len(classes))))
    else:
        count = int(validation_classes)
    if count == 0:
        return train, None
    if not 0 < count < len(classes):
        raise ValueError(
            "Expected `validation_classes` between 0 and the number of training "
            f"classes minus one ({len(classes) - 1}). "
            f"Received: validation_classes={validation_classes}"
        )
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(classes, size=count, replace=False))
    validation = train.with_classes(chosen, name="validation")
    rest = train.with_classes(np.setdiff1d(classes, chosen), name=train.name)
    return rest, validation


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetSplits:
    """The class-disjoint splits of one dataset, as `load_dataset` returns them.

    Args:
        name: the dataset's name, as given to `load_dataset`.
        train: the training split.
        test: the test split. For In-Shop it is `query` followed by `gallery`.
        validation: the validation split carved from the training classes, or
            None.
        query: In-Shop's query images (None for the other datasets).
        gallery: In-Shop's gallery images (None for the other datasets).
        class_names: a dict from label to class name, where the dataset has
            names, else None.

    Example:

    >>> import keras_mdr.data
    >>> splits = keras_mdr.data.load_dataset("digits", validation_classes=1)
    >>> splits.train.num_classes, splits.validation.num_classes
    (4, 1)
    >>> splits.test.classes.tolist()
    [5, 6, 7, 8, 9]
    """

    name: str
    train: Split
    test: Split
    validation: Split | None = None
    query: Split | None = None
    gallery: Split | None = None
    class_names: dict | None = None

    def splits(self):
        """A dict from split name to `Split`, for the splits that exist."""
        names = ("train", "validation", "test", "query", "gallery")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def __repr__(self):
        parts = ", ".join(
            f"{name}={len(split)} images/{split.num_classes} classes"
            for name, split in self.splits().items()
        )
        return f"DatasetSplits(name={self.name!r}, {parts})"


def split_by_class(name, every, num_train, num_classes, class_names=None):
    """The class-disjoint protocol: labels `[0, num_train)` train, the rest test.

    Args:
        name: the dataset's name.
        every: a `Split` holding all images of the dataset.
        num_train: how many classes (the first ones) are for training.
        num_classes: the number of classes in all.
        class_names: optional dict from label to name.

    Returns:
        `DatasetSplits` with train and test.
    """
    return DatasetSplits(
        name=name,
        train=every.with_classes(range(num_train), name="train"),
        test=every.with_classes(range(num_train, num_classes), name="test"),
        class_names=class_names,
    )
