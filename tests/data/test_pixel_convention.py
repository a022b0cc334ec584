"""One pixel convention (issue 12): the same image gives the same float32
tensor in [0, 255], RGB, from every data path, with int64 labels.

Sources: a file on disk, the encoded bytes in memory, and the decoded array in
memory (what Pillow decodes). Paths: `eval_dataset`, `balanced_dataset`,
`release_batches` (with the release's transform) and the serving signature.
"""

import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_mdr
from keras_mdr.export import export_for_serving

SIZE, RESIZE = 16, 20


def _photo(seed):
    rng = np.random.default_rng(seed)
    field = np.cumsum(np.cumsum(rng.normal(0, 8, (30, 26, 3)), axis=0), axis=1)
    return ((field - field.min()) / (field.max() - field.min()) * 255).astype(np.uint8)


@pytest.fixture(params=["PNG", "JPEG"])
def sources(request, tmp_path):
    """The same two images as files, as encoded bytes and as decoded arrays."""
    fmt = request.param
    encoded, decoded, paths = [], [], []
    for i in range(2):
        buffer = io.BytesIO()
        Image.fromarray(_photo(i)).save(buffer, fmt)
        data = buffer.getvalue()
        path = tmp_path / f"image{i}.{fmt.lower()}"
        path.write_bytes(data)
        encoded.append(data)
        paths.append(str(path))
        decoded.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    labels = [3, 2**40]  # a label past int32
    return encoded, {
        "paths": keras_mdr.data.Split(labels=labels, paths=paths),
        "encoded": keras_mdr.data.Split(labels=labels, encoded=encoded),
        "images": keras_mdr.data.Split(labels=labels, images=np.stack(decoded)),
    }


def _check(images, labels):
    assert images.dtype == tf.float32 and labels.dtype == tf.int64
    assert float(tf.reduce_max(images)) > 200.0  # [0, 255], not [0, 1]
    assert float(tf.reduce_min(images)) >= 0.0 and float(tf.reduce_max(images)) <= 255.0
    return images.numpy(), labels.numpy()


def _eval_path(split, transform):
    images, labels = next(iter(keras_mdr.data.eval_dataset(split, 2, transform=transform)))
    return _check(images, labels)


def _balanced_path(split, transform):
    dataset = keras_mdr.data.balanced_dataset(split, 2, 1, transform=transform, seed=0)
    images, labels = next(iter(dataset))
    order = np.argsort(labels.numpy())
    return _check(tf.gather(images, order), tf.gather(labels, order))


def _release_path(split, transform):
    dataset = keras_mdr.data.release_batches(split, 2, 1, transform=transform, seed=0)
    images, labels = next(iter(dataset))
    order = np.argsort(labels.numpy())
    return _check(tf.gather(images, order), tf.gather(labels, order))


def test_every_path_gives_the_same_tensor(sources):
    _, splits = sources
    ours = keras_mdr.data.eval_transform(SIZE, RESIZE)
    release = keras_mdr.data.release_eval_transform(SIZE, RESIZE)
    results = {}
    for name, split in splits.items():
        results[("eval", name)] = _eval_path(split, ours)
        results[("balanced", name)] = _balanced_path(split, ours)
        results[("release_eval", name)] = _eval_path(split, release)
        results[("release_batches", name)] = _release_path(split, release)
    for (path, name), (images, labels) in results.items():
        reference_path = "eval" if path in ("eval", "balanced") else "release_eval"
        expected_images, expected_labels = results[(reference_path, "images")]
        np.testing.assert_array_equal(labels, expected_labels, err_msg=f"{path} {name}")
        np.testing.assert_array_equal(images, expected_images, err_msg=f"{path} {name}")
    np.testing.assert_array_equal(results[("eval", "images")][1], [3, 2**40])


def test_the_release_eval_path_is_pillows(sources):
    _, splits = sources
    images, _ = _eval_path(splits["paths"], keras_mdr.data.release_eval_transform(SIZE, RESIZE))
    for image, path in zip(images, splits["paths"].paths):
        pil = Image.open(path).convert("RGB").resize((RESIZE, RESIZE), Image.LANCZOS)
        expected = np.asarray(pil)[2:18, 2:18]
        assert np.abs(image - expected).mean() < 0.5


def test_serving_bytes_gives_the_pipelines_tensor(sources, tmp_path):
    """An encoder that returns its input pixels: the served "embedding" is the
    tensor the serving decode fed it."""
    encoded, splits = sources
    encoder = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten()])
    path = export_for_serving(encoder, str(tmp_path / "model"), image_size=SIZE,
                              resize_size=RESIZE)
    served = tf.saved_model.load(path).signatures["serving_bytes"](
        image_bytes=tf.constant(encoded))
    served = next(iter(served.values())).numpy().reshape(-1, SIZE, SIZE, 3)
    expected, _ = _eval_path(splits["paths"], keras_mdr.data.eval_transform(SIZE, RESIZE))
    np.testing.assert_allclose(served, expected, atol=1e-4)
