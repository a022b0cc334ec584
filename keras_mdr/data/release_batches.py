"""Training batches as the MDR authors' release builds them.

For each batch: shuffle all classes, then take `min(m, n_c)` images of each
class in that order (`m = images_per_class`, `n_c` the class's size), chosen
without replacement, until the batch is full; the last class is cut so that the
batch holds exactly `batch_size` images. So a class with fewer than `m` images
contributes all of them once (single-image classes included), no image appears
twice in a batch, and a class's images are consecutive in the batch. The
release's `MImagesPerClassSampler` on CUB / Cars: 128 = 32 classes x 4; SOP /
In-Shop: 256 with m = 3 (85 classes and one image of an 86th).

`keras_mdr.data.balanced_dataset` (P classes x K images, small classes
repeated or dropped) is the alternative that keeps whole classes per replica.
"""

import numpy as np
import tensorflow as tf

from keras_mdr import validation
from keras_mdr.data import image_reader as image_reader_lib
from keras_mdr.data import transforms


def _class_table(split, images_per_class, batch_size):
    labels, counts = np.unique(split.labels, return_counts=True)
    available = int(np.minimum(counts, images_per_class).sum())
    if available < batch_size:
        raise ValueError(
            f"Expected the classes of split {split.name!r} to hold at least "
            f"batch_size={batch_size} images at images_per_class={images_per_class} "
            f"each. Received: {available} ({len(labels)} classes)"
        )
    order = np.argsort(split.labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return {
        "labels": tf.constant(labels.astype(np.int64)),
        "starts": tf.constant(starts.astype(np.int64)),
        "sizes": tf.constant(counts.astype(np.int64)),
        "order": tf.constant(order.astype(np.int64)),
        "widest": int(counts.max()),
    }


def sample_release_batch(seed, table, batch_size, images_per_class):
    """The split indices and labels of one release batch.

    Args:
        seed: int tensor `(2,)`, the batch's seed.
        table: per-class `labels`, `starts` (into `order`), `sizes`, the
            split's `order` (indices sorted by class) and `widest` class.
        batch_size: images in the batch.
        images_per_class: m.

    Returns:
        `(indices, labels)`, int64 tensors of shape `(batch_size,)`.
    """
    class_seed, image_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    num_classes = tf.shape(table["sizes"])[0]
    shuffled = tf.argsort(tf.random.stateless_uniform([num_classes], class_seed))
    takes = tf.minimum(tf.gather(table["sizes"], shuffled), images_per_class)
    ends = tf.cumsum(takes)
    slots = tf.range(batch_size, dtype=tf.int64)
    group = tf.searchsorted(ends, slots, side="right", out_type=tf.int64)  # the slot's class, in shuffled order
    rank = slots - (tf.gather(ends, group) - tf.gather(takes, group))
    # Only the classes the batch reaches (at most batch_size of them) draw images.
    used = shuffled[: group[-1] + 1]
    sizes = tf.gather(table["sizes"], used)
    keys = tf.random.stateless_uniform([tf.shape(used)[0], table["widest"]], image_seed)
    keys = tf.where(tf.range(table["widest"], dtype=tf.int64)[None, :] < sizes[:, None], keys, -1.0)
    # Distinct images per class: the positions of its largest random keys.
    positions = tf.math.top_k(keys, min(images_per_class, table["widest"])).indices
    position = tf.gather_nd(positions, tf.stack([group, rank], axis=1))
    classes = tf.gather(used, group)
    indices = tf.gather(table["order"], tf.gather(table["starts"], classes)
                        + tf.cast(position, tf.int64))
    return indices, tf.gather(table["labels"], classes)


def release_batches(split, batch_size, images_per_class, transform=None, seed=0, strict=False,
                    num_parallel_calls=tf.data.AUTOTUNE, start_batch=0):
    """An endless `tf.data.Dataset` of the release's training batches.

    Args:
        split: a `keras_mdr.data.Split`.
        batch_size: images per batch, exactly (the release: 128 for CUB and
            Cars, 256 for SOP and In-Shop).
        images_per_class: m, the most images taken of one class (4 / 3).
        transform: `transform(image, seed)`; default as `balanced_dataset`
            (`release_train_transform()` is the release's).
        seed: an int; the same seed gives the same stream.
        strict: fail with the path on an unreadable image; otherwise it is
            skipped, with a warning that counts skipped images, and its batch
            is filled from the next one.
        num_parallel_calls: parallel decoding calls, one image each.
        start_batch: the batch number the stream starts at (for resuming).

    Returns:
        An endless dataset of `(images, labels)`: `float32` images
        `(batch_size, ...)` and `int64` labels `(batch_size,)`.

    Example:

    >>> import keras_mdr.data
    >>> splits = keras_mdr.data.load_dataset("digits")
    >>> dataset = keras_mdr.data.release_batches(splits.train, 10, 4, seed=1)
    >>> images, labels = next(iter(dataset))
    >>> images.shape, labels.shape
    (TensorShape([10, 8, 8, 1]), TensorShape([10]))
    """
    batch_size = validation.positive_int(batch_size, "batch_size")
    images_per_class = validation.positive_int(images_per_class, "images_per_class")
    if not validation.is_int(seed):
        raise ValueError(f"Expected `seed` to be an int. Received: seed={seed!r}")
    start_batch = validation.non_negative_int(start_batch, "start_batch")
    table = _class_table(split, images_per_class, batch_size)
    if transform is None:
        transform = transforms.default_transform(split, training=True)
    load = image_reader_lib.transformed_reader(split, transform, strict=strict)
    sampler_seed, transform_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.constant([seed, 1], tf.int64), 2))

    def sample(batch_number):
        indices, labels = sample_release_batch(
            tf.random.experimental.stateless_fold_in(sampler_seed, batch_number),
            table, batch_size, images_per_class)
        image_seeds = tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(transform_seed, batch_number), batch_size)
        positions = batch_number * batch_size + tf.range(batch_size, dtype=tf.int64)
        return indices, labels, image_seeds, positions

    def load_one(index, label, image_seed, position):
        return load(index, image_seed), label, position

    dataset = image_reader_lib.decoded_stream(
        sample, load_one, start_batch, batch_size, strict,
        what="images that failed to decode", num_parallel_calls=num_parallel_calls,
    )
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE).repeat()
