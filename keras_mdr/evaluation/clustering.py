"""NMI of k-means clusters against the class labels."""

import numpy as np

from keras_mdr.evaluation.blocked_ranks import _as_labels, _as_matrix, _normalise_rows
from keras_mdr.evaluation.knn import check_distance


def kmeans_assignments(embeddings, n_clusters, *, distance="euclidean", seed=0, niter=20,
                       nredo=1):
    """Cluster ids from faiss k-means (exact assignment, `niter` Lloyd steps).

    `nredo` runs k-means that many times (seeds derived from `seed`) and keeps
    the lowest-error clustering.

    For "cosine" the rows are L2-normalised first (spherical k-means would
    also renormalise the centroids; plain k-means on the sphere is the common
    practice in metric-learning papers).
    """
    import faiss

    check_distance(distance)
    x = _as_matrix("embeddings", embeddings)
    if distance == "cosine":
        x = _normalise_rows(x)
    n_clusters = int(n_clusters)
    if not 1 <= n_clusters <= x.shape[0]:
        raise ValueError(
            f"Expected 1 <= n_clusters <= {x.shape[0]}. Received: n_clusters={n_clusters}"
        )
    if n_clusters == 1:
        return np.zeros(x.shape[0], np.int64)
    kmeans = faiss.Kmeans(
        x.shape[1], n_clusters, niter=int(niter), seed=int(seed), nredo=int(nredo),
        # Use every point: faiss otherwise subsamples to 256 points a centroid.
        max_points_per_centroid=max(256, -(-x.shape[0] // n_clusters)),
        verbose=False,
    )
    kmeans.train(x)
    _, assignment = kmeans.index.search(x, 1)
    return assignment[:, 0].astype(np.int64)


def nmi(embeddings, labels, *, n_clusters=None, distance="euclidean", seed=0, niter=20,
        nredo=1):
    """Normalised mutual information between k-means clusters and labels.

    Args:
        embeddings: float `(N, d)`.
        labels: `(N,)` class labels.
        n_clusters: number of clusters; defaults to the number of classes.
        distance: "euclidean" (default) or "cosine".
        seed: k-means seed (the result is deterministic given it).
        niter: Lloyd iterations.
        nredo: k-means restarts (the best is kept).

    Returns:
        float in [0, 1]: `I(C; Y) / mean(H(C), H(Y))` (arithmetic mean, as
        scikit-learn's `normalized_mutual_info_score`).
    """
    x = _as_matrix("embeddings", embeddings)
    labels = _as_labels("labels", labels, x.shape[0])
    codes = np.unique(labels, return_inverse=True)[1]
    if n_clusters is None:
        n_clusters = int(codes.max()) + 1
    clusters = kmeans_assignments(
        x, n_clusters, distance=distance, seed=seed, niter=niter, nredo=nredo
    )
    return normalized_mutual_information(codes, clusters)


def normalized_mutual_information(a, b):
    """NMI of two labelings, arithmetic normalisation; 1.0 when both are constant."""
    a = np.unique(np.asarray(a), return_inverse=True)[1]
    b = np.unique(np.asarray(b), return_inverse=True)[1]
    n = a.shape[0]
    pair = a.astype(np.int64) * (int(b.max()) + 1) + b
    _, joint = np.unique(pair, return_counts=True)
    pa = np.bincount(a) / n
    pb = np.bincount(b) / n
    pab = joint / n
    h_a = -np.sum(pa * np.log(pa))
    h_b = -np.sum(pb * np.log(pb))
    # I(A;B) = H(A) + H(B) - H(A,B)
    mi = h_a + h_b - (-np.sum(pab * np.log(pab)))
    denom = (h_a + h_b) / 2
    if denom <= 0:
        return 1.0
    return float(np.clip(mi / denom, 0.0, 1.0))
