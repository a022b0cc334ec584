"""Pictures of an embedding, written as PNG files.

* `plot_recall_curves`: Recall@K against K, one curve per run or epoch.
* `plot_distance_histogram`: the histogram of MDR-normalised pairwise
  distances with the learned levels marked, the picture that shows what MDR
  does (distances gathered around the levels).
* `plot_retrieval_grid`: queries and their nearest neighbours, correct ones
  framed green, wrong ones red.

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


def plot_recall_curves(curves, path, *, title="Recall@K"):
    """Recall@K curves, K on a log axis.

    Args:
        curves: `{k: recall}` for one curve, or `{name: {k: recall}}` for
            several (e.g. one per epoch).
        path: the PNG file to write.
        title: figure title.

    Returns:
        The path written.
    """
    if not curves:
        raise ValueError("Expected at least one Recall@K value. Received: curves={}")
    first = next(iter(curves.values()))
    if not isinstance(first, dict):
        curves = {"recall": curves}
    fig = _figure(6, 4)
    ax = fig.add_subplot(1, 1, 1)
    all_ks = set()
    for name, values in curves.items():
        ks = sorted(int(k) for k in values)
        all_ks.update(ks)
        ax.plot(ks, [100.0 * values[k] for k in ks], marker="o", label=str(name))
    if max(all_ks) / min(all_ks) >= 8:
        ax.set_xscale("log")
    ax.set_xticks(sorted(all_ks))
    ax.set_xticklabels([str(k) for k in sorted(all_ks)])
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    if len(curves) > 1:
        ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def normalized_distances(embeddings, *, labels=None, mean_std=None, max_items=2000, seed=0):
    """MDR-normalised distances of all pairs among a subsample of items.

    `D~ = D / mean_{i != j} D` (the scale normalisation MDR applies to each
    batch), then `Z = (D~ - mu) / sigma` with the model's moving statistics
    `mean_std = (mu, sigma)`, or the sample's own mean and standard deviation
    of `D~` when `mean_std` is None.

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
    d2 = sq[:, None] + sq[None, :] - 2.0 * x @ x.T
    iu = np.triu_indices(x.shape[0], k=1)
    d = np.sqrt(np.maximum(d2[iu], 0.0))
    scale = float(d.mean())
    d_tilde = d / scale if scale > 0 else d
    if mean_std is None:
        mu, sigma = float(d_tilde.mean()), float(d_tilde.std())
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
    ax.imshow(_displayable(image), cmap="gray")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(frame)
        spine.set_linewidth(width)


def _displayable(image):
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
        raise ValueError(
            "Expected images of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4). "
            f"Received: shape={image.shape}"
        )
    if image.dtype == np.uint8:
        return image
    image = image.astype(np.float32)
    lo, hi = float(image.min()), float(image.max())
    if lo >= 0.0 and hi <= 1.0:
        return image
    if lo >= 0.0 and hi <= 255.0 and hi > 1.0:
        return image / 255.0
    # Preprocessed pixels (e.g. mean-subtracted): stretch to [0, 1] for display.
    return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)


def plot_retrieval_grid(
    query_images,
    query_labels,
    neighbor_images,
    neighbor_labels,
    path,
    *,
    neighbor_distances=None,
    title="Retrieval: queries and their nearest neighbours",
    cell_size=1.6,
):
    """A grid: one row per query, then its top-k neighbours, framed by correctness.

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
    query_labels = np.asarray(query_labels).reshape(-1)
    neighbor_labels = np.asarray(neighbor_labels)
    q = len(query_images)
    if q == 0 or neighbor_labels.ndim != 2 or neighbor_labels.shape[0] != q:
        raise ValueError(
            "Expected Q >= 1 queries and neighbor_labels of shape (Q, k). "
            f"Received: Q={q}, neighbor_labels.shape={neighbor_labels.shape}"
        )
    k = neighbor_labels.shape[1]
    fig = _figure(cell_size * (k + 1), cell_size * q + 0.6)
    for i in range(q):
        ax = fig.add_subplot(q, k + 1, i * (k + 1) + 1)
        _image_cell(ax, query_images[i], "tab:blue", 3)
        ax.set_title(f"query\nlabel {query_labels[i]}", fontsize="x-small")
        for j in range(k):
            ax = fig.add_subplot(q, k + 1, i * (k + 1) + j + 2)
            correct = neighbor_labels[i, j] == query_labels[i]
            _image_cell(ax, neighbor_images[i][j], "tab:green" if correct else "tab:red", 4)
            caption = f"#{j + 1} {'ok' if correct else 'wrong'}\nlabel {neighbor_labels[i, j]}"
            if neighbor_distances is not None:
                caption += f" d={float(np.asarray(neighbor_distances)[i, j]):.3g}"
            ax.set_title(caption, fontsize="x-small",
                         color="tab:green" if correct else "tab:red")
    fig.suptitle(title, fontsize="small")
    fig.tight_layout()
    return _save(fig, path)
