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


def test_block_cols_out_of_range_is_refused():
    with pytest.raises(ValueError, match="block_cols"):
        blocked_ranks.blocked_rank_summary(np.zeros((5, 2)), np.zeros(5), block_cols=4096)
