"""Brute-force NumPy reference for the retrieval metrics (small N only).

Independent of the package: full float64 distance matrix, each row fully
ordered by (distance, relevant) so that at equal distance the irrelevant item
comes first, then the metrics straight from their definitions.
"""

import numpy as np


def ranked_relevance(queries, q_labels, gallery=None, g_labels=None, distance="euclidean"):
    """List per query of the relevance flags of its full ranking."""
    self_mode = gallery is None
    if self_mode:
        gallery, g_labels = queries, q_labels
    q = np.asarray(queries, np.float64)
    g = np.asarray(gallery, np.float64)
    if distance == "cosine":
        def unit(x):
            n = np.linalg.norm(x, axis=1, keepdims=True)
            n[n == 0] = 1
            return x / n
        dist = 1.0 - unit(q) @ unit(g).T
    else:
        dist = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    rows = []
    for i in range(q.shape[0]):
        rel = np.asarray(g_labels) == q_labels[i]
        idx = np.arange(g.shape[0])
        if self_mode:
            keep = idx != i
            d, r = dist[i][keep], rel[keep]
        else:
            d, r = dist[i], rel
        order = sorted(range(len(d)), key=lambda j: (d[j], bool(r[j])))
        rows.append(np.asarray(r)[order])
    return rows


def reference_metrics(queries, q_labels, ks, gallery=None, g_labels=None, distance="euclidean"):
    rows = ranked_relevance(queries, q_labels, gallery, g_labels, distance)
    recall = {k: [] for k in ks}
    aps, rps = [], []
    excluded = 0
    for rel in rows:
        R = int(rel.sum())
        if R == 0:
            excluded += 1
            continue
        for k in ks:
            recall[k].append(float(rel[:k].any()))
        top = rel[:R]
        precision_sum = 0.0
        hits = 0
        for i, is_rel in enumerate(top):
            if is_rel:
                hits += 1
                precision_sum += hits / (i + 1)
        aps.append(precision_sum / R)
        rps.append(top.sum() / R)
    return {
        **{f"recall@{k}": float(np.mean(v)) for k, v in recall.items()},
        "map@r": float(np.mean(aps)),
        "r_precision": float(np.mean(rps)),
        "num_queries": len(rows) - excluded,
        "excluded_queries": excluded,
    }
