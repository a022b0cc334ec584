"""Retrieval metrics from ranks: the maths, kept apart from any search.

Every retrieval metric here is a function of, per query, *where* its relevant
gallery items land in the ranking. A search engine (the blocked GEMM engine in
`blocked_ranks.py`, or faiss in `knn.py`) turns embeddings into a
`RankSummary`; the functions below turn a `RankSummary` into numbers.

Ranking and tie rule
--------------------
For a query, the gallery (minus the query itself when query and gallery are
the same set; it is left out by *index*, so a duplicate of the query is an
ordinary neighbour) is ordered by increasing distance. Among items at exactly
the same distance, items of another class come before items of the query's
class. Only this split matters: no metric depends on the order of items that
are both relevant or both irrelevant, so the metrics are deterministic and do
not depend on the order of the data.

This is the pessimistic rule: a tie is never a hit. It is the rule under which
a collapsed embedding (every vector equal) scores Recall@K = 0 instead of 1,
and under which duplicate embeddings with different labels can only lower a
score. The distances compared are the ones the engine computes in float32;
identical embeddings get bitwise identical distances.

A query with no relevant item in the gallery (a class seen once, or a class
absent from a separate gallery) has no defined rank; it is left out of every
average, as in Musgrave et al. (2020), and reported (`query_counts`,
`warn_excluded`).
"""

import dataclasses
import warnings

import numpy as np

from keras_mdr import validation


