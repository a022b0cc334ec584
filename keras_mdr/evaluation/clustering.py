"""NMI of k-means clusters against the class labels."""

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from keras_mdr import distances as distances_lib
from keras_mdr.evaluation import inputs


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

    distances_lib.canonical_distance(distance)
    x = inputs.as_matrix("embeddings", embeddings)
    if distance == "cosine":
        x = inputs.normalise_rows(x)
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
        float in [0, 1]: scikit-learn's `normalized_mutual_info_score` of
        the clusters against the labels (`I(C; Y) / mean(H(C), H(Y))`).
    """
    x = inputs.as_matrix("embeddings", embeddings)
    labels = inputs.as_labels("labels", labels, x.shape[0])
    codes = np.unique(labels, return_inverse=True)[1]
    if n_clusters is None:
        n_clusters = int(codes.max()) + 1
    clusters = kmeans_assignments(
        x, n_clusters, distance=distance, seed=seed, niter=niter, nredo=nredo
    )
    return float(normalized_mutual_info_score(codes, clusters))
