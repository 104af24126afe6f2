"""The correctness sentinel: a cell whose rollout log-probs drift from the actor's fails, whatever its speed.

A benchmark can get faster because it broke (a LoRA adapter that never reaches vLLM, a rollout sampling from
stale weights): it still runs, and the throughput verdict would call it improved. verl's per-step
rollout-vs-actor mismatch (`suite.results.sentinels`) is the evidence; the thresholds are `[sentinel]`.
Pure: cells and thresholds in, one outcome out.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from suite.gate.config import SentinelThresholds
from suite.results.schema import Result
from suite.results.sentinels import Mismatch, adapter_evidence, is_lora, mismatch_series, rope_cast_unfixed


@dataclass(frozen=True)
class SentinelOutcome:
    failed: bool
    problems: list[str]  # why it failed, one per broken threshold
    current_median: float
    baseline_median: float | None
    worst: Mismatch  # the current step with the largest probs_diff_mean
    steps: int


def _series(runs: Sequence[Result]) -> list[Mismatch]:
    return [m for r in runs for m in mismatch_series(r)]


def sentinel_outcome(
    current: Sequence[Result], baseline: Sequence[Result] | None, t: SentinelThresholds
) -> SentinelOutcome | None:
    """None when the current runs recorded no mismatch (verl ran without rollout log-probs)."""
    cur = _series(current)
    if not cur:
        return None
    base = _series(baseline) if baseline else []
    cur_median = statistics.median(m.probs_diff_mean for m in cur)
    base_median = statistics.median(m.probs_diff_mean for m in base) if base else None
    worst = max(cur, key=lambda m: m.probs_diff_mean)
    problems = []
    if worst.probs_diff_mean > t.max_probs_diff_mean:
        problems.append(f"step {worst.step}: probs_diff_mean {worst.probs_diff_mean:.3g} > {t.max_probs_diff_mean:g}")
    low = [m for m in cur if m.pearson is not None and m.pearson < t.min_pearson]
    if low:
        first = min(low, key=lambda m: m.pearson or 0.0)
        problems.append(f"step {first.step}: pearson {first.pearson:.4f} < {t.min_pearson:g}")
    if (
        base_median is not None
        and cur_median > t.max_growth * base_median
        and cur_median - base_median > t.growth_floor
    ):
        problems.append(
            f"median probs_diff_mean grew x{cur_median / base_median:.2f} over the baseline "
            f"(> x{t.max_growth:g} and by more than {t.growth_floor:g})"
        )
    return SentinelOutcome(bool(problems), problems, cur_median, base_median, worst, len(cur))


def adapter_note(runs: Sequence[Result]) -> str | None:
    """What the runs of a LoRA cell say about the adapter reaching vLLM; None for a full fine-tune."""
    if not is_lora(runs[0]):
        return None
    kinds = [adapter_evidence(r) for r in runs]
    best = max(kinds, key=lambda e: ("not-recorded", "unmeasurable", "consistent", "logged").index(e.kind))
    return f"LoRA adapter reaching vLLM: {best.text}"


def rope_note(runs: Sequence[Result]) -> str | None:
    """For a cell whose actor was stored in 16 bits without suite/run/rope_fp32.py: the known cause of a failed
    sentinel there, and the fix; None otherwise."""
    dtype = rope_cast_unfixed(runs[0])
    if dtype is None:
        return None
    return (
        f"actor stored in {dtype} without suite.run.rope_fp32: verl 0.9.1's cast of such an actor puts RoPE's "
        f"frequencies in {dtype} too, "
        "and the trainer's log-probs leave the rollout's (plan again with keep_rope_fp32 left out or true; "
        "docs/matrix.md)"
    )
