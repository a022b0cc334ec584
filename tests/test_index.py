"""EmbeddingIndex: exact and approximate search, save/load, model queries."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mdr.evaluation import knn_search
from keras_mdr.index import MISSING_ID, EmbeddingIndex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    with pytest.raises(ValueError, match="labels"):
        index.add(x[:5])
    with pytest.raises(ValueError, match="kind"):
        EmbeddingIndex(kind="lsh")
    with pytest.raises(ValueError, match="build"):
        EmbeddingIndex().search(x[:1])
    with pytest.raises(ValueError, match="dimension"):
        index.add(np.zeros((2, 3), np.float32), labels=[0, 1])


def test_empty_slots_are_marked(tmp_path):
    """issue 12: with k > N the padded slots had the label of item 0."""
    x, _ = _clustered(30)
    labels = np.arange(30) + 100  # item 0's label (100) must not appear as padding
    index = EmbeddingIndex().build(x, labels=labels)
    result = index.search(x[:2], k=40)
    assert result.found.tolist() == [30, 30]
    assert result.valid[:, :30].all() and not result.valid[:, 30:].any()
    assert (result.ids[:, 30:] == MISSING_ID).all()
    assert np.isinf(result.distances[:, 30:]).all()
    assert (result.labels[:, 30:] == -1).all()
    assert set(result.labels[:, :30].ravel()) == set(labels)
    # The padding is no neighbour: recall against exact search stays 1 for "flat".
    assert index.recall_against_exact(x[:5], k=40) == 1.0
    names = EmbeddingIndex().build(x, labels=[f"c{i}" for i in range(30)],
                                   ids=[f"id{i}" for i in range(30)])
    padded = names.search(x[:1], k=31)
    assert padded.ids[0, 30] == "" and padded.labels[0, 30] == "" and padded.found[0] == 30
    with pytest.raises(ValueError, match=">= 0"):
        EmbeddingIndex().build(x[:2], ids=[MISSING_ID, 3])
    with pytest.raises(ValueError, match="non-empty"):
        EmbeddingIndex().build(x[:2], ids=["a", ""])
    with pytest.raises(ValueError, match="unique"):
        EmbeddingIndex().build(x[:2], ids=[4, 4])


def _pandas_like(values):
    """An object array of Python values, what `pandas.Series.values` gives."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def test_string_labels_and_ids_save_and_load_without_pickle(tmp_path):
    """issue 12: object-array labels saved, then failed to load (allow_pickle=False)."""
    x, y = _clustered(60)
    labels = _pandas_like([f"class-{v}" for v in y])
    ids = _pandas_like([f"sku-{i:04d}" for i in range(60)])
    index = EmbeddingIndex().build(x, labels=labels, ids=ids)
    index.add(x[:3] + 0.5, labels=_pandas_like(["new"] * 3), ids=["x1", "x2", "x3"])
    before = index.search(x[:5], k=3)
    assert before.ids[:, 0].tolist() == [f"sku-{i:04d}" for i in range(5)]
    index.save(tmp_path / "idx")
    with np.load(tmp_path / "idx" / "metadata.npz", allow_pickle=False) as meta:
        assert meta["labels"].dtype.kind == "U" and meta["ids"].dtype.kind == "U"
    loaded = EmbeddingIndex.load(tmp_path / "idx")
    after = loaded.search(x[:5], k=3)
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_array_equal(after.labels, before.labels)
    assert loaded.labels[-1] == "new" and loaded.ids[-1] == "x3"
    with pytest.raises(ValueError, match="string ids"):
        loaded.add(x[:1], labels=["a"])
    # Files of two different saves are refused, not paired up wrongly.
    EmbeddingIndex().build(x[:10], labels=y[:10]).save(tmp_path / "small")
    os.replace(tmp_path / "small" / "metadata.npz", tmp_path / "idx" / "metadata.npz")
    with pytest.raises(ValueError, match="63 vectors, 10 ids, 10 labels"):
        EmbeddingIndex.load(tmp_path / "idx")
    with pytest.raises(ValueError, match="same kind"):
        loaded.add(x[:1], labels=[7], ids=["x9"])
    with pytest.raises(ValueError, match="one kind"):
        EmbeddingIndex().build(x[:2], labels=_pandas_like(["a", 3]))
    # String labels of a tf.data pipeline arrive as an object array of bytes.
    data = tf.data.Dataset.from_tensor_slices((x[:6], [f"class-{i % 2}" for i in range(6)]))
    from_data = EmbeddingIndex.from_model(lambda v: v, data.batch(4), verbose=0)
    assert from_data.labels.tolist() == [f"class-{i % 2}" for i in range(6)]
    from_data.save(tmp_path / "from_data")
    assert EmbeddingIndex.load(tmp_path / "from_data").labels.dtype.kind == "U"


