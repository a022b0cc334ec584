"""The PNG pictures, checked by opening them."""

import numpy as np
import pytest
from PIL import Image

from keras_mdr import visualization


def _open(path):
    with Image.open(path) as image:
        image.load()
        return np.asarray(image.convert("RGB"))


def _assert_picture(path, min_width=300, min_height=200):
    pixels = _open(path)
    height, width, _ = pixels.shape
    assert width >= min_width and height >= min_height
    # Non-blank: many distinct colours, not one flat background.
    assert np.unique(pixels.reshape(-1, 3), axis=0).shape[0] > 20
    assert pixels.std() > 10
    return pixels


def test_recall_curves(tmp_path):
    curves = {"epoch 1": {1: 0.3, 10: 0.6, 100: 0.8, 1000: 0.95},
              "epoch 2": {1: 0.5, 10: 0.7, 100: 0.9, 1000: 0.99}}
    path = visualization.plot_recall_curves(curves, tmp_path / "runs" / "recall.png")
    _assert_picture(path)
    _assert_picture(visualization.plot_recall_curves({1: 0.5, 2: 0.7}, tmp_path / "one.png"))


def test_distance_histogram_marks_levels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    labels = np.repeat(np.arange(60), 5)
    path = visualization.plot_distance_histogram(
        x, tmp_path / "hist.png", labels=labels, levels=[-2.5, 0.1, 2.8],
        mean_std=(1.0, 0.2), max_items=200,
    )
    pixels = _assert_picture(path)
    # Green (same label) and red (different label) histograms are both drawn.
    green = (pixels[..., 1] > 120) & (pixels[..., 0] < 140) & (pixels[..., 2] < 140)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 140) & (pixels[..., 2] < 140)
    assert green.sum() > 200 and red.sum() > 200
    _assert_picture(visualization.plot_distance_histogram(x, tmp_path / "plain.png"))


def test_normalized_distances_follow_mdr():
    """Z = (D / mean D - mu) / sigma over all pairs i < j of the sample."""
    x = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    # Pair distances 3, 4, 5; mean 4 -> D~ = 0.75, 1, 1.25.
    out = visualization.normalized_distances(x, mean_std=(1.0, 0.5))
    np.testing.assert_allclose(np.sort(out["z"]), [-0.5, 0.0, 0.5])
    own = visualization.normalized_distances(x)
    assert own["mean"] == pytest.approx(1.0)
    assert own["std"] == pytest.approx(np.std([0.75, 1.0, 1.25]))
    big = visualization.normalized_distances(np.random.default_rng(0).normal(size=(500, 3)),
                                             max_items=100)
    assert big["z"].shape == (100 * 99 // 2,)


def test_retrieval_grid(tmp_path):
    rng = np.random.default_rng(0)
    queries = rng.uniform(size=(3, 32, 32, 3)).astype(np.float32)
    neighbours = (255 * rng.uniform(size=(3, 4, 32, 32, 3))).astype(np.uint8)
    neighbour_labels = np.array([[1, 2, 1, 1], [2, 2, 2, 2], [0, 3, 3, 3]])
    path = visualization.plot_retrieval_grid(
        queries, [1, 2, 3], neighbours, neighbour_labels, tmp_path / "grid.png",
        neighbor_distances=rng.uniform(size=(3, 4)),
    )
    pixels = _assert_picture(path)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    green = (pixels[..., 1] > 100) & (pixels[..., 0] < 80) & (pixels[..., 2] < 80)
    assert red.sum() > 50 and green.sum() > 50
    grey = rng.normal(size=(2, 16, 16, 1))  # preprocessed, single channel
    _assert_picture(visualization.plot_retrieval_grid(
        grey, [0, 1], grey[:, None].repeat(2, 1), [[0, 1], [1, 1]], tmp_path / "g.png"),
        min_width=200, min_height=150)
