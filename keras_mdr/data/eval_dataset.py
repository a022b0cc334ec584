"""One ordered pass over a split, for embedding and evaluation."""

import numpy as np
import tensorflow as tf

from keras_mdr import validation
from keras_mdr.data import image_reader as image_reader_lib
from keras_mdr.data import transforms


def eval_dataset(
    split,
    batch_size,
    transform=None,
    with_indices=False,
    strict=False,
    num_parallel_calls=tf.data.AUTOTUNE,
):
    """A finite `tf.data.Dataset` over `split`, in order, each image once.

    Args:
        split: a `keras_mdr.data.Split`.
        batch_size: images per batch; the last batch may be smaller.
        transform: a function `transform(image, seed)` (see
            `keras_mdr.data.transforms`). Default: `eval_transform()` for
            photos, `grayscale_transform()` for in-memory images. The seed is
            fixed per image, so a random transform is the same on every pass.
        with_indices: also yield each image's index in `split`.
        strict: fail with the path on an unreadable image instead of skipping
            it (with a warning that counts skipped images). When images are
            skipped, `split.labels` no longer lines up with the outputs; the
            labels (and indices) the dataset yields always do.
        num_parallel_calls: parallel decoding calls.

    Returns:
        A dataset of `(images, labels)` or `(images, labels, indices)`:
        `float32` images, `int64` labels, `int64` indices.

    Example:

    >>> import keras_mdr.data
    >>> splits = keras_mdr.data.load_dataset("digits")
    >>> dataset = keras_mdr.data.eval_dataset(splits.test, batch_size=256)
    >>> sum(int(labels.shape[0]) for _, labels in dataset) == len(splits.test)
    True
    """
    batch_size = validation.positive_int(batch_size, "batch_size")
    if transform is None:
        transform = transforms.default_transform(split, training=False)
    load_image = image_reader_lib.transformed_reader(split, transform, strict=strict)
    labels = tf.constant(split.labels.astype(np.int64))

    def load(index):
        seed = tf.stack([tf.constant(0, tf.int64), index])
        return load_image(index, seed), tf.gather(labels, index), index

    dataset = tf.data.Dataset.range(len(split)).map(
        load, num_parallel_calls=num_parallel_calls, deterministic=True
    )
    if not strict and split.source != "images":
        # Keep the index twice: `count_skipped` consumes the last entry.
        dataset = dataset.map(lambda image, label, index: (image, label, index, index))
        dataset = image_reader_lib.count_skipped(
            dataset.ignore_errors(), total=len(split)
        )
    if not with_indices:
        dataset = dataset.map(lambda image, label, index: (image, label))
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
