"""Exact k-nearest-neighbour search with faiss, in bounded memory.

`knn_search` is what users (the retrieval grid, `EmbeddingIndex`) call for
neighbour lists; `knn_rank_summary` turns those lists into a `RankSummary`
(the tie rule of `ranking.py` applied), as a second engine beside the blocked
GEMM one. Queries go to faiss in blocks, so the distance matrix faiss builds
internally is never larger than `block_size x N`.
"""

import numpy as np

from keras_mdr import distances as distances_lib
from keras_mdr.evaluation import inputs, ranking
from keras_mdr.evaluation.inputs import normalise_rows


def _faiss():
    import faiss

    return faiss


def flat_index(gallery, distance="euclidean"):
    """An exact faiss index over float32 `gallery` (L2 or inner product).

    For "cosine", rows are L2-normalised before they are added.
    """
    faiss = _faiss()
    distances_lib.canonical_distance(distance)
    gallery = np.ascontiguousarray(gallery, dtype=np.float32)
    if distance == "cosine":
        index = faiss.IndexFlatIP(gallery.shape[1])
        gallery = normalise_rows(gallery)
    else:
        index = faiss.IndexFlatL2(gallery.shape[1])
    index.add(gallery)
    return index


def faiss_to_distance(raw, distance):
    """Converts faiss scores (squared L2, or inner product) to `distance`."""
    raw = np.asarray(raw, dtype=np.float32)
    if distance == "euclidean":
        return np.sqrt(np.maximum(raw, 0.0))
    if distance == "squared_euclidean":
        return np.maximum(raw, 0.0)
    return 1.0 - raw


def knn_search(
    queries,
    gallery=None,
    k=10,
    *,
    distance="euclidean",
    exclude_self=None,
    exclude_indices=None,
    block_size=2048,
    index=None,
):
    """Exact k nearest neighbours of each query, by faiss, in query blocks.

    Args:
        queries: float `(Q, d)`.
        gallery: float `(N, d)`; None searches `queries` against itself.
        k: neighbours per query.
        distance: "euclidean", "squared_euclidean" or "cosine" (inner product
            of L2-normalised copies; distances returned as `1 - cos`).
        exclude_self: leave query i out of its own list (by index). Defaults to
            True when `gallery` is None.
        exclude_indices: optional int `(Q,)`: a gallery index to leave out of
            each query's list (e.g. the query's own position when searching a
            few items against their whole set); -1 leaves nothing out.
        block_size: queries per faiss call; bounds memory at
            `block_size x N` distances.
        index: an already built exact faiss index over the gallery.

    Returns:
        `(indices, distances)`: int64 and float32 arrays `(Q, k)`, nearest
        first. Faiss breaks ties arbitrarily; use the metrics for a fixed tie
        rule.
    """
    distances_lib.canonical_distance(distance)
    queries = inputs.as_matrix("queries", queries)
    self_mode = gallery is None
    if not self_mode:
        gallery = inputs.as_matrix("gallery", gallery)
    exclude_indices = _exclusions(queries, gallery, exclude_self, exclude_indices)
    if index is None:
        index = flat_index(queries if self_mode else gallery, distance)
    extra = int(exclude_indices is not None)
    k = _check_k(k, index.ntotal, extra)
    q = normalise_rows(queries) if distance == "cosine" else queries
    out_idx = np.empty((q.shape[0], k), np.int64)
    out_raw = np.empty((q.shape[0], k), np.float32)
    for a in range(0, q.shape[0], block_size):
        b = min(q.shape[0], a + block_size)
        raw, idx = index.search(q[a:b], k + extra)
        if extra:
            idx, raw = _drop_excluded(idx, raw, exclude_indices[a:b], k)
        out_idx[a:b] = idx
        out_raw[a:b] = raw
    return out_idx, faiss_to_distance(out_raw, distance)


def _exclusions(queries, gallery, exclude_self, exclude_indices):
    """The gallery index to leave out of each query's list, or None."""
    self_mode = gallery is None
    if exclude_self is None:
        exclude_self = self_mode
    if exclude_self and not self_mode and gallery.shape[0] != queries.shape[0]:
        raise ValueError(
            "Expected exclude_self only when queries and gallery are the same "
            f"items. Received: {queries.shape[0]} queries, {gallery.shape[0]} gallery items"
        )
    if exclude_self:
        return np.arange(queries.shape[0])
    if exclude_indices is None:
        return None
    exclude_indices = np.asarray(exclude_indices, np.int64).reshape(-1)
    if exclude_indices.shape[0] != queries.shape[0]:
        raise ValueError(
            f"Expected one exclude index a query ({queries.shape[0]}). "
            f"Received: exclude_indices.shape={exclude_indices.shape}"
        )
    return exclude_indices


def _check_k(k, gallery_size, excluded):
    k = int(k)
    reachable = gallery_size - excluded
    if reachable < 1:
        raise ValueError(
            "Expected a gallery with at least one item besides the query itself. "
            f"Received: a gallery of {gallery_size} item(s)"
            + (", each query's own item left out." if excluded else ".")
        )
    if not 1 <= k <= reachable:
        raise ValueError(
            f"Expected 1 <= k <= {reachable}, the number of gallery items a query "
            f"can retrieve. Received: k={k}"
        )
    return k


