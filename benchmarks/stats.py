"""Medians with distribution-free 95% intervals, for timings on a shared machine.

Rounds of the variants being compared are interleaved (A, B, A, B, ...), so
that a change of load hits both; a comparison is then the per-round ratio
B_i / A_i, and we report its median with the order-statistic interval for a
median: with n ratios sorted, [r_(j), r_(n+1-j)] where j is the largest rank
with P(Binomial(n, 1/2) < j) <= 0.025 on each side. It assumes only that the
rounds' ratios are independent draws from one distribution; the coverage is
at least 95% (exactly, not asymptotically). With fewer than 6 rounds no such
interval exists and the bounds are None.
"""

import math

import numpy as np


def _binomial_cdf(k, n):
    """P(Binomial(n, 1/2) <= k)."""
    return sum(math.comb(n, i) for i in range(0, k + 1)) / 2.0**n


def median_interval_ranks(n, level=0.95):
    """1-based ranks (j, n + 1 - j) of the interval, or None when n is too small."""
    tail = (1.0 - level) / 2.0
    j = 0
    while j + 1 <= n and _binomial_cdf(j, n) <= tail:
        j += 1
    # P(X <= j - 1) <= tail: the j-th order statistic is the lower bound.
    if j < 1:
        return None
    return j, n + 1 - j


def median_ci(values, level=0.95):
    """{"median", "low", "high", "n"} of `values` (order-statistic interval)."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    n = int(values.shape[0])
    if n == 0:
        return {"median": None, "low": None, "high": None, "n": 0}
    ranks = median_interval_ranks(n, level)
    low, high = (None, None) if ranks is None else (values[ranks[0] - 1], values[ranks[1] - 1])
    return {
        "median": float(np.median(values)),
        "low": None if low is None else float(low),
        "high": None if high is None else float(high),
        "n": n,
    }


def paired_ratio(numerator, denominator, level=0.95):
    """Median and interval of numerator_i / denominator_i over paired rounds."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    if numerator.shape != denominator.shape:
        raise ValueError(
            "Expected paired rounds of the same count. Received: "
            f"{numerator.shape[0]} and {denominator.shape[0]} rounds"
        )
    return median_ci(numerator / denominator, level)


def t_interval(values, level=0.95):
    """{"mean", "std", "low", "high", "n"}: Student's t interval of a mean."""
    from scipy import stats as scipy_stats

    values = np.asarray(values, dtype=np.float64)
    n = int(values.shape[0])
    mean = float(values.mean()) if n else None
    if n < 2:
        return {"mean": mean, "std": None, "low": None, "high": None, "n": n}
    std = float(values.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.5 + level / 2.0, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "low": mean - half, "high": mean + half, "n": n}
