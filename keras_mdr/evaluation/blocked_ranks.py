"""Exact retrieval ranks by blocked matrix products: no sort, no top-1000.

Recall@K only needs, per query, the position of its nearest relevant item,
i.e. how many irrelevant items are at least as close (tie rule in
`ranking.py`). MAP@R and R-Precision only need the first R positions. Both are
counts against per-query thresholds, so they can be taken block by block from
the distance matrix without ever holding it, and without sorting its rows.

How the work is laid out:

* The gallery is sorted by label once, so the relevant items of a block of
  (label-sorted) queries occupy a narrow band of columns. The band is computed
  first; it yields each query's relevant distances `s_(1) <= ... <= s_(R)`.
* Every column block then costs one GEMM plus one compare per element and a
  per-row count. A query whose first R positions are still open ("live")
  compares against a threshold `T >= s_(1)` and its few items under `T` are
  extracted: irrelevant ones go to a small pool (for MAP@R), and those at
  `<= s_(1)` give the rank of the nearest relevant item (for Recall@K). Other
  queries only count the items at `<= s_(1)`. `T` starts at `s_(R)` and drops
  to `s_(m*)`, the farthest relevant item that can still sit in the first R
  positions, so each pool stays below R items. For weak embeddings, where
  `s_(R)` lets half the gallery through, `T` is first bounded by the R-th
  smallest distance in one block of irrelevant items (`_Block.tighten`).
* Rankings use `|g|^2 - 2 q.g` (the squared Euclidean distance minus the
  query's own `|q|^2`, which does not change a row's order), obtained from a
  single GEMM by appending `|g|^2` to the gallery and 1 to the queries; for
  cosine, `-q.g` on L2-normalised copies.
* Blocks are moderate (default up to 2048 x 2040, 16 MiB) and buffers are
  allocated once per worker and reused, so fresh memory (slow to touch on
  first use) is rarely touched. Workers (threads, one BLAS thread each) take
  query blocks from a shared counter; NumPy and BLAS release the GIL for the
  heavy parts.

Memory: the label-sorted, augmented gallery copy (N x (d + 1) float32) plus a
few MiB per worker; never an N x N matrix.
"""

import os
import threading

import numpy as np
import threadpoolctl

from keras_mdr import distances as distances_lib
from keras_mdr import validation
from keras_mdr.evaluation import inputs, ranking

# Byte lanes of a uint64 row sum must not overflow: at most 255 words a row.
_MAX_BLOCK_COLS = 2040


def _row_counts(mask):
    """Per-row number of True in a C-contiguous bool (rows, 8 * w) array, w <= 255."""
    words = mask.view(np.uint64)
    lanes = np.add.reduce(words, axis=1, dtype=np.uint64)
    return np.add.reduce(lanes.view(np.uint8).reshape(-1, 8), axis=1, dtype=np.int64)


def _nonzero_rows(mask, rows):
    """(row, col) of the True entries of `mask[rows]`, scanning 8 bytes at a time."""
    words = mask.view(np.uint64)[rows]
    w_row, w_col = np.nonzero(words)
    hit_bytes = words[w_row, w_col].view(np.uint8).reshape(-1, 8)
    b_idx, b_pos = np.nonzero(hit_bytes)
    return rows[w_row[b_idx]], w_col[b_idx] * 8 + b_pos


def _sort_keys(rows, scores):
    """uint64 keys ordered as (row, score): row in the high half, the float's
    order-preserving bit pattern in the low half. Exact, unlike float keys."""
    bits = (np.asarray(scores, np.float32) + np.float32(0.0)).view(np.uint32)  # -0 -> +0
    negative = bits >= np.uint32(0x80000000)
    bits = np.where(negative, ~bits, bits | np.uint32(0x80000000))
    return (np.asarray(rows).astype(np.uint64) << np.uint64(32)) | bits.astype(np.uint64)