def test_large_integer_labels_and_ids_round_trip(tmp_path):
    x, _ = _clustered(20)
    big = np.int64(2) ** 62 + np.arange(20)  # not representable in float64
    index = EmbeddingIndex().build(x, labels=big, ids=_pandas_like([int(v) for v in big]))
    index.save(tmp_path / "big")
    loaded = EmbeddingIndex.load(tmp_path / "big")
    assert loaded.labels.dtype == np.int64 and loaded.ids.dtype == np.int64
    np.testing.assert_array_equal(loaded.search(x[:4], k=1).labels[:, 0], big[:4])
    np.testing.assert_array_equal(loaded.search(x[:4], k=1).ids[:, 0], big[:4])


def test_query_shapes_get_precise_messages():
    """issue 12: a wrong dimension or a single vector got a message about from_model."""
    x, y = _clustered(50)
    index = EmbeddingIndex().build(x, labels=y)
    with pytest.raises(ValueError, match=r"one vector of shape \(16,\).*queries\[None\]"):
        index.search(x[0], k=2)
    with pytest.raises(ValueError, match=r"num_queries, 16\).*shape=\(3, 7\)"):
        index.search(np.zeros((3, 7), np.float32), k=2)
    with pytest.raises(ValueError, match=r"at least one query.*shape=\(0, 16\)"):
        index.search(np.zeros((0, 16), np.float32), k=2)
    with pytest.raises(ValueError, match="finite"):
        index.search(np.full((1, 16), np.nan, np.float32), k=2)
    np.testing.assert_array_equal(index.search(x[0][None], k=1).ids, [[0]])
    for k in (0, 2.5, "3"):
        with pytest.raises(ValueError, match="`k` to be a positive int"):
            index.search(x[:1], k=k)
    images = EmbeddingIndex(embed_fn=lambda q: np.asarray(q).reshape(len(q), -1)[:, :3])
    images.build(x[:, :3])
    with pytest.raises(ValueError, match=r"embed_fn to return.*\(num_queries, 3\)"):
        images.embed_fn = lambda q: np.zeros((len(q), 5), np.float32)
        images.search(np.zeros((2, 4, 4, 1), np.float32), k=1)


@pytest.mark.parametrize("kind, attribute", [("ivf", "nprobe"), ("hnsw", "ef_search")])
def test_search_parameters_set_on_a_built_index_take_effect(kind, attribute):
    x, _ = _clustered(4000)
    queries = x[:200] + 0.05
    index = EmbeddingIndex(kind=kind, nprobe=1, ef_search=1, hnsw_m=4).build(x)
    low = index.recall_against_exact(queries, k=50)
    setattr(index, attribute, 4000)
    high = index.recall_against_exact(queries, k=50)
    assert low < 0.99 and high > low + 0.01, (low, high)


def test_index_loads_after_import_keras_mdr_alone(tmp_path):
    """issue 12 item 9: a saved index reopens in a fresh process via `keras_mdr.index`."""
    x, _ = _clustered(40)
    labels = _pandas_like([f"c{i % 4}" for i in range(40)])
    EmbeddingIndex(distance="cosine").build(x, labels=labels).save(tmp_path / "idx")
    np.save(tmp_path / "q.npy", x[:3])
    script = textwrap.dedent(f"""
        import numpy as np
        import keras_mdr
        index = keras_mdr.index.EmbeddingIndex.load({str(tmp_path / 'idx')!r})
        result = index.search(np.load({str(tmp_path / 'q.npy')!r}), k=2)
        assert result.ids[:, 0].tolist() == [0, 1, 2], result.ids
        assert result.labels[:, 0].tolist() == ["c0", "c1", "c2"], result.labels
        print("LOADED", index.distance)
    """)
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env=env, timeout=300)
    assert process.returncode == 0 and "LOADED cosine" in process.stdout, process.stderr[-3000:]
