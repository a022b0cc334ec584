"""Image transforms: the paper's train / test presets and one for small grayscale sets.

A transform is a function `transform(image, seed) -> image`: `image` is a
decoded `uint8` tensor `(H, W, C)`, `seed` an int tensor of shape `(2,)` that
the pipelines derive from their own seed and the image's position in the
stream, and the result is a `float32` tensor of a fixed size. Random transforms
use stateless random ops on `seed`, so a pipeline gives the same crops and flips
on every run with the same seed, however many images are decoded in parallel.

Photos (Cars-196, CUB-200-2011, SOP, In-Shop, folders), as in the paper:
- train: resize to 256 x 256, random resized crop to 224 x 224 with area
  (0.16, 1) and aspect ratio (0.75, 1.33), horizontal flip;
- eval (test): resize to 256 x 256, centre crop 224 x 224.

Resizing to a fixed square and then cropping a window given in relative
coordinates is the same as cropping that relative window from the original
image and resizing it once; the "tf" implementation does the latter: one
resampling instead of two, and `tf.image.resize` on a slice instead of
`tf.image.crop_and_resize`, which on CPU costs 0.5 ms per 224 x 224 crop, a
third of the time it takes to decode a typical benchmark JPEG. Its transforms
are `CropTransform`s, whose window the pipelines compute before decoding, so
that a JPEG is decoded only inside the crop (`tf.io.decode_and_crop_jpeg`).
With both, the whole augmentation costs no more CPU than a plain decode and
resize (see benchmarks/pipeline_speed.py).

The "keras_cv" implementation runs the paper's steps literally: resize, then
`keras_cv.layers.RandomCropAndResize` (keras-cv 0.9 works with Keras 3.15 and
TF 2.21, in `tf.data` too). It samples crops the same way (area and aspect
ratio uniform, height and width clipped to the image, offsets uniform), but it
is slower (the benchmark's training pipeline runs at about 0.55x the plain
baseline with it) and its random generator is stateful, so under parallel
decoding which image gets which crop can change between runs.

Outputs are in [0, 255] unless `preprocess` says otherwise: None, "unit"
([0, 1]), "symmetric" ([-1, 1]), the name of a `keras.applications` module
("resnet50", "inception_v3", ...) for its `preprocess_input`, or any callable.
"""

import numpy as np
import tensorflow as tf

from keras_mdr import validation
from keras_mdr.preprocessing import preprocessor


def _pixel_window(shape, corner, size):
    """The pixel window at `corner` (top, left) of `size` (height, width),
    given in fractions of an image of `shape` (height, width)."""
    scale = tf.cast(shape, tf.float32)
    pixels = tf.clip_by_value(tf.cast(tf.round(size * scale), tf.int32), 1, shape)
    begin = tf.minimum(tf.cast(tf.round(corner * scale), tf.int32), shape - pixels)
    return begin, pixels


def crop_to_window(image, window):
    """Slices `image` (H, W, C) to `window`, a pair `(begin, size)` of (2,) ints."""
    begin, size = window
    return tf.slice(image, tf.concat([begin, [0]], 0), tf.concat([size, [-1]], 0))


class CropTransform:
    """A transform that keeps one window of the image and finishes it.

    Called as `transform(image, seed)`, it crops the decoded image to the
    window, then finishes it. With `decode_window`, the pipelines instead ask
    for the window before decoding, so that a JPEG is decoded only inside it
    (`tf.io.decode_and_crop_jpeg`: no decoding work outside the crop, no copy
    of the crop). libjpeg decodes a window's border pixels a little
    differently (up to a few grey levels), so the eval transform keeps full
    decoding: evaluation then equals `transform(decoded image)` exactly, as in
    serving.

    Args:
        window: `window(shape, seed) -> (begin, size)`: the pixel window
            (int32 (2,) tensors, rows then columns) to keep from an image of
            `shape` (height, width).
        finish: `finish(cropped, seed) -> image`: the rest of the transform.
        decode_window: let pipelines decode JPEGs only inside the window.
    """

    def __init__(self, window, finish, decode_window=False):
        self.window = window
        self.finish = finish
        self.decode_window = decode_window

    def __call__(self, image, seed):
        window = self.window(tf.shape(image)[:2], seed)
        return self.finish(crop_to_window(image, window), seed)


