"""The PNG pictures, checked by opening them."""

import numpy as np
import pytest
from PIL import Image

import keras_mdr
from keras_mdr import visualization
from keras_mdr.losses import mdr as mdr_lib


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
    """Z = (D / mean D - mu) / sigma over the pairs i < j; the sample's own
    (mu, sigma) as MDR's batch statistics: all N*N entries, unbiased (issue 13)."""
    x = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    # Pair distances 3, 4, 5; mean 4 -> D~ = 0.75, 1, 1.25.
    out = visualization.normalized_distances(x, mean_std=(1.0, 0.5))
    np.testing.assert_allclose(np.sort(out["z"]), [-0.5, 0.0, 0.5])
    own = visualization.normalized_distances(x)
    everything = np.array([[0, 0.75, 1.0], [0.75, 0, 1.25], [1.0, 1.25, 0]])
    assert own["mean"] == pytest.approx(everything.mean())
    assert own["std"] == pytest.approx(everything.std(ddof=1))
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(32, 5)).astype(np.float32)
    distances = keras_mdr.distances.pairwise_distance(batch)
    scale = mdr_lib.mean_distance(distances)
    mean, std = mdr_lib.distance_statistics(distances, scale)
    stats = visualization.normalized_distances(batch)
    assert stats["scale"] == pytest.approx(float(scale), rel=1e-5)
    assert (stats["mean"], stats["std"]) == (pytest.approx(float(mean), rel=1e-4),
                                             pytest.approx(float(std), rel=1e-4))
    big = visualization.normalized_distances(rng.normal(size=(500, 3)), max_items=100)
    assert big["z"].shape == (100 * 99 // 2,)


def _tick_texts(fig, axis):
    fig.canvas.draw()
    ax = fig.axes[0]
    ticks = ax.xaxis if axis == "x" else ax.yaxis
    return [t.get_text() for t in ticks.get_ticklabels()]


def test_recall_curves_readable_scale_and_integer_ticks():
    """issue 12: a 0-100 axis flattened curves at 98-100; ticks read "3x10^0"."""
    curves = {"epoch 1": {1: 0.981, 2: 0.99, 4: 0.995, 8: 0.998, 16: 1.0},
              "epoch 2": {1: 0.985, 2: 0.993, 4: 0.997, 8: 0.999, 16: 1.0}}
    fig = visualization.recall_curves_figure(curves)
    ax = fig.axes[0]
    assert _tick_texts(fig, "x") == ["1", "2", "4", "8", "16"]
    assert len(ax.xaxis.get_minorticklocs()) == 0
    low, high = ax.get_ylim()
    assert 95.0 <= low < 98.1 and high == 100.0, (low, high)
    # The two curves are far apart on the picture: > 2% of the axis at K=1.
    assert (98.5 - 98.1) / (high - low) > 0.02
    y_texts = [t for t in _tick_texts(fig, "y") if t]
    assert y_texts and all(float(t) >= 90 for t in y_texts), y_texts  # plain numbers
    few = visualization.recall_curves_figure({1: 0.2, 5: 0.35, 10: 0.5})
    assert _tick_texts(few, "x") == ["1", "5", "10"]
    assert few.axes[0].get_ylim()[0] < 20.0
    with pytest.raises(ValueError, match=r"in \[0, 1\].*from 98 to 100"):
        visualization.recall_curves_figure({1: 98.0, 2: 100.0})  # percentages, not fractions
    with pytest.raises(ValueError, match="K >= 1"):
        visualization.recall_curves_figure({0: 0.5, 2: 0.7})


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


def test_retrieval_grid_shows_failed_queries_first():
    """issue 12: the grid showed only successes; failures come first, labelled."""
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(4, 8, 8, 3))
    neighbours = rng.uniform(size=(4, 2, 8, 8, 3))
    # Queries 0 and 2 succeed (top-1 same label), 1 and 3 fail.
    labels = np.array([5, 6, 7, 8])
    neighbour_labels = np.array([[5, 1], [1, 6], [7, 7], [2, 8]])
    fig = visualization.retrieval_grid_figure(images, labels, neighbours, neighbour_labels)
    query_titles = [ax.get_title() for ax in fig.axes[::3]]
    assert query_titles == ["FAILED query\nlabel 6", "FAILED query\nlabel 8",
                            "query\nlabel 5", "query\nlabel 7"]
    assert "2 of 4 queries failed" in fig.get_suptitle()
    first_row = [ax.get_title() for ax in fig.axes[1:3]]
    assert first_row == ["#1 wrong\nlabel 1", "#2 ok\nlabel 6"]
    order, failed = visualization.failed_first(labels, neighbour_labels)
    assert order.tolist() == [1, 3, 0, 2] and failed.tolist() == [False, True, False, True]
