"""Pictures of an embedding, written as PNG files.

* `plot_recall_curves`: Recall@K against K, one curve per run or epoch.
* `plot_distance_histogram`: the histogram of MDR-normalised pairwise
  distances with the learned levels marked, the picture that shows what MDR
  does (distances gathered around the levels).
* `plot_retrieval_grid`: queries and their nearest neighbours, failed
  queries first, correct neighbours framed green, wrong ones red.

Each `plot_*` has a `*_figure` twin that returns the Matplotlib `Figure`
without writing it.

Figures are drawn with Matplotlib's Agg canvas directly, so the process-wide
pyplot backend is never touched and no display is needed.
"""

import os

import numpy as np

from keras_mdr.losses.mdr import DEFAULT_LEVELS


def _figure(width, height, dpi=100):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def recall_curves_figure(curves, *, title="Recall@K"):
    """The Recall@K figure (see `plot_recall_curves`), not yet written."""
    if not curves:
        raise ValueError("Expected at least one Recall@K value. Received: curves={}")
    if not isinstance(next(iter(curves.values())), dict):
        curves = {"recall": curves}
    from matplotlib import ticker

    fig = _figure(6, 4)
    ax = fig.add_subplot(1, 1, 1)
    all_ks, all_values = set(), []
    for name, values in curves.items():
        ks = sorted(int(k) for k in values)
        percent = [100.0 * float(values[k]) for k in ks]
        all_ks.update(ks)
        all_values += percent
        ax.plot(ks, percent, marker="o", label=str(name), clip_on=False)
    if not all(0.0 <= v <= 100.0 for v in all_values):
        raise ValueError(
            "Expected recall values in [0, 1] (fractions, drawn in %). Received: values "
            f"from {min(all_values) / 100:g} to {max(all_values) / 100:g}"
        )
    ks = sorted(all_ks)
    if ks[0] < 1:
        raise ValueError(f"Expected every K >= 1. Received: K={ks[0]}")
    if ks[-1] / ks[0] >= 8:
        ax.set_xscale("log", base=2)
    # The K themselves as plain integers; no minor ticks (a log axis labels
    # those "3x10^0").
    ax.xaxis.set_major_locator(ticker.FixedLocator(ks))
    ax.xaxis.set_major_formatter(ticker.FixedFormatter([str(k) for k in ks]))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_ylim(*_zoomed_percent_range(all_values))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K (%)")
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    if len(curves) > 1:
        ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    return fig


def _zoomed_percent_range(values):
    """A y range around `values` (in %): curves at 98-100 are not flattened."""
    lo, hi = min(values), max(values)
    pad = max(0.5, 0.15 * (hi - lo))
    return max(0.0, lo - pad), min(100.0, hi + pad)


def plot_recall_curves(curves, path, *, title="Recall@K"):
    """Recall@K curves, K on a log-2 axis (when K spans 8x or more).

    The K ticks are the K themselves, as integers; the recall axis (in %)
    spans the values shown, not 0-100, so that curves near 100% stay apart.

    Args:
        curves: `{k: recall}` for one curve, or `{name: {k: recall}}` for
            several (e.g. one per epoch).
        path: the PNG file to write.
        title: figure title.

    Returns:
        The path written.
    """
    return _save(recall_curves_figure(curves, title=title), path)


