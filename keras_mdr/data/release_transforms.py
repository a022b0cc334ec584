"""The MDR authors' image transforms, pixel for pixel: Pillow's Lanczos and
torchvision's `RandomResizedCrop`, in TensorFlow.

The release (PyTorch, PIL images) trains on
`Resize((256, 256), LANCZOS)`, `RandomResizedCrop(224, scale=(0.16, 1),
ratio=(0.75, 1.33), LANCZOS)`, `RandomHorizontalFlip()` and tests on
`Resize((256, 256), LANCZOS)`, `CenterCrop(224)`. Here:

- `lanczos_resize` is Pillow's `Image.resize(size, Image.LANCZOS)` for 8-bit
  images, exactly: the same filter (support 3, widened by the downscaling
  factor, so it antialiases), the same 22-bit fixed-point coefficients, the
  horizontal pass first and its result rounded to `uint8` before the vertical
  one. Float64 sums of those integer products are exact, so the output equals
  Pillow's bit for bit, given the same decoded pixels (the pipelines decode
  JPEGs with Pillow's accurate IDCT, see `image_format.decode`).
- `random_resized_crop_box` samples torchvision's box: area fraction uniform
  in `scale`, aspect ratio log-uniform in `ratio`, width and height rounded
  half to even (Python's `round`), up to 10 tries for a box that fits, then
  the centre crop with the ratio clamped to the range. Offsets are uniform.
- `release_train_transform` / `release_eval_transform` chain them.

All randomness is stateless, from the per-image seed the pipelines pass, so
a stream is the same on every run with the same seed. These transforms resample
twice and decode the whole JPEG, so they cost more CPU than
`keras_mdr.data.train_transform`, which crops before decoding.

Reference:
    torchvision `transforms.RandomResizedCrop.get_params`; Pillow
    `libImaging/Resample.c` (behaviour reimplemented, no code copied).
"""

import math

import tensorflow as tf

from keras_mdr import validation

# Pillow's fixed point for 8-bit images: 32 bits - 8 (pixel) - 2 (headroom).
_PRECISION_BITS = 22
_LANCZOS_SUPPORT = 3.0
_MAX_TRIES = 10


def _sinc(x):
    safe = tf.where(tf.equal(x, 0.0), tf.ones_like(x), x * math.pi)
    return tf.where(tf.equal(x, 0.0), tf.ones_like(x), tf.sin(safe) / safe)


def _lanczos(x):
    inside = tf.logical_and(x >= -_LANCZOS_SUPPORT, x < _LANCZOS_SUPPORT)
    return tf.where(inside, _sinc(x) * _sinc(x / _LANCZOS_SUPPORT), tf.zeros_like(x))


def lanczos_coefficients(in_size, out_size):
    """Pillow's Lanczos taps from `in_size` samples to `out_size`.

    Args:
        in_size: int scalar tensor, the input length.
        out_size: int, the output length.

    Returns:
        `(first, weights)`: the first input index of each output (int64,
        `(out_size,)`) and the fixed-point weights (float64 integers,
        `(out_size, taps)`; weights past a window's end are 0).
    """
    in_size_f = tf.cast(in_size, tf.float64)
    scale = in_size_f / float(out_size)
    filter_scale = tf.maximum(scale, 1.0)
    support = _LANCZOS_SUPPORT * filter_scale
    taps = tf.cast(tf.math.ceil(support), tf.int64) * 2 + 1
    center = (tf.range(out_size, dtype=tf.float64) + 0.5) * scale
    first = tf.maximum(tf.floor(center - support + 0.5), 0.0)
    last = tf.minimum(tf.floor(center + support + 0.5), in_size_f)
    offsets = tf.range(taps, dtype=tf.float64)[None, :]
    position = first[:, None] + offsets
    weights = _lanczos((position - center[:, None] + 0.5) / filter_scale)
    weights = tf.where(position < last[:, None], weights, 0.0)
    total = tf.reduce_sum(weights, axis=1, keepdims=True)
    weights = tf.math.divide_no_nan(weights, total)
    # Rounded half away from zero, as Pillow's `(int)(w * 2^22 +- 0.5)`.
    fixed = weights * float(1 << _PRECISION_BITS)
    fixed = tf.where(fixed < 0.0, tf.math.ceil(fixed - 0.5), tf.floor(fixed + 0.5))
    return tf.cast(first, tf.int64), fixed


