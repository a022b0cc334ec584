"""Exact faiss neighbour search against brute force."""

import numpy as np
import pytest

from keras_mdr.evaluation import knn_search


def _brute(q, g, distance):
    q, g = q.astype(np.float64), g.astype(np.float64)
    if distance == "cosine":
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        gn = g / np.linalg.norm(g, axis=1, keepdims=True)
        return 1.0 - qn @ gn.T
    d2 = ((q[:, None] - g[None]) ** 2).sum(-1)
    return d2 if distance == "squared_euclidean" else np.sqrt(d2)


@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean", "cosine"])
def test_query_vs_gallery(distance):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(37, 8)).astype(np.float32)
    g = rng.normal(size=(300, 8)).astype(np.float32)
    idx, dist = knn_search(q, g, k=7, distance=distance, block_size=10)
    full = _brute(q, g, distance)
    want = np.argsort(full, axis=1)[:, :7]
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_allclose(dist, np.take_along_axis(full, want, 1), rtol=1e-4, atol=1e-4)
    assert idx.dtype == np.int64 and dist.dtype == np.float32


def test_self_search_excludes_self_by_index():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    x[10] = x[20]  # a duplicate stays a neighbour (distance 0); self never is
    idx, dist = knn_search(x, k=3, block_size=16)
    assert not np.any(idx == np.arange(50)[:, None])
    assert idx[10, 0] == 20 and idx[20, 0] == 10 and dist[10, 0] == 0.0
    full = _brute(x, x, "euclidean")
    np.fill_diagonal(full, np.inf)
    nearest = np.sort(full, 1)[:, :3]
    # The ids point at the items at those distances (whatever faiss does with
    # near-ties), and the distances are the 3 smallest, nearest first.
    np.testing.assert_allclose(np.take_along_axis(full, idx, 1), nearest, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dist, nearest, rtol=1e-4, atol=1e-5)


def test_k_bounds():
    x = np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError, match="k <= 4, the number of gallery items"):
        knn_search(x, k=5)
    with pytest.raises(ValueError, match="distance"):
        knn_search(x, k=1, distance="hamming")


def test_degenerate_inputs_name_the_problem():
    with pytest.raises(ValueError, match="non-empty 2-D.*queries.shape=\\(0, 2\\)"):
        knn_search(np.zeros((0, 2), np.float32), k=1)
    with pytest.raises(ValueError, match="at least one item besides the query itself"):
        knn_search(np.zeros((1, 2), np.float32), k=1)
    with pytest.raises(ValueError, match="non-empty 2-D.*gallery.shape=\\(0, 2\\)"):
        knn_search(np.zeros((3, 2), np.float32), np.zeros((0, 2), np.float32), k=1)


def test_exclude_indices_matches_self_search_on_a_subset():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(80, 5)).astype(np.float32)
    picks = np.array([3, 17, 40, 79])
    full_idx, full_dist = knn_search(x, k=4)
    idx, dist = knn_search(x[picks], x, k=4, exclude_indices=picks)
    np.testing.assert_array_equal(idx, full_idx[picks])
    np.testing.assert_allclose(dist, full_dist[picks], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="exclude index"):
        knn_search(x[picks], x, k=4, exclude_indices=picks[:2])
