"""Export an embedding model as a SavedModel for TensorFlow Serving.

`export_for_serving(encoder, base_dir)` writes `base_dir/<version>/` (the
layout TF Serving watches: one numbered folder per version, the highest one
served) with two signatures, both returning `{"embeddings": float32 [None, D]}`:

- `serving_default`, input `images`: float32 `[None, H, W, C]` with pixel
  values in [0, 255]; the encoder's own preprocessing runs inside.
- `serving_bytes`, input `image_bytes`: string `[None]`, each element the
  encoded bytes of one JPEG or PNG image (sizes may differ within a batch).
  Each image is checked, decoded to `C` channels and transformed with the
  paper's test transform (resize to `resize_size` x `resize_size`, centre crop
  `image_size` x `image_size`), then embedded. The transform is
  `keras_mdr.data.eval_transform`, so served embeddings equal the ones
  evaluation computes; it crops the centre window and resizes it once, which
  equals resize-then-crop up to the rounding of the window to whole pixels.

Bad input to `serving_bytes` fails that request only, with an
`InvalidArgumentError` (HTTP 400 in TF Serving) whose message names the
problem:
- bytes that are not a JPEG or PNG image;
- an image whose header gives more than `max_pixels` pixels (height x width).
  The size is read from the header *before* anything is decoded (JPEG:
  `tf.image.extract_jpeg_shape`; PNG: the IHDR chunk), so a small file that
  claims to be huge (a decompression bomb) costs nothing;
- a header or image data that the decoder rejects (truncated, corrupt).
Decoding runs for at most `_PARALLEL_DECODES` images of a request at a time,
so a request holds at most about `_PARALLEL_DECODES * max_pixels * C` bytes of
decoded pixels.

The SavedModel needs neither Keras nor keras_mdr to load or serve:
`tf.saved_model.load(path).signatures["serving_bytes"](image_bytes=...)`.
"""

import os
import tempfile
import uuid

import keras
import numpy as np
import tensorflow as tf

from keras_mdr import validation
from keras_mdr.data import image_format
from keras_mdr.data.transforms import eval_transform

__all__ = ["export_for_serving"]

IMAGES_KEY = "images"
IMAGE_BYTES_KEY = "image_bytes"
EMBEDDINGS_KEY = "embeddings"
DEFAULT_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"

# PNG: 8-byte signature, then the IHDR chunk: length (4), b"IHDR" (4),
# width (4, big-endian), height (4, big-endian).
_PNG_HEADER_BYTES = 24
_PARALLEL_DECODES = 4


def _existing_versions(base_dir):
    if not tf.io.gfile.isdir(base_dir):
        return []
    versions = []
    for name in tf.io.gfile.listdir(base_dir):
        name = name.rstrip("/")
        if name.isascii() and name.isdigit() and tf.io.gfile.isdir(os.path.join(base_dir, name)):
            versions.append(int(name))
    return versions


def _version_dir(base_dir, version):
    if version is None:
        version = max(_existing_versions(base_dir), default=0) + 1
    elif not validation.is_int(version) or version < 0:
        raise ValueError(
            "Expected `version` to be None or a non-negative int (TF Serving "
            f"reads version folders as integers). Received: version={version!r}"
        )
    version = int(version)
    path = os.path.join(base_dir, str(version))
    if tf.io.gfile.exists(path) or version in _existing_versions(base_dir):
        raise FileExistsError(
            f"Version {version} already exists in {base_dir!r} ({path!r}); "
            "exports never overwrite a version. Pass another `version` or None "
            "for the next free one."
        )
    return path


def _check_encoder(encoder, image_size, channels):
    if not isinstance(encoder, keras.Model):
        raise TypeError(f"Expected `encoder` to be a keras.Model. Received: {type(encoder)}")
    inputs = getattr(encoder, "inputs", None)
    if inputs:
        if len(inputs) != 1:
            raise ValueError(f"Expected an encoder with one input. Received {len(inputs)} inputs.")
        shape = tuple(inputs[0].shape)
        expected = (None, image_size, image_size, channels)
        if len(shape) != 4 or any(
            s is not None and e is not None and s != e for s, e in zip(shape, expected)
        ):
            raise ValueError(
                f"Expected the encoder's input shape to be compatible with {expected} "
                f"(image_size={image_size}, channels={channels}). Received: {shape}"
            )


