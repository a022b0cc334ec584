"""keras_mdr.data.image_format: one signature table, the same answer in Python
and in the graph, on real encoded images written here."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_mdr.data import image_format


def _encoded(fmt):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (6, 5, 3), np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


FORMATS = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "bmp": "BMP", "webp": "WEBP"}


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_real_images_are_recognised(kind):
    data = _encoded(FORMATS[kind])
    assert image_format.image_kind(data[: image_format.HEADER_BYTES]) == kind
    assert bool(image_format.has_signature(tf.constant(data), kind))
    assert bool(image_format.is_known_image(tf.constant(data)))
    others = [other for other in image_format.KINDS if other != kind]
    assert not any(bool(image_format.has_signature(tf.constant(data), o)) for o in others)


@pytest.mark.parametrize("data", [b"", b"\xff\xd8", b"hello world!", b"RIFF\0\0\0\0WAVE"])
def test_non_images(data):
    assert image_format.image_kind(data) is None
    if data != b"RIFF\0\0\0\0WAVE":  # the graph check knows RIFF only, as decode_image
        assert not bool(image_format.is_known_image(tf.constant(data)))


def test_graph_check_on_a_batch():
    batch = tf.constant([_encoded("PNG"), b"", _encoded("JPEG"), b"x"])
    np.testing.assert_array_equal(image_format.has_signature(batch, "png"),
                                  [True, False, False, False])
    np.testing.assert_array_equal(image_format.is_known_image(batch), [True, False, True, False])
    with pytest.raises(ValueError, match="Received: kind='tiff'"):
        image_format.has_signature(batch, "tiff")