def _resample_rows(image, out_size):
    """Resamples axis 0 of a float64 `(N, M, C)` image of gray levels."""
    in_size = tf.shape(image, out_type=tf.int64)[0]
    first, weights = lanczos_coefficients(in_size, out_size)
    taps = tf.shape(weights, out_type=tf.int64)[1]
    columns = first[:, None] + tf.range(taps)[None, :]
    keep = tf.not_equal(weights, 0.0)
    rows = tf.broadcast_to(tf.range(out_size, dtype=tf.int64)[:, None], tf.shape(columns))
    indices = tf.stack([tf.boolean_mask(rows, keep), tf.boolean_mask(columns, keep)], axis=1)
    matrix = tf.sparse.SparseTensor(indices, tf.boolean_mask(weights, keep),
                                    tf.stack([tf.cast(out_size, tf.int64), in_size]))
    flat = tf.reshape(image, tf.stack([in_size, -1]))
    # Integer products below 2^30, summed in float64: exact, as Pillow's int32.
    sums = tf.sparse.sparse_dense_matmul(matrix, flat) + float(1 << (_PRECISION_BITS - 1))
    levels = tf.clip_by_value(tf.floor(sums / float(1 << _PRECISION_BITS)), 0.0, 255.0)
    return tf.reshape(levels, tf.concat([[out_size], tf.shape(image)[1:]], 0))


def _resample_axis(image, out_size, axis):
    def resample():
        if axis == 0:
            return _resample_rows(image, out_size)
        moved = tf.transpose(image, [1, 0, 2])
        return tf.transpose(_resample_rows(moved, out_size), [1, 0, 2])

    # Pillow skips a pass whose size does not change.
    return tf.cond(tf.equal(tf.shape(image)[axis], out_size), lambda: image, resample)


def lanczos_resize(image, size):
    """Resizes a `uint8` image `(H, W, C)` as Pillow's `resize(..., LANCZOS)`.

    Args:
        image: a `uint8` tensor `(H, W, C)`.
        size: the output size, an int or `(height, width)`.

    Returns:
        A `uint8` tensor `(height, width, C)`, equal to Pillow's output.

    Example:

    >>> import numpy as np
    >>> from keras_mdr.data import release_transforms
    >>> image = np.arange(48, dtype="uint8").reshape(4, 4, 3)
    >>> release_transforms.lanczos_resize(image, 2).shape
    TensorShape([2, 2, 3])
    """
    height, width = validation.size_pair(size, "size")
    image = tf.cast(tf.convert_to_tensor(image), tf.float64)
    image.set_shape([None, None, None])
    image = _resample_axis(image, width, axis=1)  # horizontal first, as Pillow
    image = _resample_axis(image, height, axis=0)
    return tf.cast(image, tf.uint8)