def train_transform(image_size=224, resize_size=256, crop_area=(0.16, 1.0),
                    aspect_ratio=(0.75, 1.33), flip=True, preprocess=None,
                    implementation="tf", seed=None):
    """The paper's training augmentation for photos.

    Resize to `resize_size`, random resized crop to `image_size` with relative
    area in `crop_area` and aspect ratio (width / height) in `aspect_ratio`,
    then a random horizontal flip and `preprocess`.

    Args:
        image_size: output size, an int or `(height, width)`.
        resize_size: the size images are resized to before cropping. The "tf"
            implementation crops relative windows, which this size does not
            change; it matters for the "keras_cv" one.
        crop_area: `(min, max)` fraction of the image's area kept by the crop.
        aspect_ratio: `(min, max)` width / height of the crop, relative to the
            resized square image.
        flip: flip half of the images left to right.
        preprocess: see `preprocessor`: None keeps [0, 255].
        implementation: "tf" (stateless, reproducible, fast) or "keras_cv"
            (`keras_cv.layers.RandomCropAndResize` on the resized image).
        seed: seeds the keras-cv layer's own generator; the "tf"
            implementation uses the per-image seeds of the pipeline instead.

    Returns:
        A `CropTransform` (the "tf" implementation) or a function, called as
        `transform(image, seed)`, returning `float32` images of shape
        `(*image_size, C)`.

    Example:

    >>> import tensorflow as tf
    >>> import keras_mdr.data
    >>> transform = keras_mdr.data.train_transform(image_size=32, resize_size=36)
    >>> image = tf.zeros((50, 80, 3), "uint8")
    >>> transform(image, tf.constant([1, 2])).shape
    TensorShape([32, 32, 3])

    Reference:
        Kim & Park, "Multi-level Distance Regularization for Deep Metric
        Learning", AAAI 2021 (Sec. 4, implementation details).
    """
    image_size = validation.size_pair(image_size, "image_size")
    resize_size = validation.size_pair(resize_size, "resize_size")
    area = validation.range_pair(crop_area, "crop_area", 0.0, 1.0)
    ratio = validation.range_pair(aspect_ratio, "aspect_ratio", 0.0, float("inf"))
    finish_preprocess = preprocessor(preprocess)
    if implementation == "keras_cv":
        return _keras_cv_train_transform(
            image_size, resize_size, crop_area, aspect_ratio, flip, finish_preprocess, seed
        )
    if implementation != "tf":
        raise ValueError(
            'Expected `implementation` to be "tf" or "keras_cv". '
            f"Received: implementation={implementation!r}"
        )
    return CropTransform(_uniform_window(area, ratio),
                         _flip_and_resize(flip, image_size, finish_preprocess), decode_window=True)


def _uniform_window(area, ratio):
    """keras-cv's crop window: area and ratio uniform in their ranges, clipped to the image."""
    (area_low, area_high), (ratio_low, ratio_high) = area, ratio

    def window(shape, seed):
        draws = tf.random.stateless_uniform([5], seed)
        area = area_low + draws[0] * (area_high - area_low)
        ratio = ratio_low + draws[1] * (ratio_high - ratio_low)
        # keras-cv's sampling: clip to the image instead of resampling.
        size = tf.clip_by_value(tf.sqrt(area * tf.stack([1.0 / ratio, ratio])), 0.0, 1.0)
        return _pixel_window(shape, draws[2:4] * (1.0 - size), size)

    return window


