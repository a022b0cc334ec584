"""Reading a split's images without crashing on bad files.

Two lines of defence, so that a bad file never stops training hours into an
epoch:
1. Up front (`drop_bad_images`, run by `load_dataset`): every file is checked
   before any pipeline is built. The default check reads each file's first
   bytes and its last 4 KiB: empty files, files that are no image, and JPEG/PNG
   files cut short (no end-of-image marker, the usual result of an interrupted
   download or unzip) are found in seconds even for 120,000 files. The "decode"
   check decodes every image with Pillow (minutes, but finds corrupt data in the
   middle of a file too). Bad files are dropped with a warning that counts them,
   or, in strict mode, reported by path in a `ValueError`.
2. In the pipeline (`image_reader`): decoding happens inside `tf.data`, after
   sampling. In strict mode the same header/trailer check runs in the graph and
   a failure raises with the file's path; otherwise the pipelines drop what
   fails to decode (`Dataset.ignore_errors`) and print a warning with the count
   (see `count_skipped`).
"""

import concurrent.futures
import logging
import os
import sys
import time
import warnings

import numpy as np
import tensorflow as tf

from keras_mdr.data import image_format
from keras_mdr.data import transforms

_TAIL_BYTES = 4096
_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND"


def image_problem(head, tail, size):
    """Why an encoded image is unreadable, from its first and last bytes.

    Args:
        head: the first 16 (or more) bytes.
        tail: the last 4 KiB (or the whole file if shorter).
        size: the size in bytes.

    Returns:
        None for a file that looks complete, else a short reason.
    """
    if size == 0:
        return "empty file"
    kind = image_format.image_kind(head)
    if kind is None:
        return "not a JPEG, PNG, GIF, BMP or WebP image"
    if kind == "jpeg" and _JPEG_END not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if kind == "png" and _PNG_END not in tail:
        return "truncated PNG (no IEND chunk)"
    if kind == "bmp" and int.from_bytes(head[2:6], "little") > size:
        return "truncated BMP (shorter than its header says)"
    if kind == "webp" and int.from_bytes(head[4:8], "little") + 8 > size:
        return "truncated WebP (shorter than its header says)"
    return None


def _file_problem(path, decode):
    try:
        if decode:
            return _decode_problem(path)
        with open(path, "rb") as f:
            head = f.read(16)
            size = f.seek(0, os.SEEK_END)
            f.seek(max(size - _TAIL_BYTES, 0))
            tail = f.read()
        return image_problem(head, tail, size)
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"


def _decode_problem(path_or_bytes):
    # Pillow is imported only for the slow full check.
    import io

    from PIL import Image

    source = (
        io.BytesIO(path_or_bytes)
        if isinstance(path_or_bytes, bytes)
        else path_or_bytes
    )
    try:
        with Image.open(source) as image:
            image.load()
    except (OSError, SyntaxError, ValueError) as error:
        return f"cannot be decoded ({error})"
    return None


def _bytes_problem(data, decode):
    if decode:
        return _decode_problem(data)
    return image_problem(data[:16], data[-_TAIL_BYTES:], len(data))


def find_bad_images(split, check="header", num_threads=16):
    """Finds the images of a split that cannot be read.

    Args:
        split: a `keras_mdr.data.Split`. Splits of in-memory arrays have no bad
            images.
        check: "header" (first bytes and last 4 KiB of each file: finds empty,
            non-image and truncated files, fast) or "decode" (decodes every
            image with Pillow: also finds corrupt data inside a file, slow).
        num_threads: files checked concurrently.

    Returns:
        A list of `(index, name, reason)`: the position in the split, the file
        path (or "encoded image #i") and why it is unreadable.

    Example:

    >>> import keras_mdr.data
    >>> split = keras_mdr.data.Split(labels=[0], encoded=[b"not an image"])
    >>> keras_mdr.data.find_bad_images(split)
    [(0, 'encoded image #0', 'not a JPEG, PNG, GIF, BMP or WebP image')]
    """
    if check not in ("header", "decode"):
        raise ValueError(
            f'Expected check="header" or "decode". Received: check={check!r}'
        )
    decode = check == "decode"
    if split.source == "images":
        return []
    if split.source == "paths":
        names = list(split.paths)
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
            problems = list(pool.map(lambda p: _file_problem(p, decode), names))
        seconds = time.perf_counter() - start
        if seconds > 2.0:  # say so only when the scan was long enough to notice
            logging.getLogger(__name__).info(
                "Checked %d files of split %r (%s) in %.1f s.",
                len(names), split.name, check, seconds,
            )
    else:
        names = [f"encoded image #{i}" for i in range(len(split))]
        problems = [_bytes_problem(data, decode) for data in split.encoded]
    return [
        (index, names[index], problem)
        for index, problem in enumerate(problems)
        if problem is not None
    ]