def normalized_distances(embeddings, *, labels=None, mean_std=None, max_items=2000, seed=0):
    """MDR-normalised distances of all pairs among a subsample of items.

    `D~ = D / mean_{i != j} D` (the scale normalisation MDR applies to each
    batch), then `Z = (D~ - mu) / sigma` with the model's moving statistics
    `mean_std = (mu, sigma)`, or, when `mean_std` is None, the sample's own
    statistics computed as MDR computes a batch's: over all N*N entries of
    `D~` (zero diagonal included), unbiased standard deviation.

    Args:
        embeddings: float `(N, d)`; at most `max_items` of them (drawn with
            `seed`) are used, i.e. at most `max_items * (max_items - 1) / 2`
            pairs.
        labels: optional `(N,)`: also return which pairs share a label.

    Returns:
        dict with `z` (the normalised distances of the pairs i < j),
        `same` (bool per pair, or None), `mean`, `std` (the statistics used)
        and `scale` (the mean distance).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(
            "Expected embeddings of shape (N >= 2, dim). "
            f"Received: embeddings.shape={x.shape}"
        )
    rng = np.random.default_rng(seed)
    if x.shape[0] > max_items:
        pick = np.sort(rng.choice(x.shape[0], size=max_items, replace=False))
    else:
        pick = np.arange(x.shape[0])
    x = x[pick]
    sq = np.einsum("ij,ij->i", x, x)
    full = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0))
    np.fill_diagonal(full, 0.0)
    iu = np.triu_indices(x.shape[0], k=1)
    d = full[iu]
    scale = float(d.mean())
    d_tilde = d / scale if scale > 0 else d
    if mean_std is None:
        # As MDR's batch statistics: all N*N entries (zero diagonal
        # included), unbiased estimator.
        everything = full / scale if scale > 0 else full
        mu, sigma = float(everything.mean()), float(everything.std(ddof=1))
    else:
        mu, sigma = (float(np.asarray(v)) for v in mean_std)
    z = (d_tilde - mu) / (sigma if sigma > 0 else 1.0)
    same = None
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)[pick]
        same = labels[iu[0]] == labels[iu[1]]
    return {"z": z, "same": same, "mean": mu, "std": sigma, "scale": scale}


def plot_distance_histogram(
    embeddings,
    path,
    *,
    labels=None,
    levels=DEFAULT_LEVELS,
    mean_std=None,
    max_items=2000,
    bins=100,
    seed=0,
    title=None,
):
    """Histogram of MDR-normalised pairwise distances, levels marked.

    Args:
        embeddings: float NumPy `(N, d)`.
        path: the PNG file to write.
        labels: optional `(N,)`: positive (same-label) and negative pairs are
            then drawn as two histograms, each normalised to unit area.
        levels: the MDR levels `v_l` to mark (default -3, 0, 3); None marks
            none.
        mean_std: `(mu, sigma)`, the model's moving statistics; None uses the
            sample's own mean and standard deviation of `D~`.
        max_items: items subsampled for large N (all pairs among them).
        bins: histogram bins.
        seed: subsampling seed.
        title: figure title.

    Returns:
        The path written.
    """
    stats = normalized_distances(
        embeddings, labels=labels, mean_std=mean_std, max_items=max_items, seed=seed
    )
    z = stats["z"]
    marks = [] if levels is None else [float(v) for v in np.asarray(levels).reshape(-1)]
    lo = min([float(np.percentile(z, 0.1))] + [v - 0.5 for v in marks])
    hi = max([float(np.percentile(z, 99.9))] + [v + 0.5 for v in marks])
    edges = np.linspace(lo, hi, int(bins) + 1)
    fig = _figure(7, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    _draw_histograms(ax, z, stats["same"], edges)
    _mark_levels(ax, marks)
    source = "moving" if mean_std is not None else "sample"
    ax.set_xlabel(
        f"normalised distance Z = (D/mean(D) - mu) / sigma   "
        f"({source} mu={stats['mean']:.3f}, sigma={stats['std']:.3f})"
    )
    ax.set_ylabel("density")
    ax.set_title(title or "MDR-normalised pairwise distances")
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=3,
              frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def _draw_histograms(ax, z, same, edges):
    """One histogram, or same- and different-label ones when both kinds exist."""
    if same is not None and same.any() and (~same).any():
        ax.hist(z[~same], bins=edges, density=True, alpha=0.6, color="tab:red",
                label=f"different label ({int((~same).sum())} pairs)")
        ax.hist(z[same], bins=edges, density=True, alpha=0.6, color="tab:green",
                label=f"same label ({int(same.sum())} pairs)")
    else:
        ax.hist(z, bins=edges, density=True, alpha=0.7, color="tab:blue",
                label=f"{z.shape[0]} pairs")


def _mark_levels(ax, marks):
    for i, v in enumerate(marks):
        ax.axvline(v, color="black", linestyle="--", linewidth=1.2,
                   label="levels" if i == 0 else None)
        ax.annotate(f"v{i}={v:.2f}", xy=(v, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(2, -12), textcoords="offset points", fontsize="small")


def _image_cell(ax, image, frame, width):
    """Draws `image` in `ax` without ticks, framed in colour `frame`."""
    ax.imshow(display_pixels(image), cmap="gray", vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(frame)
        spine.set_linewidth(width)


def display_pixels(image):
    """An image as float32 in [0, 1] for display: `(H, W)` or `(H, W, 3|4)`.

    uint8 and [0, 255] floats are divided by 255, [0, 1] floats kept, other
    ranges (preprocessed pixels, e.g. mean-subtracted) stretched to [0, 1].
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
        raise ValueError(
            "Expected images of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4). "
            f"Received: shape={image.shape}"
        )
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    image = image.astype(np.float32)
    lo, hi = float(image.min()), float(image.max())
    if lo >= 0.0 and hi <= 1.0:
        return image
    if lo >= 0.0 and hi <= 255.0 and hi > 1.0:
        return image / 255.0
    return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)


