"""One entry point to every benchmark's splits."""

import dataclasses

from keras_mdr.data import image_reader
from keras_mdr.data import split as split_lib
from keras_mdr.data.datasets import cars196
from keras_mdr.data.datasets import cub200
from keras_mdr.data.datasets import digits
from keras_mdr.data.datasets import fashion_mnist
from keras_mdr.data.datasets import image_folder
from keras_mdr.data.datasets import inshop
from keras_mdr.data.datasets import sop

DATASET_NAMES = ("cars196", "cub200", "sop", "inshop", "folder", "fashion_mnist", "digits")


def _loader(name):
    loaders = {
        "cars196": cars196.load_cars196,
        "cub200": cub200.load_cub200,
        "sop": sop.load_sop,
        "inshop": inshop.load_inshop,
        "folder": image_folder.load_image_folder,
        "fashion_mnist": fashion_mnist.load_fashion_mnist,
        "digits": digits.load_digits,
    }
    if name not in loaders:
        raise ValueError(
            f"Expected a dataset name in {list(DATASET_NAMES)}. Received: name={name!r}"
        )
    return loaders[name]


def load_dataset(name, data_dir=None, validation_classes=0, seed=0, check_images="header",
                 strict=False, **options):
    """The class-disjoint splits of a deep-metric-learning benchmark.

    | name | source | train / test |
    |---|---|---|
    | "cars196" | `car_ims/` + `cars_annos.mat`, the devkit, or TFDS `cars196` | classes 1-98 / 99-196 |
    | "cub200" | `CUB_200_2011/` or TFDS `caltech_birds2011` | classes 1-100 / 101-200 |
    | "sop" | `Stanford_Online_Products/Ebay_*.txt` or TFDS | Ebay_train / Ebay_test |
    | "inshop" | `img/` + `list_eval_partition.txt` | train / query + gallery |
    | "folder" | `data_dir/<class>/<image>` | first / last classes by name |
    | "fashion_mnist" | IDX files | classes 0-4 / 5-9 |
    | "digits" | scikit-learn, embedded | classes 0-4 / 5-9 |

    Args:
        name: one of `keras_mdr.data.DATASET_NAMES`.
        data_dir: where the data is (see each loader in
            `keras_mdr.data.datasets`); None: TFDS's default directory for the
            TFDS-backed sets, /usr/share/datasets/fashion-mnist for
            Fashion-MNIST, nothing for digits.
        validation_classes: training classes moved to a validation split: an
            int count, or a float fraction in (0, 1); 0 for none.
        seed: seeds the choice of validation classes.
        check_images: "header" (default, fast), "decode" (slow, thorough) or
            None: check every image file up front and drop unreadable ones
            with a warning (see `drop_bad_images`).
        strict: raise a `ValueError` naming unreadable files instead.
        **options: passed to the loader, e.g. `test_classes=0.5` for
            "folder".

    Returns:
        A `keras_mdr.data.DatasetSplits`.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
        FileNotFoundError: when the data is not found; the message names the
            expected layouts and where to get the data.

    Example:

    >>> import keras_mdr.data
    >>> splits = keras_mdr.data.load_dataset("digits", validation_classes=1)
    >>> splits
    DatasetSplits(name='digits', train=720 images/4 classes, validation=181 images/1 classes, test=896 images/5 classes)
    """
    loader = _loader(name)
    if check_images not in ("header", "decode", None):
        raise ValueError(
            'Expected check_images="header", "decode" or None. '
            f"Received: check_images={check_images!r}"
        )
    splits = loader(data_dir, **options)
    if check_images is not None:
        splits = _checked(splits, check_images, strict)
    train, validation = split_lib.split_validation(splits.train, validation_classes, seed)
    return dataclasses.replace(splits, train=train, validation=validation)


def _checked(splits, check, strict):
    """`splits` without their unreadable images; a query / gallery test is their union again."""
    checked = {
        key: image_reader.drop_bad_images(value, strict=strict, check=check)
        for key, value in splits.splits().items()
        if key != "test" or splits.query is None
    }
    if splits.query is not None:
        checked["test"] = split_lib.concatenate_splits(
            [checked["query"], checked["gallery"]], name="test"
        )
    return dataclasses.replace(splits, **checked)
