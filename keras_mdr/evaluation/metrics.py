"""Retrieval metrics from embeddings and labels (NumPy in, floats out).

Euclidean distance on the raw embeddings is the default (the MDR paper's
protocol; nothing is normalised behind the user's back); `distance="cosine"`
ranks by cosine similarity instead. The tie rule is stated in `ranking.py`:
at equal distance an item of another class ranks first.

Queries without a relevant item: a query whose label has no other item in
the gallery (a class seen once, or, with a separate gallery, a class absent
from it) has no rank to score. It is excluded from every average (Recall@K,
MAP@R, R-Precision), as in Musgrave et al. (2020), and reported: a
`UserWarning` gives the count, `retrieval_metrics` and `metrics_from_ranks`
return `num_queries` (the queries averaged over) and `excluded_queries`,
and a `ValueError` is raised when every query is excluded.

Two exact engines compute the same numbers:

* `method="blocked"` (default): blocked GEMM with per-query counts
  (`blocked_ranks.py`); no sort, no top-K list, fastest.
* `method="faiss"`: exact faiss top-K lists (`knn.py`), ranked with the same
  tie rule.
"""

import numpy as np

from keras_mdr import distances as distances_lib
from keras_mdr.evaluation import blocked_ranks, inputs, knn, ranking

METHODS = ("blocked", "faiss")


def rank_summary(
    embeddings,
    labels,
    *,
    gallery_embeddings=None,
    gallery_labels=None,
    distance="euclidean",
    method="blocked",
    max_rank=1000,
    **engine_kwargs,
):
    """The ranks behind every retrieval metric, as a `RankSummary`.

    Args:
        embeddings: float `(Q, d)`: the queries, and also the gallery when
            `gallery_embeddings` is None (each query then left out of its own
            ranking, by index).
        labels: `(Q,)` class labels.
        gallery_embeddings: optional float `(N, d)`: a separate gallery (the
            In-Shop query-vs-gallery protocol).
        gallery_labels: optional `(N,)`.
        distance: "euclidean" (default) or "cosine".
        method: "blocked" (exact ranks) or "faiss" (exact up to `max_rank`).
        max_rank: depth for `method="faiss"`.
        **engine_kwargs: passed to the engine (`block_rows`, `block_cols`,
            `num_threads` for "blocked"; `block_size` for "faiss").
    """
    distance = distances_lib.canonical_distance(distance)
    if method == "blocked":
        summary = blocked_ranks.blocked_rank_summary(
            embeddings, labels, gallery_embeddings, gallery_labels,
            distance=distance, **engine_kwargs,
        )
    elif method == "faiss":
        summary = knn.knn_rank_summary(
            embeddings, labels, gallery_embeddings, gallery_labels,
            distance=distance, max_rank=max_rank, **engine_kwargs,
        )
    else:
        raise ValueError(f"Expected method in {METHODS}. Received: method={method!r}")
    ranking.warn_excluded(summary, separate_gallery=gallery_embeddings is not None)
    return summary


def _summary(embeddings, labels, ks, options):
    max_rank = max(ranking.check_ks(ks)) if ks is not None else 1
    return rank_summary(embeddings, labels, max_rank=max_rank, **options)


def _check_k_range(ks, gallery_size):
    ks = ranking.check_ks(ks)
    if gallery_size is None:
        return  # degenerate inputs: the engine's input checks name the problem
    for k in ks:
        if k > gallery_size:
            raise ValueError(
                f"Expected every k <= {gallery_size}, the number of gallery items "
                f"a query can retrieve. Received: ks={ks!r}"
            )


def _options(embeddings, gallery_embeddings, gallery_labels, distance, method, engine_kwargs):
    """Engine options, and the number of items a query can retrieve (None when
    the inputs are too degenerate to say: the engine then raises)."""
    separate = inputs.check_gallery(gallery_embeddings, gallery_labels)
    shape = np.shape(gallery_embeddings if separate else embeddings)
    gallery_size = None
    if len(shape) == 2 and shape[0] > int(not separate):
        gallery_size = shape[0] if separate else shape[0] - 1
    options = dict(gallery_embeddings=gallery_embeddings, gallery_labels=gallery_labels,
                   distance=distance, method=method, **engine_kwargs)
    return options, gallery_size


