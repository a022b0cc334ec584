"""The image formats keras_mdr reads, told apart by their first bytes.

One table of signatures ("magic bytes") for the checks done in Python on
file headers (`image_kind`) and in the graph on encoded strings
(`has_signature`), as the data pipelines and the serving signature do.

Example:

>>> from keras_mdr.data import image_format
>>> image_format.image_kind(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8))
'png'
>>> bool(image_format.has_signature(b"\\xff\\xd8\\xff\\xe0", "jpeg"))
True
"""

import tensorflow as tf

# kind -> (offset, bytes) pairs, any of which identifies the format. WebP is
# a RIFF container, so it needs a second check at byte 8.
SIGNATURES = {
    "jpeg": ((0, b"\xff\xd8\xff"),),
    "png": ((0, b"\x89PNG\r\n\x1a\n"),),
    "gif": ((0, b"GIF87a"), (0, b"GIF89a")),
    "bmp": ((0, b"BM"),),
    "webp": ((0, b"RIFF"),),
}
_WEBP_TAG = (8, b"WEBP")
KINDS = tuple(SIGNATURES)
# Pillow's IDCT (see `decode`).
JPEG_DCT_METHOD = "INTEGER_ACCURATE"
# The bytes of a header that `image_kind` needs to see.
HEADER_BYTES = 12


def _matches(head, offset, signature):
    return head[offset : offset + len(signature)] == signature


def image_kind(head):
    """The format ("jpeg", "png", "gif", "bmp", "webp") of an image whose
    first bytes are `head` (at least `HEADER_BYTES` of them), or None."""
    for kind, signatures in SIGNATURES.items():
        if any(_matches(head, offset, signature) for offset, signature in signatures):
            if kind == "webp" and not _matches(head, *_WEBP_TAG):
                return None
            return kind
    return None


def has_signature(data, kind):
    """A boolean tensor: whether the encoded image `data` (a string tensor of
    any shape) starts with the signature of `kind`.

    Unlike `image_kind`, WebP is recognised from its RIFF container alone,
    as `tf.io.decode_image` does.
    """
    if kind not in SIGNATURES:
        raise ValueError(f"Expected `kind` to be one of {list(KINDS)}. Received: kind={kind!r}")
    found = tf.zeros_like(tf.strings.length(data), tf.bool)
    for offset, signature in SIGNATURES[kind]:
        head = tf.strings.substr(data, offset, len(signature))
        found = tf.logical_or(found, tf.equal(head, signature))
    return found


def is_known_image(data):
    """A boolean tensor: whether `data` starts with any signature we read."""
    known = tf.zeros_like(tf.strings.length(data), tf.bool)
    for kind in KINDS:
        known = tf.logical_or(known, has_signature(data, kind))
    return known


def decode(data, channels=3):
    """Decodes one encoded image to `uint8` `(H, W, channels)`, as Pillow does.

    JPEGs are decoded with libjpeg's accurate integer IDCT
    (`dct_method="INTEGER_ACCURATE"`, JDCT_ISLOW), Pillow's default, which
    gives Pillow's pixels exactly; TensorFlow's default (the fast IDCT) is
    off by about one gray level on average, for the same speed. Other formats
    go through `tf.io.decode_image` (first frame of an animation).
    """
    return tf.cond(
        has_signature(data, "jpeg"),
        lambda: tf.io.decode_jpeg(data, channels=channels, dct_method=JPEG_DCT_METHOD),
        lambda: tf.io.decode_image(data, channels=channels, expand_animations=False),
    )


def decode_jpeg_window(data, window, channels=3):
    """Decodes only `window` (`(begin, size)`, (2,) int32 each) of a JPEG."""
    begin, size = window
    return tf.io.decode_and_crop_jpeg(
        data, tf.concat([begin, size], 0), channels=channels, dct_method=JPEG_DCT_METHOD
    )
