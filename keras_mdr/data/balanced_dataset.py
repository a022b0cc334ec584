"""Class-balanced training batches: P classes x K images each.

Every batch holds `classes_per_batch` (P) distinct classes, chosen uniformly at
random, and `images_per_class` (K) images of each, chosen uniformly without
replacement within the class, in the order class 1 x K, class 2 x K, ...
Consecutive groups of K share a label, so a batch split into R equal parts
along its first axis (what `tf.distribute` does with a global batch) gives each
replica P / R whole classes when P is a multiple of R.

Classes with fewer than K images ("small classes") are handled by
`small_classes`:
- "repeat" (default): the class keeps its chance to be drawn; its group holds
  all of its images once, then images drawn again at random from the class to
  fill K slots. Repeated images get different augmentations (different seeds),
  but a class of one image gives K views of one photo.
- "drop": such classes are never drawn (a warning counts them).

Sampling runs in the graph with stateless random ops seeded by `seed` and the
batch number, so the stream of labels and of images (and, with the "tf"
transforms, of crops and flips) is the same on every run with the same seed,
however the decoding is parallelised. Images are decoded after sampling, a
group of K per call, many groups in parallel, and batches are prefetched.
"""

import warnings

import numpy as np
import tensorflow as tf

from keras_mdr import validation
from keras_mdr.data import image_reader as image_reader_lib
from keras_mdr.data import transforms


def _sample_batch(
    seed, class_labels, class_starts, class_sizes, order, classes_per_batch, images_per_class
):
    """Draws one batch of P classes x K indices.

    Args:
        seed: int tensor of shape (2,), the batch's seed.
        class_labels, class_starts, class_sizes: per eligible class, its label
            and the start and length of its run in `order`.
        order: the split's indices sorted by class.
        classes_per_batch: P.
        images_per_class: K.

    Returns:
        `(indices, labels)`: int64 indices into the split, shape (P, K), and
        the P labels.
    """
    num_classes = class_sizes.shape[0]
    widest = max(int(np.max(class_sizes)), images_per_class)
    class_seed, image_seed, fill_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3)
    )
    class_keys = tf.random.stateless_uniform([num_classes], class_seed)
    chosen = tf.math.top_k(class_keys, classes_per_batch).indices
    sizes = tf.gather(class_sizes, chosen)
    # Distinct images: the K largest random keys among the class's slots.
    image_keys = tf.random.stateless_uniform([classes_per_batch, widest], image_seed)
    valid = tf.range(widest)[None, :] < sizes[:, None]
    image_keys = tf.where(valid, image_keys, -1.0)
    positions = tf.math.top_k(image_keys, images_per_class).indices
    # Slots past the class's size (small classes only) draw with replacement.
    fill = tf.random.stateless_uniform(
        [classes_per_batch, images_per_class], fill_seed, 0, tf.int32.max, tf.int32
    ) % sizes[:, None]
    positions = tf.where(
        tf.range(images_per_class)[None, :] < sizes[:, None], positions, fill
    )
    starts = tf.gather(class_starts, chosen)
    indices = tf.gather(order, starts[:, None] + positions)
    return indices, tf.gather(class_labels, chosen)


def balanced_dataset(split, classes_per_batch, images_per_class, transform=None, seed=0,
                     num_replicas=1, small_classes="repeat", strict=False,
                     num_parallel_calls=tf.data.AUTOTUNE, start_batch=0):
    """An endless `tf.data.Dataset` of class-balanced training batches.

    Args:
        split: a `keras_mdr.data.Split` (usually `load_dataset(...).train`).
        classes_per_batch: P, distinct classes per batch (32 in the paper;
            about 85 for SOP and In-Shop).
        images_per_class: K, images per class (4 in the paper; 3 for SOP and
            In-Shop).
        transform: a function `transform(image, seed)` (see
            `keras_mdr.data.transforms`). Default: `train_transform()` for
            photos, `grayscale_transform()` for in-memory images.
        seed: an int; the same seed gives the same stream.
        num_replicas: the number of replicas the global batch is split over;
            `classes_per_batch` must be a multiple of it, so that every
            replica's slice holds whole classes.
        small_classes: "repeat" or "drop", for classes with fewer than
            `images_per_class` images (see the module docstring).
        strict: fail with the path on an unreadable image instead of skipping
            its group (with a warning that counts skipped groups).
        num_parallel_calls: parallel decoding calls, each for one group of K.
        start_batch: the batch number the stream starts at. Batch n is the
            same whatever the start, so a run resumed at step n continues the
            stream of an uninterrupted one (skipping costs nothing: nothing
            before it is sampled or decoded).

    Returns:
        An endless dataset of `(images, labels)`: `float32` images of shape
        `(P * K, ...)` and `int64` labels of shape `(P * K,)`. Use
        `steps_per_epoch` in `fit`.

    Example:

    >>> import keras_mdr.data
    >>> splits = keras_mdr.data.load_dataset("digits")
    >>> dataset = keras_mdr.data.balanced_dataset(splits.train, 4, 3, seed=1)
    >>> images, labels = next(iter(dataset))
    >>> images.shape, labels.shape
    (TensorShape([12, 8, 8, 1]), TensorShape([12]))
    """
    classes_per_batch, images_per_class, start_batch = _check_arguments(
        classes_per_batch, images_per_class, seed, num_replicas, small_classes, start_batch)
    table = _class_table(split, classes_per_batch, images_per_class, small_classes)
    if transform is None:
        transform = transforms.default_transform(split, training=True)
    load = image_reader_lib.transformed_reader(split, transform, strict=strict)
    sample = _batch_sampler(table, classes_per_batch, images_per_class, seed)
    groups = image_reader_lib.decoded_stream(
        sample, _group_loader(load, images_per_class), start_batch, classes_per_batch, strict,
        what="class groups holding an image that failed to decode",
        num_parallel_calls=num_parallel_calls,
    )
    groups = groups.batch(classes_per_batch, drop_remainder=True)
    # The stream is already endless; `repeat` only makes its cardinality say
    # so (infinite instead of unknown), which `fit` checks.
    return groups.map(_flatten_groups).prefetch(tf.data.AUTOTUNE).repeat()