def _fallback_box(height, width, ratio):
    """torchvision's centre crop when no try fits: the ratio clamped."""
    height_f, width_f = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    in_ratio = width_f / height_f
    low, high = ratio
    w = tf.where(in_ratio < low, width_f, tf.where(in_ratio > high, tf.round(height_f * high),
                                                    width_f))
    h = tf.where(in_ratio < low, tf.round(width_f / low), height_f)
    h, w = tf.cast(h, tf.int32), tf.cast(w, tf.int32)
    return tf.stack([(height - h) // 2, (width - w) // 2, h, w])


def random_resized_crop_box(height, width, seed, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision's `RandomResizedCrop` box for an image of `height x width`.

    Args:
        height, width: int scalars (tensors or ints): the image's size.
        seed: an int tensor of shape `(2,)` (stateless randomness).
        scale: `(min, max)` fraction of the image's area.
        ratio: `(min, max)` width / height; sampled log-uniformly.

    Returns:
        An int32 tensor `(top, left, crop_height, crop_width)`.

    Example:

    >>> import tensorflow as tf
    >>> from keras_mdr.data import release_transforms
    >>> box = release_transforms.random_resized_crop_box(256, 256, tf.constant([1, 2]))
    >>> bool(tf.reduce_all(box[2:] <= 256))
    True
    """
    scale = validation.range_pair(scale, "scale", 0.0, 1.0)
    ratio = validation.range_pair(ratio, "ratio", 0.0, float("inf"))
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    area_seed, ratio_seed, offset_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    areas = tf.random.stateless_uniform([_MAX_TRIES], area_seed, scale[0], scale[1])
    log_ratios = tf.random.stateless_uniform(
        [_MAX_TRIES], ratio_seed, math.log(ratio[0]), math.log(ratio[1]))
    target = tf.cast(height * width, tf.float64) * tf.cast(areas, tf.float64)
    aspect = tf.cast(tf.exp(log_ratios), tf.float64)
    # tf.round rounds half to even, as Python's round.
    w = tf.cast(tf.round(tf.sqrt(target * aspect)), tf.int32)
    h = tf.cast(tf.round(tf.sqrt(target / aspect)), tf.int32)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    pick = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    h_pick, w_pick = h[pick], w[pick]
    offsets = tf.random.stateless_uniform([2], offset_seed)
    top = tf.cast(offsets[0] * tf.cast(height - h_pick + 1, tf.float32), tf.int32)
    left = tf.cast(offsets[1] * tf.cast(width - w_pick + 1, tf.float32), tf.int32)
    found = tf.stack([tf.minimum(top, height - h_pick), tf.minimum(left, width - w_pick),
                      h_pick, w_pick])
    return tf.cond(tf.reduce_any(fits), lambda: found,
                   lambda: _fallback_box(height, width, ratio))


def release_train_transform(image_size=224, resize_size=256, scale=(0.16, 1.0),
                            ratio=(0.75, 1.33), flip=True):
    """The release's training augmentation, as `transform(image, seed)`.

    Lanczos resize to `resize_size` (aspect not kept), torchvision's random
    resized crop box, Lanczos resize of the crop to `image_size`, then a
    horizontal flip with probability 0.5.

    Args:
        image_size: the output size, an int or `(height, width)`.
        resize_size: the size the image is first resized to.
        scale: area fraction range of the crop (the release: (0.16, 1)).
        ratio: width / height range of the crop (the release: (0.75, 1.33)).
        flip: flip half of the images left to right.

    Returns:
        A function `transform(image, seed)` from a `uint8` `(H, W, C)` image
        and a `(2,)` int seed to `float32` `(*image_size, C)` in [0, 255].

    Example:

    >>> import tensorflow as tf
    >>> import keras_mdr.data
    >>> transform = keras_mdr.data.release_train_transform(16, 20)
    >>> transform(tf.zeros((30, 40, 3), "uint8"), tf.constant([0, 1])).shape
    TensorShape([16, 16, 3])
    """
    image_size = validation.size_pair(image_size, "image_size")
    resize_size = validation.size_pair(resize_size, "resize_size")
    validation.range_pair(scale, "scale", 0.0, 1.0)
    validation.range_pair(ratio, "ratio", 0.0, float("inf"))

    def transform(image, seed):
        box_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        resized = lanczos_resize(image, resize_size)
        top, left, h, w = tf.unstack(
            random_resized_crop_box(resize_size[0], resize_size[1], box_seed, scale, ratio))
        crop = resized[top : top + h, left : left + w]
        image = lanczos_resize(crop, image_size)
        if flip:
            flipped = tf.random.stateless_uniform([], flip_seed) < 0.5
            image = tf.cond(flipped, lambda: tf.reverse(image, axis=[1]), lambda: image)
        return tf.cast(image, tf.float32)

    return transform


def release_eval_transform(image_size=224, resize_size=256):
    """The release's test transform: Lanczos resize, then centre crop.

    Args:
        image_size: the crop, an int or `(height, width)`, at most `resize_size`.
        resize_size: the size the image is resized to (aspect not kept).

    Returns:
        A function `transform(image, seed)` (the seed is unused) returning
        `float32` `(*image_size, C)` in [0, 255].

    Example:

    >>> import tensorflow as tf
    >>> import keras_mdr.data
    >>> transform = keras_mdr.data.release_eval_transform(16, 20)
    >>> transform(tf.zeros((30, 40, 3), "uint8"), None).shape
    TensorShape([16, 16, 3])
    """
    image_size, resize_size = validation.crop_sizes(image_size, resize_size)
    # torchvision's CenterCrop: offsets rounded half to even.
    top = int(round((resize_size[0] - image_size[0]) / 2.0))
    left = int(round((resize_size[1] - image_size[1]) / 2.0))

    def transform(image, seed):
        del seed
        resized = lanczos_resize(image, resize_size)
        crop = resized[top : top + image_size[0], left : left + image_size[1]]
        return tf.cast(crop, tf.float32)

    return transform