def recall_at_k(embeddings, labels, ks=(1, 2, 4, 8), *, gallery_embeddings=None,
                gallery_labels=None, distance="euclidean", method="blocked",
                **engine_kwargs):
    """Recall@K: the fraction of queries with a same-label item among their K nearest.

    As in the MDR paper: a hit if any of the K nearest neighbours shares the
    query's label, the query never being its own neighbour. Ties at equal
    distance count against the query (see `keras_mdr.evaluation.ranking`).

    Args:
        embeddings: float NumPy array `(Q, d)`: the queries, and the gallery
            unless `gallery_embeddings` is given.
        labels: NumPy array `(Q,)`.
        ks: iterable of positive ints.
        gallery_embeddings, gallery_labels: a separate gallery, for the
            query-vs-gallery protocol (In-Shop).
        distance: "euclidean" (default, raw embeddings) or "cosine".
        method: "blocked" (default) or "faiss"; both exact.
        **engine_kwargs: passed to the engine, see `rank_summary`.

    Returns:
        dict `{k: fraction in [0, 1]}`, over the queries that have at least
        one relevant gallery item (the others are excluded with a
        `UserWarning`; `retrieval_metrics` returns their count).

    Example:

    >>> import numpy as np, keras_mdr.evaluation as ev
    >>> x = np.array([[0.0], [0.1], [5.0], [5.2]], np.float32)
    >>> ev.recall_at_k(x, np.array([0, 0, 1, 1]), ks=(1,))
    {1: 1.0}
    """
    options, size = _options(embeddings, gallery_embeddings, gallery_labels, distance,
                             method, engine_kwargs)
    _check_k_range(ks, size)
    return ranking.recall_at_k_from_ranks(_summary(embeddings, labels, ks, options), ks)


def map_at_r(embeddings, labels, *, gallery_embeddings=None, gallery_labels=None,
             distance="euclidean", method="blocked", **engine_kwargs):
    """MAP@R (Musgrave et al. 2020): mean over queries of AP within the first R.

    R is the number of gallery items that share the query's label.
    Arguments as in `recall_at_k`.

    Returns:
        float in [0, 1].
    """
    options, _ = _options(embeddings, gallery_embeddings, gallery_labels, distance,
                          method, engine_kwargs)
    return ranking.map_at_r_from_ranks(_summary(embeddings, labels, None, options))


def r_precision(embeddings, labels, *, gallery_embeddings=None, gallery_labels=None,
                distance="euclidean", method="blocked", **engine_kwargs):
    """R-Precision: the fraction of relevant items among the first R, averaged.

    Arguments as in `recall_at_k`. Returns a float in [0, 1].
    """
    options, _ = _options(embeddings, gallery_embeddings, gallery_labels, distance,
                          method, engine_kwargs)
    return ranking.r_precision_from_ranks(_summary(embeddings, labels, None, options))


def metrics_from_ranks(summary, ks=(1, 2, 4, 8)):
    """All retrieval metrics of a `RankSummary`, as a flat dict.

    Keys: `"recall@{k}"` for each k, `"map@r"` and `"r_precision"`, and the
    query counts `"num_queries"` (the queries the metrics average over) and
    `"excluded_queries"` (those left out: no relevant gallery item).
    """
    result = {
        f"recall@{k}": v for k, v in ranking.recall_at_k_from_ranks(summary, ks).items()
    }
    result["map@r"] = ranking.map_at_r_from_ranks(summary)
    result["r_precision"] = ranking.r_precision_from_ranks(summary)
    result.update(ranking.query_counts(summary))
    return result


def retrieval_metrics(embeddings, labels, ks=(1, 2, 4, 8), *, gallery_embeddings=None,
                      gallery_labels=None, distance="euclidean", method="blocked",
                      **engine_kwargs):
    """Recall@K for each k, MAP@R and R-Precision, from one pass over the data.

    Arguments as in `recall_at_k`.

    Returns:
        dict with keys `"recall@{k}"`, `"map@r"`, `"r_precision"` (floats),
        `"num_queries"` and `"excluded_queries"` (ints; see the module
        docstring for which queries are excluded).
    """
    options, size = _options(embeddings, gallery_embeddings, gallery_labels, distance,
                             method, engine_kwargs)
    _check_k_range(ks, size)
    return metrics_from_ranks(_summary(embeddings, labels, ks, options), ks)
