"""The statistics of the gate, in one place: rank test and bootstrap for per-step samples, proportion tests
for accuracy counts. Pure functions over plain sequences; no thresholds here (those live in TOML)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

Alternative = Literal["less", "greater"]


def mann_whitney_p(current: Sequence[float], baseline: Sequence[float], alternative: Alternative) -> float:
    """One-sided p-value that `current` is stochastically `alternative` than `baseline`.

    Rank based, so a few slow outlier steps (checkpointing, a GC pause) do not swing it the way a t test
    would swing, and no normality is assumed: RL step times are skewed by response length."""
    return float(stats.mannwhitneyu(current, baseline, alternative=alternative).pvalue)


def min_rank_test_samples(alpha: float) -> int:
    """Smallest n such that n vs n samples can reach p < alpha one-sided at all (complete separation has
    exact p = 1 / C(2n, n)); with fewer the test never flags anything, however large the change."""
    n = 1
    while 1.0 / math.comb(2 * n, n) >= alpha:  # the gate flags only p < alpha
        n += 1
    return n


@dataclass(frozen=True)
class Change:
    """Relative change (fraction) with a two-sided interval."""

    estimate: float
    low: float
    high: float


def _row_medians(a: np.ndarray) -> np.ndarray:
    # A full sort of short rows is ~3x faster than np.median's partition here, which the power
    # benchmark (thousands of bootstraps) feels.
    a = np.sort(a, axis=1)
    n = a.shape[1]
    return a[:, n // 2] if n % 2 else 0.5 * (a[:, n // 2 - 1] + a[:, n // 2])


def median_change(
    current: Sequence[float], baseline: Sequence[float], *, resamples: int, level: float, seed: int
) -> Change:
    """Change of the median, current / baseline - 1, with a percentile bootstrap interval (both sides
    resampled independently, as the two sets of steps are)."""
    cur = np.asarray(current, dtype=float)
    base = np.asarray(baseline, dtype=float)
    rng = np.random.default_rng(seed)
    cur_med = _row_medians(cur[rng.integers(0, cur.size, size=(resamples, cur.size))])
    base_med = _row_medians(base[rng.integers(0, base.size, size=(resamples, base.size))])
    ratios = cur_med / base_med - 1.0
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return Change(float(np.median(cur) / np.median(base) - 1.0), float(low), float(high))


def window_change(
    current: tuple[Sequence[float], Sequence[float]],
    baseline: tuple[Sequence[float], Sequence[float]],
    *,
    resamples: int,
    level: float,
    seed: int,
) -> Change:
    """Change of the window throughput, sum(tokens) / sum(seconds), current / baseline - 1, with a percentile
    bootstrap interval: steps are resampled as (tokens, seconds) pairs, each side on its own. (GPU counts
    cancel: both sides of a comparison have the same.)"""
    rng = np.random.default_rng(seed)

    def ratios(side: tuple[Sequence[float], Sequence[float]]) -> tuple[float, np.ndarray]:
        tokens, seconds = np.asarray(side[0], dtype=float), np.asarray(side[1], dtype=float)
        idx = rng.integers(0, tokens.size, size=(resamples, tokens.size))
        return float(tokens.sum() / seconds.sum()), tokens[idx].sum(axis=1) / seconds[idx].sum(axis=1)

    cur, cur_boot = ratios(current)
    base, base_boot = ratios(baseline)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(cur_boot / base_boot - 1.0, [tail, 1.0 - tail])
    return Change(cur / base - 1.0, float(low), float(high))


def two_proportion_p(correct: int, total: int, base_correct: int, base_total: int, alternative: Alternative) -> float:
    """One-sided pooled two-proportion z test that the current rate is `alternative` than the baseline's."""
    pooled = (correct + base_correct) / (total + base_total)
    var = pooled * (1.0 - pooled) * (1.0 / total + 1.0 / base_total)
    if var == 0.0:  # both all-correct or both all-wrong: no evidence of any difference
        return 1.0
    z = (correct / total - base_correct / base_total) / math.sqrt(var)
    return float(stats.norm.cdf(z) if alternative == "less" else stats.norm.sf(z))


def fisher_p(correct: int, total: int, base_correct: int, base_total: int, alternative: Alternative) -> float:
    """One-sided Fisher exact test on the 2x2 table (exact where the z approximation is not)."""
    table = [[correct, total - correct], [base_correct, base_total - base_correct]]
    return float(stats.fisher_exact(table, alternative=alternative).pvalue)


def min_expected_count(correct: int, total: int, base_correct: int, base_total: int) -> float:
    """Smallest expected cell count of the 2x2 table under no difference (the usual z-test validity check)."""
    pooled = (correct + base_correct) / (total + base_total)
    return min(n * p for n in (total, base_total) for p in (pooled, 1.0 - pooled))


def _wilson(correct: int, total: int, z: float) -> tuple[float, float]:
    p = correct / total
    denom = 1.0 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return centre - half, centre + half


def proportion_change(correct: int, total: int, base_correct: int, base_total: int, level: float) -> Change:
    """Difference of rates (current - baseline) with Newcombe's hybrid score interval, which stays inside
    [-1, 1] and behaves at rates near 0 or 1 where the Wald interval does not."""
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    p1, p0 = correct / total, base_correct / base_total
    l1, u1 = _wilson(correct, total, z)
    l0, u0 = _wilson(base_correct, base_total, z)
    d = p1 - p0
    low = d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return Change(d, low, high)