def failed_first(query_labels, neighbor_labels):
    """The row order of a retrieval grid: failed queries first, each group in order.

    A query fails when its nearest neighbour has another label.

    Returns:
        `(order, failed)`: int `(Q,)` row order, bool `(Q,)` per query.
    """
    failed = np.asarray(neighbor_labels)[:, 0] != np.asarray(query_labels).reshape(-1)
    return np.argsort(~failed, kind="stable"), failed


def retrieval_grid_figure(query_images, query_labels, neighbor_images, neighbor_labels, *,
                          neighbor_distances=None, title=None, cell_size=1.6):
    """The retrieval grid figure (see `plot_retrieval_grid`), not yet written."""
    query_labels = np.asarray(query_labels).reshape(-1)
    neighbor_labels = np.asarray(neighbor_labels)
    q = len(query_images)
    if q == 0 or neighbor_labels.ndim != 2 or neighbor_labels.shape[0] != q:
        raise ValueError(
            "Expected Q >= 1 queries and neighbor_labels of shape (Q, k). "
            f"Received: Q={q}, neighbor_labels.shape={neighbor_labels.shape}"
        )
    order, failed = failed_first(query_labels, neighbor_labels)
    k = neighbor_labels.shape[1]
    fig = _figure(cell_size * (k + 1), cell_size * q + 0.6)
    for row, i in enumerate(order):
        ax = fig.add_subplot(q, k + 1, row * (k + 1) + 1)
        _image_cell(ax, query_images[i], "tab:red" if failed[i] else "tab:blue", 3)
        ax.set_title(f"{'FAILED query' if failed[i] else 'query'}\nlabel {query_labels[i]}",
                     fontsize="x-small", color="tab:red" if failed[i] else "black")
        for j in range(k):
            ax = fig.add_subplot(q, k + 1, row * (k + 1) + j + 2)
            correct = neighbor_labels[i, j] == query_labels[i]
            _image_cell(ax, neighbor_images[i][j], "tab:green" if correct else "tab:red", 4)
            caption = f"#{j + 1} {'ok' if correct else 'wrong'}\nlabel {neighbor_labels[i, j]}"
            if neighbor_distances is not None:
                caption += f" d={float(np.asarray(neighbor_distances)[i, j]):.3g}"
            ax.set_title(caption, fontsize="x-small",
                         color="tab:green" if correct else "tab:red")
    summary = f"{int(failed.sum())} of {q} queries failed (nearest neighbour of another label)"
    fig.suptitle(f"{title or 'Retrieval: queries and their nearest neighbours'}\n"
                 f"{summary}; failed queries first", fontsize="small")
    fig.tight_layout()
    return fig


def plot_retrieval_grid(
    query_images,
    query_labels,
    neighbor_images,
    neighbor_labels,
    path,
    *,
    neighbor_distances=None,
    title=None,
    cell_size=1.6,
):
    """A grid: one row per query, then its top-k neighbours, framed by correctness.

    Failed queries (nearest neighbour of another label) come first, framed
    red and titled "FAILED query"; the title counts them.

    Args:
        query_images: sequence of Q images (`(H, W[, C])`, uint8 or float).
        query_labels: `(Q,)`.
        neighbor_images: Q sequences of k images each.
        neighbor_labels: `(Q, k)`.
        path: the PNG file to write.
        neighbor_distances: optional `(Q, k)`, printed under each neighbour.
        title: figure title.
        cell_size: inches per image.

    Returns:
        The path written.
    """
    return _save(retrieval_grid_figure(
        query_images, query_labels, neighbor_images, neighbor_labels,
        neighbor_distances=neighbor_distances, title=title, cell_size=cell_size,
    ), path)