def drop_bad_images(split, strict=False, check="header"):
    """Returns `split` without its unreadable images.

    Args:
        split: a `keras_mdr.data.Split`.
        strict: raise a `ValueError` naming every bad file instead of dropping
            them.
        check: "header" or "decode", see `find_bad_images`.

    Returns:
        The split itself if every image is readable, else a copy without the bad
        ones (and a `UserWarning` that counts them and names the first few).

    Example:

    >>> import warnings
    >>> import keras_mdr.data
    >>> split = keras_mdr.data.Split(
    ...     labels=[0, 1], encoded=[b"not an image", b"\\xff\\xd8\\xff"], name="train")
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     kept = keras_mdr.data.drop_bad_images(split)
    >>> len(kept)
    0
    >>> print(caught[0].message)
    Skipped 2 unreadable images of 2 in split 'train':
      encoded image #0: not a JPEG, PNG, GIF, BMP or WebP image
      encoded image #1: truncated JPEG (no end-of-image marker)
    """
    bad = find_bad_images(split, check=check)
    if not bad:
        return split
    listing = "\n".join(f"  {name}: {reason}" for _, name, reason in bad[:10])
    more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
    if strict:
        raise ValueError(
            f"Expected every image of split {split.name!r} to be readable. "
            f"Received: {len(bad)} unreadable of {len(split)}:\n{listing}{more}"
        )
    warnings.warn(
        f"Skipped {len(bad)} unreadable images of {len(split)} in split "
        f"{split.name!r}:\n{listing}{more}",
        stacklevel=2,
    )
    keep = np.setdiff1d(np.arange(len(split)), [index for index, _, _ in bad])
    return split.take(keep)


def _graph_contains(values, pattern):
    """Whether the uint8 vector `values` contains the byte string `pattern`."""
    length = tf.shape(values)[0] - len(pattern) + 1
    found = tf.ones([tf.maximum(length, 0)], tf.bool)
    for offset, byte in enumerate(pattern):
        window = values[offset : offset + tf.maximum(length, 0)]
        found = tf.logical_and(found, tf.equal(window, byte))
    return tf.reduce_any(found)


def _graph_image_problem(data):
    """In-graph twin of `image_problem` for JPEG/PNG: True where data is bad."""
    size = tf.strings.length(data)
    tail = tf.strings.substr(data, tf.maximum(size - _TAIL_BYTES, 0), _TAIL_BYTES)
    tail_bytes = tf.io.decode_raw(tail, tf.uint8)
    jpeg_end = _graph_contains(tail_bytes, _JPEG_END)
    png_end = _graph_contains(tail_bytes, _PNG_END)
    is_jpeg = image_format.has_signature(data, "jpeg")
    is_png = image_format.has_signature(data, "png")
    known = image_format.is_known_image(data)
    truncated = tf.logical_or(
        tf.logical_and(is_jpeg, tf.logical_not(jpeg_end)),
        tf.logical_and(is_png, tf.logical_not(png_end)),
    )
    return tf.logical_or(tf.logical_not(known), truncated)


def image_reader(split, strict=False):
    """A function from an index of `split` to its decoded `uint8` image.

    Files and encoded bytes are decoded as RGB `(H, W, 3)`; in-memory images
    keep their shape `(H, W, C)`. Meant to run inside `tf.data.Dataset.map`.

    Args:
        split: a `keras_mdr.data.Split`.
        strict: check each file's header and trailer in the graph first, and
            fail with its path if it is unreadable. Without it a bad file makes
            the decode op fail, which the pipelines skip and count.

    Returns:
        A function `read(index, window=None) -> tf.Tensor`. With `window`, a
        function from the image's (height, width) to a pixel window
        `(begin, size)`, only that window is returned, and a JPEG is decoded
        only inside it.
    """
    if split.source == "images":
        return _array_reader(tf.constant(split.images))
    # Captured once; TensorFlow captures eager tensors by reference, so even
    # gigabytes of encoded bytes are not copied into the graph.
    table = tf.constant(getattr(split, split.source))

    def read(index, window=None):
        if split.source == "paths":
            name = tf.gather(table, index)
            data = tf.io.read_file(name)
        else:
            data = tf.gather(table, index)
            name = tf.strings.format("encoded image #{}", index)
        if strict:
            check = tf.debugging.Assert(
                tf.logical_not(_graph_image_problem(data)),
                [
                    f"Expected a readable image in split {split.name!r} "
                    "(strict mode). Received an empty, non-image or truncated "
                    "file:",
                    name,
                ],
            )
            with tf.control_dependencies([check]):
                data = tf.identity(data)
        if window is None:
            return image_format.decode(data)
        return _decode_window(data, window)

    return read


