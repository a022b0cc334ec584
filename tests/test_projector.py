"""TensorBoard's embedding projector files, read back the way the plugin reads them."""

import os

import keras
import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image
from tensorboard.plugins import projector as tb_projector

from keras_mdr import projector


def _coloured_images(n, size=6):
    """Image i is a flat colour that encodes i (so the sprite's order can be read)."""
    images = np.zeros((n, size, size, 3), np.uint8)
    images[..., 0] = (np.arange(n) * 7 % 256)[:, None, None]
    images[..., 1] = (np.arange(n) // 37 * 40 % 256)[:, None, None]
    images[..., 2] = 200
    return images


def _read_config(directory):
    with open(os.path.join(directory, projector.CONFIG_FILE)) as f:
        return text_format.Parse(f.read(), tb_projector.ProjectorConfig())


def _read_back(directory):
    config = _read_config(directory)
    (entry,) = config.embeddings
    vectors = np.loadtxt(os.path.join(directory, entry.tensor_path), delimiter="\t", ndmin=2)
    with open(os.path.join(directory, entry.metadata_path)) as f:
        labels = f.read().splitlines()
    return entry, vectors, labels


def test_write_projector_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(10, 4)).astype(np.float32)
    labels = np.array(["cat 1", "dog", "cat 1", "bird", "dog", "x", "y", "z", "w", "v"])
    images = _coloured_images(10)
    projector.write_projector(tmp_path, embeddings, labels, images, tensor_name="test")
    entry, vectors, read_labels = _read_back(tmp_path)
    assert entry.tensor_name == "test"
    np.testing.assert_allclose(vectors, embeddings, rtol=1e-6)
    assert read_labels == labels.tolist()  # one column: no header row
    assert list(entry.sprite.single_image_dim) == [6, 6]
    with Image.open(tmp_path / entry.sprite.image_path) as sprite:
        pixels = np.asarray(sprite.convert("RGB"))
    assert pixels.shape == (4 * 6, 4 * 6, 3)  # ceil(sqrt(10)) = 4 thumbnails a side
    for i in range(10):
        row, column = divmod(i, 4)
        cell = pixels[row * 6 : (row + 1) * 6, column * 6 : (column + 1) * 6]
        np.testing.assert_array_equal(cell.reshape(-1, 3)[0], images[i, 0, 0])
        assert (cell == cell[0, 0]).all()
    as_bytes = np.array([label.encode() for label in labels], dtype=object)  # tf.string labels
    projector.write_projector(tmp_path / "bytes", embeddings, as_bytes)
    assert _read_back(tmp_path / "bytes")[2] == ["cat 1", "dog", "cat 1", "bird", "dog", "x", "y",
                                                 "z", "w", "v"]
    with pytest.raises(ValueError, match="one image per embedding"):
        projector.write_projector(tmp_path / "bad", embeddings, labels, images[:3])


def test_sprite_fits_the_projector_limit():
    large = [np.zeros((300, 300), np.float32)] * 3000  # one array, listed 3000 times
    grid, t = projector.sprite(large)
    assert t == 8192 // 55 and grid.shape == (55 * t, 55 * t, 3)  # ceil(sqrt(3000)) = 55
    assert grid.shape[0] <= projector.MAX_SPRITE_SIDE
    assert projector.sprite([np.zeros((2, 2, 3), np.uint8)] * 3000)[1] == 2
    with pytest.raises(ValueError, match="at most 8192"):
        projector.sprite(large[:10], thumbnail=3000)


def test_sample_items_is_uniform_and_seeded():
    x = np.arange(500, dtype=np.float32)[:, None]
    y = np.arange(500) % 5
    first, labels = projector.sample_items((x, y), 100, seed=3, batch_size=64)
    again, _ = projector.sample_items((x, y), 100, seed=3, batch_size=64)
    picked = np.array([v[0] for v in first]).astype(int)
    assert len(first) == 100 and len(set(picked.tolist())) == 100
    assert picked.tolist() == sorted(picked.tolist())  # reading order
    np.testing.assert_array_equal(labels, picked % 5)
    assert [v[0] for v in again] == [v[0] for v in first]
    # Spread over the whole dataset, not its first items.
    assert picked.min() < 50 and picked.max() > 450
    everything, _ = projector.sample_items((x[:30], y[:30]), 100)
    assert len(everything) == 30


def test_projector_export_at_the_end_of_fit(tmp_path):
    images = _coloured_images(40).astype(np.float32)
    labels = np.arange(40) % 8
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(5)])
    model.compile(optimizer="adam", loss="mse")
    callback = projector.ProjectorExport((images, labels), tmp_path, max_items=25, seed=1,
                                         batch_size=8)
    model.fit(images, np.zeros((40, 5)), epochs=1, verbose=0, callbacks=[callback])
    entry, vectors, read_labels = _read_back(tmp_path / "projector")
    assert vectors.shape == (25, 5)
    # Each row is the trained model's embedding of the image its label and sprite cell show.
    red = images[:, 0, 0, 0]
    with Image.open(tmp_path / "projector" / entry.sprite.image_path) as sprite:
        pixels = np.asarray(sprite.convert("RGB"))
    side = 5
    for row in range(25):
        r, c = divmod(row, side)
        colour = pixels[r * 6, c * 6, 0]
        (item,) = np.flatnonzero(red == colour)
        assert read_labels[row] == str(labels[item])
        np.testing.assert_allclose(vectors[row], model.predict(images[item : item + 1],
                                                               verbose=0)[0], rtol=1e-5,
                                   atol=1e-5)