def _drop_excluded(idx, raw, excluded, k):
    """Each row's `k` neighbours without its excluded index.

    If a tie pushed the excluded item out of the `k + 1` returned, the last
    neighbour is dropped instead.
    """
    rows = idx.shape[0]
    own = idx == excluded[:, None]
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(own)
    keep[np.arange(rows), drop] = False
    return idx[keep].reshape(rows, k), raw[keep].reshape(rows, k)


def _row_sort_key(raw, distance):
    # Larger inner product is nearer: negate so that ascending is nearest first.
    return -raw if distance == "cosine" else raw


def knn_rank_summary(
    embeddings,
    labels,
    gallery_embeddings=None,
    gallery_labels=None,
    *,
    max_rank=1000,
    distance="euclidean",
    block_size=2048,
):
    """`RankSummary` from exact faiss top-k lists, with the tie rule enforced.

    Faiss returns the right set of neighbours except possibly among items tied
    with the last one returned. Lists are therefore taken one deeper than
    needed: where the deepest needed position ties with the last returned
    item, the query's whole row is recomputed with NumPy and ranked exactly.

    Args:
        max_rank: depth of the summary; Recall@K is available for K up to it.
            Raised to the largest R so that MAP@R is exact.

    Returns:
        A `RankSummary` with `max_rank` set.
    """
    distances_lib.canonical_distance(distance)
    queries, q_labels, gallery, g_labels, self_mode = inputs.retrieval_inputs(
        embeddings, labels, gallery_embeddings, gallery_labels
    )
    n = gallery.shape[0]
    extra = int(self_mode)
    g_counts = np.bincount(g_labels, minlength=int(max(q_labels.max(), g_labels.max())) + 1)
    num_relevant = g_counts[q_labels] - extra
    depth = int(min(n - extra, max(int(max_rank), int(num_relevant.max()))))
    fetch = min(n, depth + extra + 1)
    faiss_distance = "cosine" if distance == "cosine" else "squared_euclidean"
    index = flat_index(gallery, faiss_distance)
    q = normalise_rows(queries) if distance == "cosine" else queries
    relevance = np.zeros((queries.shape[0], depth), bool)
    exact_gallery = None
    for a in range(0, queries.shape[0], block_size):
        b = min(queries.shape[0], a + block_size)
        raw, idx = index.search(q[a:b], fetch)
        own = idx == np.arange(a, b)[:, None] if self_mode else None
        rel, redo = _ranked_relevance(raw, idx, own, g_labels, q_labels[a:b], distance,
                                      depth)
        relevance[a:b] = rel
        for r in np.nonzero(redo)[0]:
            if exact_gallery is None:
                exact_gallery = (
                    normalise_rows(gallery) if distance == "cosine"
                    else gallery.astype(np.float64)
                )
            relevance[a + r] = _exact_row(
                q[a + r], a + r if self_mode else -1, exact_gallery, g_labels,
                q_labels[a + r], distance, depth,
            )
    return ranking.summary_from_relevance(
        relevance, num_relevant, max_rank=None if depth >= n - extra else depth
    )


def _ranked_relevance(raw, idx, own, g_labels, labels, distance, depth):
    """Relevance flags of a block's first `depth` positions, tie rule applied.

    Args:
        own: bool, where each row's list holds the query itself (None
            when queries and gallery are different items).

    Returns:
        `(relevance, redo)`: bool `(rows, depth)`, and the rows whose
        deepest needed position ties with the last item returned (their
        order among the tied items is unknown: they must be recomputed).
    """
    key = _row_sort_key(raw, distance)
    if own is not None:
        key = np.where(own, np.inf, key)  # the query goes last, then is cut
    rel = g_labels[idx] == labels[:, None]
    order = _lexsort_rows(key, rel)
    usable = idx.shape[1] - int(own is not None)
    key = np.take_along_axis(key, order, axis=1)[:, :usable]
    rel = np.take_along_axis(rel, order, axis=1)[:, :usable]
    if usable > depth:
        redo = key[:, depth - 1] >= key[:, usable - 1]
    else:
        redo = np.zeros(idx.shape[0], bool)  # the whole gallery was returned
    return rel[:, :depth], redo


def _lexsort_rows(key, rel):
    """Per-row order by (key, relevant): at equal key the irrelevant item first."""
    order = np.argsort(rel, axis=1, kind="stable")
    key_sorted = np.take_along_axis(key, order, axis=1)
    second = np.argsort(key_sorted, axis=1, kind="stable")
    return np.take_along_axis(order, second, axis=1)


def _exact_row(query, self_index, gallery, g_labels, label, distance, depth):
    """One query's relevance flags over its whole ranking (the tie rule applied).

    `gallery` is L2-normalised for "cosine", float64 otherwise.
    """
    if distance == "cosine":
        key = -(gallery @ query)
    else:
        diff = gallery - query.astype(np.float64)
        key = np.einsum("ij,ij->i", diff, diff)
    rel = g_labels == label
    if self_index >= 0:
        key[self_index] = np.inf
    order = np.lexsort((rel, key))
    if self_index >= 0:
        order = order[order != self_index]
    return rel[order[:depth]]