def _array_reader(table):
    """`read(index, window=None)` of in-memory images (a window crops them)."""

    def read_array(index, window=None):
        image = tf.gather(table, index)
        if window is not None:
            image = transforms.crop_to_window(image, window(tf.shape(image)[:2]))
        return image

    return read_array


def _decode_window(data, window):
    """The pixel window of encoded `data`; a JPEG is decoded only inside it."""

    def decode_jpeg_window():
        shape = tf.io.extract_jpeg_shape(data)[:2]
        return image_format.decode_jpeg_window(data, window(shape))

    def decode_other_window():
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        return transforms.crop_to_window(image, window(tf.shape(image)[:2]))

    is_jpeg = image_format.has_signature(data, "jpeg")
    return tf.cond(is_jpeg, decode_jpeg_window, decode_other_window)


def transformed_reader(split, transform, strict=False):
    """A function `load(index, seed)`: the image at `index`, decoded and transformed.

    A `keras_mdr.data.transforms.CropTransform` with `decode_window` is
    applied with its window before decoding (see `image_reader`); any other
    transform is called on the decoded image.

    Args:
        split: a `keras_mdr.data.Split`.
        transform: a function `transform(image, seed)`.
        strict: see `image_reader`.
    """
    read = image_reader(split, strict=strict)
    if isinstance(transform, transforms.CropTransform) and transform.decode_window:

        def load_window(index, seed):
            image = read(index, window=lambda shape: transform.window(shape, seed))
            return transform.finish(image, seed)

        return load_window
    return lambda index, seed: transform(read(index), seed)


def decoded_stream(sample, load, start_batch, rows_per_batch, strict, what,
                   num_parallel_calls=tf.data.AUTOTUNE):
    """The rows of an endless batch stream, decoded, with one policy for bad images.

    Batch numbers count from `start_batch`; `sample(batch_number)` returns that
    batch's rows (each ending with its int64 position in the stream) and
    `load(*row)` decodes one row to `(x, y, position)`, in order.

    Args:
        sample: batch number -> the batch's rows, stacked.
        load: one row -> `(x, y, position)`.
        start_batch: the first batch number.
        rows_per_batch: rows `sample` returns per batch (positions of a
            resumed stream start at `start_batch * rows_per_batch`).
        strict: fail on an unreadable image; else skip its row and warn with
            the count (`count_skipped`).
        what: what a skipped row is, for the warning.
        num_parallel_calls: parallel `load` calls.

    Returns:
        An endless, unbatched dataset of `(x, y)`.
    """
    dataset = tf.data.Dataset.counter(start=start_batch).map(sample).unbatch()
    dataset = dataset.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
    if strict:
        return dataset.map(lambda x, y, position: (x, y))
    return count_skipped(dataset.ignore_errors(), what=what, start=start_batch * rows_per_batch)


def count_skipped(dataset, total=None, what="images that failed to decode", start=0):
    """Counts elements dropped upstream by `ignore_errors`, with a warning.

    Each element of `dataset` is a tuple whose last entry is its int64 position
    in the stream before anything was dropped; positions are consecutive unless
    an element was skipped. The returned dataset drops that entry and prints a
    warning (to stderr, from inside the pipeline) with the running count each
    time it finds a gap.

    Args:
        dataset: the dataset after `ignore_errors`.
        total: for a finite stream, its length before dropping, so that elements
            dropped at its very end are counted too.
        what: what the dropped elements are, for the message.
        start: the position of the stream's first element (a resumed stream
            starts past 0).

    Returns:
        The dataset without the position entry.
    """
    if total is not None:
        # A sentinel at position `total` makes drops at the end show as a gap.
        sentinel = tf.nest.map_structure(
            lambda spec: tf.zeros(
                [0 if d is None else d for d in spec.shape], spec.dtype
            ),
            dataset.element_spec[:-1],
        )
        sentinel = tf.data.Dataset.from_tensors(
            tuple(sentinel) + (tf.constant(total, tf.int64),)
        )
        dataset = dataset.concatenate(sentinel)

    def step(state, element):
        expected, skipped = state
        position = element[-1]
        gap = position - expected
        skipped = skipped + gap

        def warn():
            message = tf.strings.format(
                "WARNING keras_mdr.data: skipped {} " + what + " ({} so far); "
                "keras_mdr.data.find_bad_images(split) lists bad files.",
                (gap, skipped),
            )
            print_op = tf.print(message, output_stream=sys.stderr)
            with tf.control_dependencies([print_op]):
                return tf.identity(skipped)

        skipped = tf.cond(gap > 0, warn, lambda: skipped)
        return (position + 1, skipped), element

    dataset = dataset.scan((tf.constant(start, tf.int64), tf.constant(0, tf.int64)), step)
    if total is not None:
        dataset = dataset.filter(lambda *element: element[-1] < total)
    return dataset.map(lambda *element: element[:-1])
