"""The gate's statistics against published values and scipy's own definitions."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from suite.gate import stats


def test_min_rank_test_samples_matches_exact_complete_separation() -> None:
    # 4 vs 4 separated completely: exact one-sided p = 1/70 > 0.01; 5 vs 5: 1/252 < 0.01.
    assert stats.min_rank_test_samples(0.01) == 5
    assert stats.min_rank_test_samples(0.05) == 4
    p = sps.mannwhitneyu([1, 2, 3, 4], [5, 6, 7, 8], alternative="less", method="exact").pvalue
    assert p == pytest.approx(1 / 70)


def test_mann_whitney_direction() -> None:
    slow, fast = [90, 91, 92, 93, 94, 95], [100, 101, 102, 103, 104, 105]
    assert stats.mann_whitney_p(slow, fast, "less") < 0.01
    assert stats.mann_whitney_p(slow, fast, "greater") > 0.99


def test_median_change_interval_brackets_the_estimate_and_is_seeded() -> None:
    base = [100.0 + i for i in range(-5, 6)]
    cur = [x * 0.95 for x in base]
    a = stats.median_change(cur, base, resamples=2000, level=0.95, seed=3)
    b = stats.median_change(cur, base, resamples=2000, level=0.95, seed=3)
    assert a == b
    assert a.estimate == pytest.approx(-0.05)
    assert a.low < a.estimate < a.high


def test_newcombe_interval_matches_newcombe_1998_example() -> None:
    # Newcombe (1998), Stat Med 17:873, example (a): 56/70 vs 48/80 -> 0.2000, method 10: 0.0524 to 0.3339.
    ch = stats.proportion_change(56, 70, 48, 80, 0.95)
    assert ch.estimate == pytest.approx(0.2)
    assert ch.low == pytest.approx(0.0524, abs=5e-4)
    assert ch.high == pytest.approx(0.3339, abs=5e-4)


def test_two_proportion_z_matches_normal_cdf_and_fisher_matches_scipy() -> None:
    p = stats.two_proportion_p(400, 1000, 450, 1000, "less")
    pooled = 0.425
    z = (0.40 - 0.45) / math.sqrt(pooled * (1 - pooled) * 2 / 1000)
    assert p == pytest.approx(sps.norm.cdf(z))
    assert stats.fisher_p(1, 10, 9, 10, "less") == pytest.approx(
        sps.fisher_exact([[1, 9], [9, 1]], alternative="less").pvalue
    )
    assert stats.two_proportion_p(10, 10, 10, 10, "less") == 1.0


def test_min_expected_count() -> None:
    assert stats.min_expected_count(1, 10, 2, 10) == pytest.approx(1.5)
