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
problem and the batch positions (from 0) of every image that has it:
- bytes that are not a JPEG or PNG image;
- a header that cannot be read;
- an image whose header gives more than `max_pixels` pixels (height x width;
  their sizes are printed). The size is read from the header *before*
  anything is decoded (JPEG: `tf.image.extract_jpeg_shape`; PNG: the IHDR
  chunk), so a small file that claims to be huge (a decompression bomb)
  costs nothing;
- image data that the decoder rejects (truncated, corrupt).
Each check runs on the whole batch before the next one, so a request with
several bad images is told about all of them at the first failing check.
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
# Failing batch positions (and sizes) printed in an error message, at most.
_SUMMARIZE = 32


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


def _read_header(data):
    """The first `_PNG_HEADER_BYTES` bytes as uint8 `[..., 24]`, zero-padded when shorter."""
    header = tf.strings.substr(data, 0, _PNG_HEADER_BYTES)
    header = tf.strings.join([header, b"\0" * _PNG_HEADER_BYTES])
    header = tf.io.decode_raw(tf.strings.substr(header, 0, _PNG_HEADER_BYTES), tf.uint8)
    return tf.reshape(header, tf.concat([tf.shape(data), [_PNG_HEADER_BYTES]], 0))


def _assert_each(ok, problem, details="", values=()):
    """Asserts `ok` (bool `[n]`); the message names the failing batch positions.

    `details` is appended, its `{}` filled with `values` (as `tf.strings.format`).
    """
    bad = tf.reshape(tf.where(tf.logical_not(ok)), [-1])
    message = tf.strings.format(
        "serving_bytes: " + problem + " Batch positions (from 0): {}" + details,
        [bad, *values], summarize=_SUMMARIZE,
    )
    return tf.debugging.Assert(tf.reduce_all(ok), [message])


def _map_each(fn, image_bytes, spec):
    """`fn` on each element, in order; `(ok, outputs)` with `ok` False where it failed.

    Runs through `tf.data` with `ignore_errors`, so that an element the
    decoder rejects is left out and named by its position instead of ending
    the request with the decoder's own message. `outputs` holds the elements
    that succeeded (all of them once `ok` is asserted), `spec` their shape.
    """
    count = tf.shape(image_bytes, out_type=tf.int64)[0]
    data = tf.data.Dataset.from_tensor_slices((tf.range(count), image_bytes))
    data = data.map(lambda i, x: (i, fn(x)), num_parallel_calls=_PARALLEL_DECODES,
                    deterministic=True).ignore_errors()
    empty = tf.data.Dataset.from_tensors(
        (tf.zeros([0], tf.int64), tf.zeros([0, *spec.shape], spec.dtype))
    )
    positions, outputs = (
        data.batch(tf.maximum(count, 1)).concatenate(empty).take(1).get_single_element()
    )
    done = tf.scatter_nd(positions[:, None], tf.ones_like(positions), [count])
    return tf.equal(done, 1), outputs


def _check_signatures(image_bytes):
    """Asserts that every element is a JPEG, or a PNG with its IHDR chunk."""
    is_jpeg = image_format.has_signature(image_bytes, "jpeg")
    is_png = image_format.has_signature(image_bytes, "png")
    header = _read_header(image_bytes)
    ihdr = tf.constant(list(b"IHDR"), tf.uint8)
    has_ihdr = tf.reduce_all(tf.equal(header[:, 12:16], ihdr), axis=1)
    return [
        _assert_each(
            tf.logical_or(is_jpeg, is_png),
            "not a JPEG or PNG image (the bytes start with neither the JPEG "
            "bytes FF D8 FF nor the PNG signature).",
        ),
        _assert_each(tf.logical_or(tf.logical_not(is_png), has_ihdr),
                     "PNG image without an IHDR header chunk."),
    ]


def _header_size(data):
    """`[height, width]` (int64) from the header of one JPEG or PNG."""

    def jpeg_shape():
        return tf.image.extract_jpeg_shape(data, output_type=tf.int64)[:2]

    def png_shape():
        header = _read_header(data)
        return tf.stack([_byte_value(header, 20, 4), _byte_value(header, 16, 4)])

    return tf.cond(image_format.has_signature(data, "jpeg"), jpeg_shape, png_shape)


def _check_sizes_in_headers(image_bytes, max_pixels):
    """Asserts that every header reads and gives at most `max_pixels` pixels."""
    read, sizes = _map_each(_header_size, image_bytes, tf.TensorSpec([2], tf.int64))
    header_ok = _assert_each(read, "image header that cannot be read (corrupt JPEG header).")
    with tf.control_dependencies([header_ok]):
        height, width = tf.identity(sizes[:, 0]), sizes[:, 1]
    # In float64: PNG sides can reach 2**32, whose product overflows int64.
    pixels = tf.cast(height, tf.float64) * tf.cast(width, tf.float64)
    within = (height > 0) & (width > 0) & (pixels <= tf.constant(max_pixels, tf.float64))
    return [header_ok, _assert_each(
        within,
        f"image larger than the pixel cap max_pixels={max_pixels} (height x "
        "width, read from its header before decoding).",
        "; their heights: {}, widths: {}",
        [tf.boolean_mask(height, ~within), tf.boolean_mask(width, ~within)],
    )]


def _make_decode_fn(image_size, resize_size, max_pixels, channels):
    """`image_bytes [n] -> images [n, size, size, C]`, every check naming positions.

    In order: the format signatures, then the sizes read from the headers
    (nothing decoded yet, so a decompression bomb costs nothing), then the
    decoding; a failure at any step names the batch positions that failed it.
    """
    transform = eval_transform(image_size=image_size, resize_size=resize_size)
    spec = tf.TensorSpec([image_size, image_size, channels], tf.float32)

    def decode_one(data):
        image = tf.ensure_shape(image_format.decode(data, channels=channels), [None, None, channels])
        return tf.ensure_shape(tf.cast(transform(image, None), tf.float32), spec.shape)

    def decode_all(image_bytes):
        with tf.control_dependencies(_check_signatures(image_bytes)):
            image_bytes = tf.identity(image_bytes)
        with tf.control_dependencies(_check_sizes_in_headers(image_bytes, max_pixels)):
            image_bytes = tf.identity(image_bytes)
        decoded, images = _map_each(decode_one, image_bytes, spec)
        with tf.control_dependencies([_assert_each(
            decoded, "image data that the decoder rejects (truncated or corrupt)."
        )]):
            return tf.identity(images)

    return decode_all


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
    decode_all = _make_decode_fn(image_size, resize_size, max_pixels, channels)

    def serve_bytes(image_bytes):
        return embed(decode_all(image_bytes))

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