def _flip_and_resize(flip, image_size, finish_preprocess):
    """The crop's finish: flip half of the crops, resize to `image_size`, preprocess."""

    def finish(image, seed):
        if flip:
            # The same draws as `_uniform_window`; the fifth decides the flip.
            # Flipping before resizing gives the same image and copies fewer bytes.
            flip_draw = tf.random.stateless_uniform([5], seed)[4]
            image = tf.cond(
                flip_draw < 0.5, lambda: tf.reverse(image, axis=[1]), lambda: image
            )
        image = tf.image.resize(image, image_size)
        return finish_preprocess(tf.cast(image, tf.float32))

    return finish


def _keras_cv_train_transform(
    image_size, resize_size, crop_area, aspect_ratio, flip, finish, seed
):
    # Imported here: keras-cv is only needed by this implementation.
    import keras_cv

    crop = keras_cv.layers.RandomCropAndResize(
        target_size=image_size,
        crop_area_factor=tuple(crop_area),
        aspect_ratio_factor=tuple(aspect_ratio),
        seed=seed,
    )

    def transform(image, seed):
        image = tf.image.resize(image, resize_size)
        image = crop(image)
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, seed)
        return finish(tf.cast(image, tf.float32))

    return transform


def eval_transform(image_size=224, resize_size=256, preprocess=None):
    """The paper's test transform for photos: resize, then centre crop.

    Args:
        image_size: output size (the crop), an int or `(height, width)`.
        resize_size: the size images are resized to before the centre crop;
            at least `image_size`.
        preprocess: see `preprocessor`: None keeps [0, 255].

    Returns:
        A `CropTransform`, called as `transform(image, seed)` (the seed is
        unused), returning `float32` images of shape `(*image_size, C)`.

    Example:

    >>> import tensorflow as tf
    >>> import keras_mdr.data
    >>> transform = keras_mdr.data.eval_transform(image_size=32, resize_size=36)
    >>> transform(tf.zeros((50, 80, 3), "uint8"), None).shape
    TensorShape([32, 32, 3])
    """
    image_size, resize_size = validation.crop_sizes(image_size, resize_size)
    size = np.array(
        [image_size[0] / resize_size[0], image_size[1] / resize_size[1]], np.float32
    )
    finish_preprocess = preprocessor(preprocess)

    def window(shape, seed):
        del seed
        return _pixel_window(shape, (1.0 - size) / 2.0, size)

    def finish(image, seed):
        del seed
        image = tf.image.resize(image, image_size)
        return finish_preprocess(tf.cast(image, tf.float32))

    return CropTransform(window, finish)


def grayscale_transform(image_size=None, channels=1, flip=False, preprocess=None):
    """A transform for small in-memory images (digits, Fashion-MNIST).

    Args:
        image_size: None keeps the images' size; else an int or
            `(height, width)` to resize to (e.g. 32 or more for a
            `keras.applications` backbone).
        channels: 1, or 3 to replicate grayscale to RGB.
        flip: randomly flip left to right (stateless, from the seed).
        preprocess: see `preprocessor`: None keeps [0, 255], as every
            other transform (the encoders rescale inside).

    Returns:
        A function `transform(image, seed)` returning `float32` images.

    Example:

    >>> import tensorflow as tf
    >>> import keras_mdr.data
    >>> transform = keras_mdr.data.grayscale_transform(image_size=32, channels=3)
    >>> transform(tf.zeros((8, 8, 1), "uint8"), tf.constant([0, 0])).shape
    TensorShape([32, 32, 3])
    """
    if image_size is not None:
        image_size = validation.size_pair(image_size, "image_size")
    if channels not in (1, 3):
        raise ValueError(f"Expected `channels` to be 1 or 3. Received: channels={channels!r}")
    finish = preprocessor(preprocess)

    def transform(image, seed):
        image = tf.cast(image, tf.float32)
        if image_size is not None:
            image = tf.image.resize(image, image_size)
        if channels == 3 and image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, seed)
        return finish(image)

    return transform


def default_transform(split, training):
    """The default transform of a split: grayscale for in-memory images, else
    the paper's train (`training=True`) or test preset."""
    if split.source == "images":
        return grayscale_transform()
    return train_transform() if training else eval_transform()