class _Block:
    """Per-block state: relevant distances, thresholds and the candidate pool.

    Attributes:
        num_relevant: int `(rows,)`, R per query.
        nearest: float32 `(rows,)`, the score `s_(1)` of each query's nearest
            relevant item (-inf when R = 0).
        threshold: float32 `(rows,)`, `T`: irrelevant items scoring at most
            this are pooled; -inf once the query's first R positions are
            settled (a "finished" row).
        count_at_nearest: int `(rows,)`, items counted at `<= s_(1)` so far.
    """

    def __init__(self, num_rows, num_relevant, relevant_offsets, relevant_scores):
        self.num_rows = num_rows
        self.num_relevant = num_relevant
        self.relevant_offsets = relevant_offsets
        self.relevant_scores = relevant_scores
        self.relevant_keys = _sort_keys(
            np.repeat(np.arange(num_rows), num_relevant), relevant_scores
        )
        has = num_relevant > 0
        self.nearest = np.full(num_rows, -np.inf, np.float32)
        self.nearest[has] = relevant_scores[relevant_offsets[:-1][has]]
        self.threshold = np.full(num_rows, -np.inf, np.float32)
        self.threshold[has] = relevant_scores[relevant_offsets[1:][has] - 1]
        self.pool_rows = np.zeros(0, np.int64)
        self.pool_scores = np.zeros(0, np.float32)
        self.count_at_nearest = np.zeros(num_rows, np.int64)

    def _rank_relevant(self, rows, neg_rows, neg_scores):
        """For the relevant items of `rows` (sorted, unique): (row, m, c_m, s_(m)).

        `c_m` is the number of pooled irrelevant items at distance <= s_(m)
        (pessimistic ties: an irrelevant item at equal distance comes first).
        """
        counts = self.num_relevant[rows]
        p_rows = np.repeat(rows, counts)
        within = np.arange(p_rows.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)
        p_index = np.repeat(self.relevant_offsets[rows], counts) + within
        neg_keys = np.sort(_sort_keys(neg_rows, neg_scores))
        c = np.searchsorted(
            neg_keys, self.relevant_keys[p_index], side="right"
        ) - np.searchsorted(neg_keys, p_rows.astype(np.uint64) << np.uint64(32), side="left")
        return p_rows, within + 1, c, self.relevant_scores[p_index]

    def add_candidates(self, new_rows, new_scores):
        """Adds irrelevant items under `T`, then tightens `T` and prunes."""
        touched = np.unique(new_rows)
        old = np.isin(self.pool_rows, touched)
        neg_rows = np.concatenate([self.pool_rows[old], new_rows])
        neg_scores = np.concatenate([self.pool_scores[old], new_scores])
        p_rows, m, c, s = self._rank_relevant(touched, neg_rows, neg_scores)
        # Relevant items beyond the current T are already out of the first R
        # (and the pool no longer holds the irrelevant items before them).
        alive = (c + m <= self.num_relevant[p_rows]) & (s <= self.threshold[p_rows])
        # c_m + m grows with m, so the live relevant items form a prefix.
        m_star = np.bincount(p_rows[alive], minlength=self.num_rows)[touched]
        new_t = np.full(touched.shape[0], -np.inf, np.float32)
        live = m_star > 0
        new_t[live] = self.relevant_scores[
            self.relevant_offsets[touched[live]] + m_star[live] - 1
        ]
        self.threshold[touched] = new_t
        keep = neg_scores <= self.threshold[neg_rows]
        self.pool_rows = np.concatenate([self.pool_rows[~old], neg_rows[keep]])
        self.pool_scores = np.concatenate([self.pool_scores[~old], neg_scores[keep]])

    def tighten(self, x, counts):
        """Lowers a loose T using a block `x` of irrelevant items only.

        T starts at the farthest relevant distance s_(R), which for a weak
        embedding lets half the gallery through. The R-th smallest irrelevant
        distance in any subset bounds the R-th smallest overall from above,
        and a relevant item beyond the R-th irrelevant one is past position R.
        So T may drop to that bound `u`; where `u < s_(1)` no relevant item
        can be in the first R at all and the row is finished. Only rows that
        would pass many items are treated (a partial sort of their block rows).

        Returns:
            Whether any T changed.
        """
        heavy = np.nonzero(
            (self.threshold > -np.inf) & (counts > np.maximum(4 * self.num_relevant, 32))
        )[0]
        if heavy.shape[0] == 0:
            return False
        kth = int(self.num_relevant[heavy].max()) - 1
        if kth >= x.shape[1]:
            return False
        u = np.partition(x[heavy], kth, axis=1)[:, kth]
        t = np.minimum(self.threshold[heavy], u)
        self.threshold[heavy] = np.where(u >= self.nearest[heavy], t, -np.inf)
        return True

    def hits(self):
        """(row, position) of relevant items in the first R positions."""
        rows = np.nonzero(self.num_relevant > 0)[0]
        p_rows, m, c, s = self._rank_relevant(rows, self.pool_rows, self.pool_scores)
        position = c + m
        # The pool holds every irrelevant item up to T, so counts are exact for
        # relevant items up to T; those beyond T cannot be in the first R.
        alive = (position <= self.num_relevant[p_rows]) & (s <= self.threshold[p_rows])
        return p_rows[alive], position[alive]


