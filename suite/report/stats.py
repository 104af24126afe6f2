"""Intervals shown in the report. Deterministic on purpose (no resampling), so a report only changes when
its results do.

- Median of per-step throughput: distribution-free order-statistic interval (the binomial/sign-test
  interval): the widest-needed pair of order statistics x_(k), x_(n-k+1) whose coverage is >= 95 %.
  Steps of one run are not independent draws of a fixed distribution, but this is the honest summary of
  "where the median of these steps lies" without assuming normality. Needs n >= 6 for 95 %.
- Accuracy: Wilson score interval, which stays inside [0, 1] and behaves at small counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054
MIN_N_MEDIAN_CI = 6  # with n=5 even (min, max) covers the median only 93.75 % of the time


@dataclass(frozen=True)
class Interval:
    estimate: float
    lo: float
    hi: float
    coverage: float  # achieved coverage (>= the nominal level for the order-statistic interval)


def median(values: Sequence[float]) -> float:
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        raise ValueError("median of no values")
    mid = n // 2
    return xs[mid] if n % 2 else (xs[mid - 1] + xs[mid]) / 2.0


def _binom_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exact with integers."""
    if k < 0:
        return 0.0
    return sum(math.comb(n, i) for i in range(min(k, n) + 1)) / 2**n


def median_interval(values: Sequence[float], level: float = 0.95) -> Interval | None:
    """Order-statistic interval for the median; None when too few values reach `level`."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        return None
    alpha = 1.0 - level
    # Largest k (1-based) with P(X <= k-1) <= alpha/2: [x_(k), x_(n-k+1)] covers with >= level.
    k = 0
    while _binom_half_cdf(k, n) <= alpha / 2:  # P(X <= k) = P(X < k+1)
        k += 1
    if k == 0:
        return None
    coverage = 1.0 - 2.0 * _binom_half_cdf(k - 1, n)
    return Interval(median(xs), xs[k - 1], xs[n - k], coverage)


def wilson_interval(correct: int, total: int, z: float = Z95) -> Interval:
    if total <= 0:
        raise ValueError(f"total must be positive, got {total}")
    p = correct / total
    denom = 1.0 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), 0.95)