def _byte_value(header, start, count):
    """The big-endian unsigned int in `header[start:start + count]` as int64."""
    value = tf.constant(0, tf.int64)
    for i in range(start, start + count):
        value = value * 256 + tf.cast(header[i], tf.int64)
    return value


def _starts_with(header, start, magic):
    """Whether `header[start:]` begins with the bytes `magic`."""
    expected = tf.constant(list(magic), tf.uint8)
    return tf.reduce_all(tf.equal(header[start : start + len(magic)], expected))


def _read_header(data):
    """The first `_PNG_HEADER_BYTES` bytes as uint8, zero-padded when shorter."""
    header = tf.strings.substr(data, 0, _PNG_HEADER_BYTES)
    header = tf.strings.join([header, b"\0" * _PNG_HEADER_BYTES])
    header = tf.io.decode_raw(tf.strings.substr(header, 0, _PNG_HEADER_BYTES), tf.uint8)
    return tf.reshape(header, [_PNG_HEADER_BYTES])


def _header_size(data, header):
    """`(height, width)` from a JPEG or PNG header; asserts it is one of them."""
    is_jpeg = image_format.has_signature(data, "jpeg")
    is_png = image_format.has_signature(data, "png")
    is_image = tf.debugging.Assert(
        tf.logical_or(is_jpeg, is_png),
        [
            "serving_bytes: the input is not a JPEG or PNG image (it starts "
            "with neither the JPEG bytes FF D8 FF nor the PNG signature). "
            "Input length in bytes:",
            tf.strings.length(data),
        ],
    )
    has_ihdr = tf.logical_or(
        tf.logical_not(is_png), _starts_with(header, 12, b"IHDR")
    )
    png_ok = tf.debugging.Assert(
        has_ihdr, ["serving_bytes: PNG image without an IHDR header chunk."]
    )

    def jpeg_shape():
        shape = tf.image.extract_jpeg_shape(data, output_type=tf.int64)
        return shape[0], shape[1]

    def png_shape():
        return _byte_value(header, 20, 4), _byte_value(header, 16, 4)

    with tf.control_dependencies([is_image, png_ok]):
        return tf.cond(is_jpeg, jpeg_shape, png_shape)


def _make_decode_fn(image_size, resize_size, max_pixels, channels):
    transform = eval_transform(image_size=image_size, resize_size=resize_size)
    cap = tf.constant(max_pixels, tf.float64)

    def decode_one(data):
        height, width = _header_size(data, _read_header(data))
        # In float64: PNG sides can reach 2**32, whose product overflows int64.
        pixels = tf.cast(height, tf.float64) * tf.cast(width, tf.float64)
        within_cap = tf.debugging.Assert(
            tf.logical_and(tf.logical_and(height > 0, width > 0), pixels <= cap),
            [
                f"serving_bytes: the image is larger than the pixel cap "
                f"max_pixels={max_pixels} (height x width, read from its header "
                "before decoding). Height, width:",
                height,
                width,
            ],
        )
        with tf.control_dependencies([within_cap]):
            data = tf.identity(data)
        image = image_format.decode(data, channels=channels)
        image = tf.ensure_shape(image, [None, None, channels])
        image = tf.cast(transform(image, None), tf.float32)
        return tf.ensure_shape(image, [image_size, image_size, channels])

    return decode_one