def _group_loader(load, images_per_class):
    """Decodes one class's group of K images, each with its own seed."""

    def load_group(indices, label, image_seeds, position):
        images = tf.stack([load(indices[k], image_seeds[k]) for k in range(images_per_class)])
        return images, tf.fill([images_per_class], label), position

    return load_group


def _check_arguments(classes_per_batch, images_per_class, seed, num_replicas, small_classes,
                     start_batch):
    classes_per_batch = validation.positive_int(classes_per_batch, "classes_per_batch")
    images_per_class = validation.positive_int(images_per_class, "images_per_class")
    num_replicas = validation.positive_int(num_replicas, "num_replicas")
    if not validation.is_int(seed):
        raise ValueError(f"Expected `seed` to be an int. Received: seed={seed!r}")
    if not validation.is_int(start_batch) or start_batch < 0:
        raise ValueError(
            f"Expected `start_batch` to be an int >= 0. Received: start_batch={start_batch!r}"
        )
    if classes_per_batch % num_replicas:
        raise ValueError(
            "Expected `classes_per_batch` to be a multiple of `num_replicas`, so "
            "that every replica's slice of a batch holds whole classes. Received: "
            f"classes_per_batch={classes_per_batch}, num_replicas={num_replicas}"
        )
    if small_classes not in ("repeat", "drop"):
        raise ValueError(
            'Expected `small_classes` to be "repeat" or "drop". '
            f"Received: small_classes={small_classes!r}"
        )
    return classes_per_batch, images_per_class, int(start_batch)


def _class_table(split, classes_per_batch, images_per_class, small_classes):
    """Per eligible class: label, start of its run in the class-sorted order,
    size; and that order. Drops small classes (with a warning) if asked."""
    labels, counts = np.unique(split.labels, return_counts=True)
    order = np.argsort(split.labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    eligible = np.ones(len(labels), bool)
    if small_classes == "drop":
        eligible = counts >= images_per_class
        if not eligible.all():
            warnings.warn(
                f"Dropped {np.sum(~eligible)} of {len(labels)} classes of split "
                f"{split.name!r} with fewer than {images_per_class} images "
                '(small_classes="drop").',
                stacklevel=3,
            )
    if np.sum(eligible) < classes_per_batch:
        raise ValueError(
            f"Expected at least classes_per_batch={classes_per_batch} classes to "
            f"sample from. Received: split {split.name!r} with "
            f"{np.sum(eligible)} (small_classes={small_classes!r})"
        )
    return (
        tf.constant(labels[eligible].astype(np.int64)),
        tf.constant(starts[eligible].astype(np.int32)),
        tf.constant(counts[eligible].astype(np.int32)),
        tf.constant(order.astype(np.int64)),
    )


def _batch_sampler(table, classes_per_batch, images_per_class, seed):
    """`sample(batch_number)`: the batch's P groups of K indices, their labels,
    per-image seeds and the groups' positions in the stream."""
    seeds = tf.random.experimental.stateless_split(tf.constant([seed, 0], tf.int64), 2)
    sampler_seed, transform_seed = seeds[0], seeds[1]
    batch_size = classes_per_batch * images_per_class

    def sample(batch_number):
        indices, batch_labels = _sample_batch(
            tf.random.experimental.stateless_fold_in(sampler_seed, batch_number),
            *table, classes_per_batch, images_per_class)
        image_seeds = tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(transform_seed, batch_number), batch_size)
        image_seeds = tf.reshape(image_seeds, [classes_per_batch, images_per_class, 2])
        positions = batch_number * classes_per_batch + tf.range(classes_per_batch, dtype=tf.int64)
        return indices, batch_labels, image_seeds, positions

    return sample


def _flatten_groups(images, labels):
    """(P, K, ...) groups to one (P * K, ...) batch, keeping static shapes."""
    groups, per_group = images.shape[0], images.shape[1]
    flat = tf.reshape(images, tf.concat([[-1], tf.shape(images)[2:]], 0))
    flat.set_shape([groups * per_group] + images.shape[2:].as_list())
    return flat, tf.reshape(labels, [groups * per_group])
