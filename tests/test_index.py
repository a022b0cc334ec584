"""EmbeddingIndex: exact and approximate search, save/load, model queries."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mdr.evaluation import knn_search
from keras_mdr.index import EmbeddingIndex


def _clustered(n=2000, d=16, clusters=40, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, clusters, n)
    centres = 4.0 * rng.normal(size=(clusters, d))
    x = (centres[labels] + rng.normal(size=(n, d))).astype(np.float32)
    return x, labels


@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean", "cosine"])
def test_flat_index_is_exact(distance):
    x, y = _clustered(500)
    ids = np.arange(500) * 10 + 7
    index = EmbeddingIndex(distance=distance).build(x, labels=y, ids=ids)
    q = x[:20] + 0.01
    result = index.search(q, k=5)
    want_idx, want_dist = knn_search(q, x, k=5, distance=distance)
    np.testing.assert_array_equal(result.ids, ids[want_idx])
    np.testing.assert_array_equal(result.labels, y[want_idx])
    np.testing.assert_allclose(result.distances, want_dist, rtol=1e-5, atol=1e-5)
    assert index.recall_against_exact(q, k=5) == 1.0


@pytest.mark.parametrize("kind, minimum", [("hnsw", 0.95), ("ivf", 0.9)])
def test_approximate_recall_against_exact(kind, minimum):
    x, y = _clustered(4000)
    queries = x[:200] + 0.05
    index = EmbeddingIndex(kind=kind).build(x, labels=y)
    recall = index.recall_against_exact(queries, k=10)
    assert minimum <= recall <= 1.0, recall


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip(tmp_path, kind):
    x, _ = _clustered(1000)
    names = np.array([f"item-{i % 13}" for i in range(1000)])
    index = EmbeddingIndex(distance="cosine", kind=kind, ef_search=64, nprobe=4)
    index.build(x, labels=names, ids=np.arange(1000, 2000))
    before = index.search(x[:30], k=4)
    index.save(tmp_path / "idx")
    loaded = EmbeddingIndex.load(tmp_path / "idx")
    after = loaded.search(x[:30], k=4)
    assert loaded.get_config() == index.get_config()
    np.testing.assert_array_equal(before.ids, after.ids)
    np.testing.assert_array_equal(before.labels, after.labels)
    np.testing.assert_array_equal(before.distances, after.distances)
    assert len(loaded) == 1000 and loaded.dim == 16


def test_from_model_and_image_queries(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(90, 6, 6, 3)).astype(np.float32)
    labels = np.repeat(np.arange(30), 3)
    keras.utils.set_random_seed(0)
    encoder = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Flatten(),
                                keras.layers.Dense(8)])
    model = keras.Model(encoder.inputs, encoder.outputs)
    model.encoder = encoder
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(32)
    index = EmbeddingIndex.from_model(model, data, verbose=0)
    assert len(index) == 90
    by_image = index.search(images[:5], k=3)
    by_embedding = index.search(encoder.predict(images[:5], verbose=0), k=3)
    np.testing.assert_array_equal(by_image.ids, by_embedding.ids)
    assert by_image.ids[:, 0].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(by_image.labels[:, 0], labels[:5])
    index.save(tmp_path / "m")
    again = EmbeddingIndex.load(tmp_path / "m", model=model)
    np.testing.assert_array_equal(again.search(images[:5], k=3).ids, by_image.ids)
    with pytest.raises(ValueError, match="embed_fn"):
        EmbeddingIndex.load(tmp_path / "m").search(images[:5], k=3)


def test_add_and_errors():
    x, y = _clustered(300)
    index = EmbeddingIndex().build(x[:200], labels=y[:200])
    index.add(x[200:], labels=y[200:])
    assert len(index) == 300 and index.ids[-1] == 299
    result = index.search(x[250:251], k=400)  # more than the gallery: padded
    assert (result.ids[0, 300:] == -1).all() and np.isinf(result.distances[0, 300:]).all()
    with pytest.raises(ValueError, match="labels"):
        index.add(x[:5])
    with pytest.raises(ValueError, match="kind"):
        EmbeddingIndex(kind="lsh")
    with pytest.raises(ValueError, match="build"):
        EmbeddingIndex().search(x[:1])
    with pytest.raises(ValueError, match="dimension"):
        index.add(np.zeros((2, 3), np.float32), labels=[0, 1])