def export_for_serving(
    encoder,
    base_dir,
    version=None,
    image_size=224,
    resize_size=256,
    max_pixels=40_000_000,
    channels=3,
):
    """Writes `encoder` as a TF Serving SavedModel in `base_dir/<version>/`.

    Args:
        encoder: a built Keras 3 model (TensorFlow backend) mapping float32
            images `[None, image_size, image_size, channels]` with values in
            [0, 255] to embeddings `[None, D]`; its preprocessing is inside.
        base_dir: the model's base folder (what TF Serving's `--model_base_path`
            or the docker image's `/models/<name>` points at).
        version: an int, or None for one more than the highest numeric
            folder in `base_dir` (1 if none). An existing version is never
            overwritten (`FileExistsError`).
        image_size: the side of the square images the encoder takes.
        resize_size: `serving_bytes` resizes images to this square before the
            centre crop of `image_size`; at least `image_size`.
        max_pixels: `serving_bytes` rejects images whose header gives more
            than this many pixels (height x width), before decoding them.
        channels: channels the images are decoded to (3: RGB, 1: grayscale).

    Returns:
        The version folder written, `base_dir/<version>`.

    Example:

    >>> import keras, tempfile
    >>> from keras_mdr.export import export_for_serving
    >>> encoder = keras.Sequential([
    ...     keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255),
    ...     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(8)])
    >>> path = export_for_serving(encoder, tempfile.mkdtemp(), image_size=32,
    ...                           resize_size=40)
    >>> path.endswith("1")
    True
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "export_for_serving needs the TensorFlow backend (KERAS_BACKEND="
            f"tensorflow). Current backend: {keras.backend.backend()}"
        )
    image_size, resize_size, max_pixels = _check_sizes(
        image_size, resize_size, max_pixels, channels
    )
    base_dir = os.fspath(base_dir)
    _check_encoder(encoder, image_size, channels)
    path = _version_dir(base_dir, version)
    archive = _serving_archive(encoder, image_size, resize_size, max_pixels, channels)
    tf.io.gfile.makedirs(base_dir)
    return _write_version(archive, base_dir, path)


def _check_sizes(image_size, resize_size, max_pixels, channels):
    image_size = validation.positive_int(image_size, "image_size")
    resize_size = validation.positive_int(resize_size, "resize_size")
    max_pixels = validation.positive_int(max_pixels, "max_pixels")
    if image_size > resize_size:
        raise ValueError(
            "Expected `image_size` no larger than `resize_size`. "
            f"Received: image_size={image_size}, resize_size={resize_size}"
        )
    if channels not in (1, 3):
        raise ValueError(f"Expected `channels` to be 1 or 3. Received: channels={channels!r}")
    return image_size, resize_size, max_pixels


def _embed_fn(encoder, image_size, channels):
    """`images -> {"embeddings": float32}`, the body both signatures share."""

    def embed(images):
        # An empty batch runs one dummy image instead: with oneDNN, TF's CPU
        # Conv2D returns an empty batch with the input's channels, which then
        # fails in the next layer.
        count = tf.shape(images)[0]
        images = tf.cond(
            count > 0,
            lambda: images,
            lambda: tf.zeros([1, image_size, image_size, channels], images.dtype),
        )
        embeddings = encoder(images, training=False)[:count]
        return {EMBEDDINGS_KEY: tf.cast(embeddings, tf.float32)}

    return embed


def _serving_archive(encoder, image_size, resize_size, max_pixels, channels):
    """An `ExportArchive` with the `serving_default` and `serving_bytes` endpoints."""
    embed = _embed_fn(encoder, image_size, channels)
    decode_one = _make_decode_fn(image_size, resize_size, max_pixels, channels)

    def serve_bytes(image_bytes):
        images = tf.map_fn(
            decode_one,
            image_bytes,
            fn_output_signature=tf.TensorSpec([image_size, image_size, channels], tf.float32),
            parallel_iterations=_PARALLEL_DECODES,
        )
        return embed(images)

    archive = keras.export.ExportArchive()
    archive.track(encoder)
    default_fn = archive.add_endpoint(
        DEFAULT_SIGNATURE,
        embed,
        input_signature=[
            tf.TensorSpec([None, image_size, image_size, channels], tf.float32, name=IMAGES_KEY)
        ],
    )
    archive.add_endpoint(
        BYTES_SIGNATURE,
        serve_bytes,
        input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_KEY)],
    )
    output = default_fn.get_concrete_function().structured_outputs[EMBEDDINGS_KEY]
    if output.shape.rank != 2:
        raise ValueError(
            "Expected the encoder to return embeddings of shape [batch, D]. "
            f"Received shape: {output.shape}"
        )
    return archive


def _write_version(archive, base_dir, path):
    """Writes the archive to `path`, atomically on a local file system."""
    if "://" in base_dir:
        # Object stores have no atomic folder rename: write in place.
        archive.write_out(path, verbose=False)
        return path
    # Write beside the target and rename, so that a server watching base_dir
    # never loads a half-written version (the temporary name is not a number).
    staging = tempfile.mkdtemp(prefix=f".export-{uuid.uuid4().hex[:8]}-", dir=base_dir)
    try:
        archive.write_out(staging, verbose=False)
        if os.path.exists(path):
            raise FileExistsError(f"Version folder {path!r} appeared during the export.")
        os.rename(staging, path)
    except BaseException:
        if os.path.exists(staging):
            tf.io.gfile.rmtree(staging)
        raise
    return path