@dataclasses.dataclass(frozen=True)
class RankSummary:
    """Where the relevant items of each query land in its ranking.

    Attributes:
        num_relevant: int64 `(Q,)`, R: the number of gallery items sharing the
            query's label (the query itself excluded).
        first_relevant: int64 `(Q,)`, the 1-based position of the nearest
            relevant item; 0 for queries with `num_relevant == 0`. When
            `max_rank` is set, positions beyond it are stored as
            `max_rank + 1` (known only to be larger than `max_rank`).
        hit_offsets: int64 `(Q + 1,)`, CSR offsets into `hit_positions`.
        hit_positions: int64, per query, the ascending 1-based positions
            `p <= R` at which relevant items appear (the first R positions
            are what MAP@R and R-Precision look at).
        max_rank: None when `first_relevant` is exact, else the deepest
            position the engine looked at.
    """

    num_relevant: np.ndarray
    first_relevant: np.ndarray
    hit_offsets: np.ndarray
    hit_positions: np.ndarray
    max_rank: int | None = None

    @property
    def num_queries(self):
        return int(self.num_relevant.shape[0])

    @property
    def valid(self):
        """Boolean mask of the queries that count: those with R >= 1."""
        return self.num_relevant > 0

    def hit_counts(self):
        """Number of relevant items among the first R positions, per query."""
        return np.diff(self.hit_offsets)

    def take(self, order):
        """Returns the summary with its queries permuted by `order`."""
        order = np.asarray(order, dtype=np.int64)
        counts = self.hit_counts()[order]
        offsets = np.zeros(order.shape[0] + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        starts = self.hit_offsets[order]
        index = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
        return RankSummary(
            num_relevant=self.num_relevant[order],
            first_relevant=self.first_relevant[order],
            hit_offsets=offsets,
            hit_positions=self.hit_positions[index],
            max_rank=self.max_rank,
        )


def concatenate(summaries):
    """Concatenates `RankSummary` objects of consecutive query blocks."""
    summaries = list(summaries)
    counts = np.concatenate([s.hit_counts() for s in summaries])
    offsets = np.zeros(counts.shape[0] + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    max_ranks = {s.max_rank for s in summaries}
    if len(max_ranks) != 1:
        raise ValueError(
            "Expected summaries with the same max_rank. "
            f"Received: max_ranks={sorted(map(str, max_ranks))}"
        )
    return RankSummary(
        num_relevant=np.concatenate([s.num_relevant for s in summaries]),
        first_relevant=np.concatenate([s.first_relevant for s in summaries]),
        hit_offsets=offsets,
        hit_positions=np.concatenate([s.hit_positions for s in summaries]),
        max_rank=max_ranks.pop(),
    )


def _check_any_valid(summary):
    if not np.any(summary.valid):
        raise ValueError(
            "Expected at least one query with a relevant gallery item (another "
            "item of its label); no query has one, so no retrieval metric is "
            f"defined. Received: {summary.num_queries} queries, all excluded."
        )


def query_counts(summary):
    """`{"num_queries": counted, "excluded_queries": left out}` of a summary.

    The metrics average over the `num_queries` queries with R >= 1; the
    `excluded_queries` with R = 0 have no relevant gallery item.
    """
    counted = int(np.count_nonzero(summary.valid))
    return {"num_queries": counted, "excluded_queries": summary.num_queries - counted}


def warn_excluded(summary, separate_gallery=False):
    """A `UserWarning` naming how many queries the metrics leave out, if any."""
    counts = query_counts(summary)
    excluded = counts["excluded_queries"]
    if excluded == 0 or counts["num_queries"] == 0:
        return  # nothing left out, or every query: the metrics raise instead
    reason = (
        "their label is absent from the gallery" if separate_gallery
        else "they are alone in their class"
    )
    warnings.warn(
        f"{excluded} of {summary.num_queries} queries have no relevant gallery "
        f"item ({reason}); they are excluded from every retrieval metric, which "
        f"averages over the other {counts['num_queries']} (num_queries="
        f"{counts['num_queries']}, excluded_queries={excluded}).",
        UserWarning,
        stacklevel=3,
    )


def recall_at_k_per_query(summary, k):
    """1.0 where a relevant item is among the first `k` positions, else 0.0.

    Queries without a relevant item get NaN.
    """
    k = int(k)
    if summary.max_rank is not None and k > summary.max_rank:
        raise ValueError(
            f"Expected k <= {summary.max_rank}, the depth this summary was "
            f"computed to. Received: k={k}"
        )
    hit = (summary.first_relevant >= 1) & (summary.first_relevant <= k)
    out = hit.astype(np.float64)
    out[~summary.valid] = np.nan
    return out


def recall_at_k_from_ranks(summary, ks):
    """Recall@K as in the MDR paper: the fraction of queries with a hit in the top K.

    Args:
        summary: a `RankSummary`.
        ks: iterable of positive ints.

    Returns:
        dict `{k: fraction in [0, 1]}`, over the queries with R >= 1.
    """
    _check_any_valid(summary)
    valid = summary.valid
    result = {}
    for k in check_ks(ks):
        result[k] = float(np.mean(recall_at_k_per_query(summary, k)[valid]))
    return result


def average_precision_at_r_per_query(summary):
    """AP@R per query (Musgrave et al. 2020); NaN for queries with R = 0.

    `AP@R = (1 / R) * sum_{i <= R} P(i) * rel(i)`, with `P(i)` the precision
    among the first `i` positions. For the `t`-th relevant item found at
    position `p_t <= R`, `P(p_t) = t / p_t`.
    """
    counts = summary.hit_counts()
    rows = np.repeat(np.arange(summary.num_queries), counts)
    t = np.arange(summary.hit_positions.shape[0]) - np.repeat(
        summary.hit_offsets[:-1], counts
    )
    precision = (t + 1) / summary.hit_positions
    sums = np.bincount(rows, weights=precision, minlength=summary.num_queries)
    r = summary.num_relevant.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums / r
    out[~summary.valid] = np.nan
    return out


def map_at_r_from_ranks(summary):
    """MAP@R (Musgrave et al., "A Metric Learning Reality Check", 2020)."""
    _check_any_valid(summary)
    return float(np.mean(average_precision_at_r_per_query(summary)[summary.valid]))


def r_precision_per_query(summary):
    """R-Precision per query: relevant items among the first R, over R."""
    r = summary.num_relevant.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = summary.hit_counts() / r
    out[~summary.valid] = np.nan
    return out


def r_precision_from_ranks(summary):
    """R-Precision averaged over the queries with R >= 1."""
    _check_any_valid(summary)
    return float(np.mean(r_precision_per_query(summary)[summary.valid]))


def summary_from_relevance(relevance, num_relevant, max_rank=None):
    """Builds a `RankSummary` from ranked relevance flags (tie rule applied).

    Args:
        relevance: bool `(Q, L)`, `relevance[i, p]` whether the item at
            position `p + 1` of query `i`'s ranking shares its label.
        num_relevant: int `(Q,)`, R per query (may exceed L).
        max_rank: the depth L when the ranking was truncated (None when the
            rows cover the whole gallery).
    """
    relevance = np.asarray(relevance, dtype=bool)
    num_relevant = np.asarray(num_relevant, dtype=np.int64)
    q, depth = relevance.shape
    any_hit = relevance.any(axis=1)
    first = np.where(any_hit, relevance.argmax(axis=1) + 1, depth + 1).astype(np.int64)
    first[num_relevant == 0] = 0
    if max_rank is None and np.any(~any_hit & (num_relevant > 0)):
        raise ValueError(
            "Expected every relevant item inside an untruncated ranking. "
            "Received: a query with R >= 1 and no relevant position."
        )
    positions = np.arange(1, depth + 1)
    within_r = relevance & (positions[None, :] <= num_relevant[:, None])
    rows, cols = np.nonzero(within_r)
    offsets = np.zeros(q + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=q), out=offsets[1:])
    return RankSummary(
        num_relevant=num_relevant,
        first_relevant=first,
        hit_offsets=offsets,
        hit_positions=(cols + 1).astype(np.int64),
        max_rank=None if max_rank is None else int(max_rank),
    )


def check_ks(ks):
    """The cut-offs `ks` (an int or a list of ints >= 1, at least one) as a list of ints."""
    if np.isscalar(ks):
        ks = [ks]
    out = list(validation.int_list(ks, "ks"))
    if not out:
        raise ValueError(f"Expected at least one k. Received: ks={ks!r}")
    return out