class _Engine:
    """The label-sorted augmented gallery and the work on one query block."""

    def __init__(self, queries, q_labels, gallery, g_labels, self_mode, distance,
                 block_rows, block_cols, cache_bytes):
        self.self_mode = self_mode
        self.block_rows = block_rows
        self.block_cols = block_cols
        self.gallery_size, self.dim = gallery.shape
        self.gallery_order = np.argsort(g_labels, kind="stable")
        self.gallery_labels = g_labels[self.gallery_order]
        codes = np.arange(int(max(q_labels.max(), g_labels.max())) + 1)
        self.class_start = np.searchsorted(self.gallery_labels, codes, side="left")
        self.class_end = np.searchsorted(self.gallery_labels, codes, side="right")
        self.query_order = (
            self.gallery_order if self_mode else np.argsort(q_labels, kind="stable")
        )
        self.query_labels = q_labels[self.query_order]
        self.num_relevant = (
            self.class_end[self.query_labels] - self.class_start[self.query_labels]
            - int(self_mode)
        )
        self.cosine = distance == "cosine"
        self.queries = queries
        self.k_dim = self.dim if self.cosine else self.dim + 1
        self.gallery_matrix = self._augmented_gallery(gallery)
        self.cache_chunks = max(1, cache_bytes // (block_rows * block_cols * 4))
        self.num_blocks = -(-queries.shape[0] // block_rows)
        self.num_chunks = -(-self.gallery_size // block_cols)

    def _augmented_gallery(self, gallery):
        """Label-sorted rows `[-2 g, |g|^2]` (or `-g / |g|` for cosine).

        Filled in slices so that no second full-size temporary is made.
        """
        out = np.empty((self.gallery_size, self.k_dim), np.float32)
        step = 8192
        for a in range(0, self.gallery_size, step):
            g = gallery[self.gallery_order[a : a + step]]
            if self.cosine:
                np.negative(inputs.normalise_rows(g), out=out[a : a + step])
            else:
                np.multiply(g, -2.0, out=out[a : a + step, : self.dim])
                out[a : a + step, self.dim] = np.einsum("ij,ij->i", g, g, dtype=np.float32)
        return out

    def _query_block(self, a, b, out):
        q = self.queries[self.query_order[a:b]]
        if self.cosine:
            out[: b - a] = inputs.normalise_rows(q)
        else:
            out[: b - a, : self.dim] = q
            out[: b - a, self.dim] = 1.0
        return out[: b - a]

    def _gemm(self, qa, k, buf):
        c0 = k * self.block_cols
        c1 = min(self.gallery_size, c0 + self.block_cols)
        rows = qa.shape[0]
        out = buf[: rows * (c1 - c0)].reshape(rows, c1 - c0)
        np.matmul(qa, self.gallery_matrix[c0:c1].T, out=out)
        return out

    def _relevant_scores(self, qa, labels, buffers):
        """Scores of every (query, relevant item) pair, from the band of columns.

        The relevant items of label-sorted queries form the band [lo, hi) of
        the label-sorted gallery; its column blocks are computed here and kept
        (up to `cache_chunks`) for the scan.

        Returns:
            `(p_rows, p_cols, p_vals, band, cached)`.
        """
        cols = self.block_cols
        starts = self.class_start[labels]
        counts = self.class_end[labels] - starts
        lo, hi = int(starts.min()), int((starts + counts).max())
        p_rows = np.repeat(np.arange(qa.shape[0]), counts)
        p_cols = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(
            p_rows.shape[0]
        )
        p_vals = np.empty(p_rows.shape[0], np.float32)
        band = range(lo // cols, (hi - 1) // cols + 1) if hi > lo else range(0)
        cached = {}
        for slot, k in enumerate(band):
            if slot < self.cache_chunks:
                if slot == len(buffers["cache"]):
                    buffers["cache"].append(np.empty(self.block_rows * cols, np.float32))
                x = self._gemm(qa, k, buffers["cache"][slot])
                cached[k] = x
            else:
                x = self._gemm(qa, k, buffers["s"])
            sel = (p_cols // cols) == k
            p_vals[sel] = x[p_rows[sel], p_cols[sel] - k * cols]
        return p_rows, p_cols, p_vals, band, cached

    def _new_state(self, first, num_relevant, p_rows, p_cols, p_vals):
        """The block's `_Block`, and each query's score against itself (inf if none)."""
        rows = num_relevant.shape[0]
        self_score = np.full(rows, np.inf, np.float32)
        if self.self_mode:
            is_self = p_cols == first + p_rows
            self_score[p_rows[is_self]] = p_vals[is_self]
            keep = ~is_self
            p_rows, p_vals = p_rows[keep], p_vals[keep]
        order = np.lexsort((p_vals, p_rows))
        offsets = np.zeros(rows + 1, np.int64)
        np.cumsum(num_relevant, out=offsets[1:])
        return _Block(rows, num_relevant, offsets, p_vals[order]), self_score

    def _chunk_order(self, band, cached):
        # One block outside the band first: it holds only irrelevant items, so
        # it can bound T from above where T starts loose (see _Block.tighten).
        outside = [k for k in range(self.num_chunks) if k not in band]
        order = outside[:1] + list(cached) + outside[1:]
        return order + [k for k in band if k not in cached]

    @staticmethod
    def _count_under(x, state, mask):
        """Marks the items under each row's threshold and counts them per row.

        One compare per element. A live row (T > -inf) compares against
        T >= s_(1) and its items are extracted, which also yields its count
        at s_(1); a finished row only needs the count at s_(1).
        """
        live = state.threshold > -np.inf
        bound = np.where(live, state.threshold, state.nearest)
        np.less_equal(x, bound[:, None], out=mask[:, : x.shape[1]])
        return live, _row_counts(mask)

    def _scan(self, state, qa, labels, band, cached, buffers):
        """Counts and pools every column block's items against the thresholds."""
        rows, cols = qa.shape[0], self.block_cols
        pending_rows, pending_scores, pending = [], [], 0
        update_every = max(2 * rows, int(state.num_relevant.sum()))
        for step, k in enumerate(self._chunk_order(band, cached)):
            x = cached[k] if k in cached else self._gemm(qa, k, buffers["s"])
            width = x.shape[1]
            padded = -(-width // 8) * 8
            mask = buffers["mask"][: rows * padded].reshape(rows, padded)
            if padded != width:
                mask[:, width:] = False
            live, counts = self._count_under(x, state, mask)
            if step == 0 and k not in band and state.tighten(x, counts):
                live, counts = self._count_under(x, state, mask)
            state.count_at_nearest += np.where(live, 0, counts)
            busy = np.nonzero(live & (counts > 0))[0]
            if busy.shape[0] == 0:
                continue
            r_idx, c_idx = _nonzero_rows(mask, busy)
            vals = x[r_idx, c_idx]
            state.count_at_nearest += np.bincount(
                r_idx[vals <= state.nearest[r_idx]], minlength=rows
            )
            irrelevant = self.gallery_labels[k * cols + c_idx] != labels[r_idx]
            if np.any(irrelevant):
                pending_rows.append(r_idx[irrelevant])
                pending_scores.append(vals[irrelevant])
                pending += pending_rows[-1].shape[0]
            # Tightening T sorts the pool with the relevant items: batch it,
            # but before the stale thresholds let many needless items through.
            if pending > update_every:
                state.add_candidates(np.concatenate(pending_rows),
                                     np.concatenate(pending_scores))
                pending_rows, pending_scores, pending = [], [], 0
        if pending:
            state.add_candidates(np.concatenate(pending_rows), np.concatenate(pending_scores))

    @staticmethod
    def _summary(state, self_score):
        """The block's `RankSummary` from its finished state."""
        rows, num_relevant = state.num_rows, state.num_relevant
        # Irrelevant items at distance <= s_(1): all counted items, less the
        # relevant ones tied at s_(1) and the query itself.
        relevant_tied = np.bincount(
            np.repeat(np.arange(rows), num_relevant)[
                state.relevant_scores <= np.repeat(state.nearest, num_relevant)
            ],
            minlength=rows,
        )
        before = state.count_at_nearest - relevant_tied - (self_score <= state.nearest)
        first = np.where(num_relevant > 0, before + 1, 0).astype(np.int64)
        h_rows, h_pos = state.hits()
        order = np.lexsort((h_pos, h_rows))
        offsets = np.zeros(rows + 1, np.int64)
        np.cumsum(np.bincount(h_rows, minlength=rows), out=offsets[1:])
        return ranking.RankSummary(
            num_relevant=num_relevant.astype(np.int64),
            first_relevant=first,
            hit_offsets=offsets,
            hit_positions=h_pos[order].astype(np.int64),
        )

    def run_block(self, index, buffers):
        """The exact `RankSummary` of query block `index` (label-sorted order)."""
        a = index * self.block_rows
        b = min(self.queries.shape[0], a + self.block_rows)
        qa = self._query_block(a, b, buffers["q"])
        labels = self.query_labels[a:b]
        p_rows, p_cols, p_vals, band, cached = self._relevant_scores(qa, labels, buffers)
        state, self_score = self._new_state(a, self.num_relevant[a:b], p_rows, p_cols, p_vals)
        self._scan(state, qa, labels, band, cached, buffers)
        return self._summary(state, self_score)

    def new_buffers(self):
        rows, cols = self.block_rows, self.block_cols
        padded = -(-cols // 8) * 8
        return {
            "q": np.empty((rows, self.k_dim), np.float32),
            "s": np.empty(rows * cols, np.float32),
            "mask": np.zeros(rows * padded, bool),
            "cache": [],  # grown on demand, up to cache_chunks blocks
        }


def default_num_threads():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def blocked_rank_summary(
    embeddings,
    labels,
    gallery_embeddings=None,
    gallery_labels=None,
    *,
    distance="euclidean",
    block_rows=None,
    block_cols=2040,
    num_threads=None,
    cache_bytes=64 << 20,
):
    """Exact `RankSummary` of every query by blocked GEMM (see module docstring).

    Args:
        embeddings: float `(Q, d)` queries (also the gallery when
            `gallery_embeddings` is None; then each query is left out of its
            own ranking by index).
        labels: `(Q,)` labels of any sortable dtype.
        gallery_embeddings: optional float `(N, d)`.
        gallery_labels: optional `(N,)`.
        distance: "euclidean" (also "squared_euclidean": same ranking) or
            "cosine".
        block_rows: queries per block; by default up to 2048, fewer when
            needed to give every thread several blocks.
        block_cols: gallery items per block, 8 to 2040 (the per-row counts
            add bytes in 64-bit words, at most 255 words a row).
        num_threads: worker threads (default: the CPUs this process may use).
            With more than one, each uses one BLAS thread.
        cache_bytes: per-worker budget for keeping the relevant band's
            distance blocks between the two passes.

    Returns:
        A `RankSummary` in the order of `embeddings`, with exact ranks.
    """
    distances_lib.canonical_distance(distance)
    block_cols = validation.positive_int(block_cols, "block_cols")
    if not 8 <= block_cols <= _MAX_BLOCK_COLS:
        raise ValueError(
            f"Expected 8 <= block_cols <= {_MAX_BLOCK_COLS}. "
            f"Received: block_cols={block_cols}"
        )
    if block_rows is not None:
        block_rows = validation.positive_int(block_rows, "block_rows")
    queries, q_labels, gallery, g_labels, self_mode = inputs.retrieval_inputs(
        embeddings, labels, gallery_embeddings, gallery_labels
    )
    num_threads = default_num_threads() if num_threads is None else int(num_threads)
    num_threads = max(1, num_threads)
    if block_rows is None:
        # Large blocks make the GEMM efficient; several a thread balance the load.
        block_rows = min(2048, max(128, -(-queries.shape[0] // (4 * num_threads))))
    block_rows = min(int(block_rows), queries.shape[0])
    engine = _Engine(queries, q_labels, gallery, g_labels, self_mode, distance,
                     block_rows, int(block_cols), int(cache_bytes))
    summary = ranking.concatenate(_run_blocks(engine, min(num_threads, engine.num_blocks)))
    inverse = np.empty_like(engine.query_order)
    inverse[engine.query_order] = np.arange(engine.query_order.shape[0])
    return summary.take(inverse)


def _run_blocks(engine, num_threads):
    """Every block's `RankSummary`, in block order, from `num_threads` workers.

    Workers take block indices from a shared counter; with more than one,
    BLAS is limited to one thread so that our threads share the cores.
    """
    results = [None] * engine.num_blocks
    errors = []
    counter = iter(range(engine.num_blocks))
    lock = threading.Lock()

    def work():
        buffers = engine.new_buffers()
        while not errors:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            try:
                results[index] = engine.run_block(index, buffers)
            except BaseException as error:  # re-raised in the caller's thread
                errors.append(error)
                return

    if num_threads == 1:
        work()
    else:
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            threads = [threading.Thread(target=work) for _ in range(num_threads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    if errors:
        raise errors[0]
    return results
