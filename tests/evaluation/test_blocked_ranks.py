"""The blocked GEMM engine itself: its memory bound and its block sizes.

Its ranks and metrics against the brute-force reference, beside faiss's, are
in test_metrics.py.
"""

import tracemalloc

import numpy as np
import pytest

from keras_mdr.evaluation import blocked_ranks


def test_no_n_by_n_matrix():
    """Peak Python-visible allocation stays far below one N x N float32 matrix.

    It is bounded by the blocks (about 12 MB here, the same at N = 3000).
    """
    rng = np.random.default_rng(0)
    n = 6000
    x = rng.normal(size=(n, 16)).astype(np.float32)
    y = rng.integers(0, n // 5, n)
    tracemalloc.start()
    try:
        blocked_ranks.blocked_rank_summary(x, y, block_rows=256, block_cols=256)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < n * n * 4 / 8, peak


@pytest.mark.parametrize("block_cols, match", [
    (4096, "8 <= block_cols <= 2040"),
    # Silently accepted before: the range check read int(8.5) and the engine got 8.5.
    (8.5, "`block_cols` to be a positive int"),
    (True, "`block_cols` to be a positive int"),
])
def test_block_cols_out_of_range_or_not_an_int_is_refused(block_cols, match):
    with pytest.raises(ValueError, match=match):
        blocked_ranks.blocked_rank_summary(np.zeros((5, 2)), np.zeros(5), block_cols=block_cols)
