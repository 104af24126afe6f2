"""A cell as the gate sees it: all runs of one cell id pooled (N runs x M measured steps)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from suite.results.schema import Accuracy, Result


@dataclass(frozen=True)
class PooledAccuracy:
    correct: int
    total: int

    @property
    def rate(self) -> float:
        return self.correct / self.total


@dataclass(frozen=True)
class PooledCell:
    id: str
    runs: tuple[Result, ...]
    status: str  # "ok" only when every run is ok; else the first other status
    reason: str | None
    throughput: tuple[float, ...]  # measured steps of all ok runs, tokens/s/GPU
    time_per_step: tuple[float, ...]
    response_length: tuple[float, ...]
    peak_memory_worst_gb: float | None  # worst GPU of the worst run
    host_peak_gb: float | None = None  # the process tree's host peak (RSS) of the worst run
    # the host's used memory at its peak over its total, of the run where that fraction is highest
    host_system_fraction: float | None = None
    accuracy: dict[str, PooledAccuracy] = field(default_factory=dict)
    # per measured step, prompt + response tokens over all GPUs (perf/total_num_tokens); None where verl
    # logged none. With time_per_step it gives the window throughput (`window_throughput`).
    tokens: tuple[float | None, ...] = ()
    n_gpus: int = 1

    @property
    def window(self) -> float | None:
        return window_of(self.tokens, self.time_per_step, self.n_gpus)

    @property
    def first(self) -> Result:
        return self.runs[0]


def _pool_accuracy(runs: Sequence[Result]) -> dict[str, PooledAccuracy]:
    # Counts of repeated evaluations are summed: each evaluation is one more draw of every question.
    totals: dict[str, list[Accuracy]] = {}
    for run in runs:
        for name, acc in run.accuracy.items():
            totals.setdefault(name, []).append(acc)
    return {
        name: PooledAccuracy(sum(a.correct for a in accs), sum(a.total for a in accs)) for name, accs in totals.items()
    }


def pool(runs: Sequence[Result]) -> PooledCell:
    if not runs:
        raise ValueError("a cell needs at least one run")
    bad = next((r for r in runs if r.status != "ok"), None)
    ok_runs = [r for r in runs if r.status == "ok"]
    steps = [s for r in ok_runs for s in r.measured_steps()]
    peaks = [r.peak_memory_worst_gb for r in runs if r.peak_memory_worst_gb is not None]
    host = [r.host_peak_memory_gb for r in runs if r.host_peak_memory_gb is not None]
    used = [
        r.host_system_peak_memory_gb / r.host_memory_total_gb
        for r in runs
        if r.host_system_peak_memory_gb is not None and r.host_memory_total_gb
    ]
    return PooledCell(
        id=runs[0].id,
        runs=tuple(runs),
        status=bad.status if bad else "ok",
        reason=bad.reason if bad else None,
        throughput=tuple(s.throughput for s in steps),
        time_per_step=tuple(s.time_per_step for s in steps),
        response_length=tuple(s.response_length_mean for s in steps),
        peak_memory_worst_gb=max(peaks) if peaks else None,
        host_peak_gb=max(host) if host else None,
        host_system_fraction=max(used) if used else None,
        accuracy=_pool_accuracy(ok_runs),
        tokens=tuple(s.total_num_tokens for s in steps),
        n_gpus=runs[0].n_gpus,
    )


def window_of(tokens: Sequence[float | None], seconds: Sequence[float], n_gpus: int) -> float | None:
    """Tokens over the whole measured window / (its seconds x GPUs), tokens/s/GPU: what the runs delivered.

    Each step counts in proportion to its length, where the median of per-step throughput counts every step
    once whatever it lasted; None when a step has no token count (verl logs perf/total_num_tokens every step)."""
    if not tokens or any(t is None for t in tokens):
        return None
    total = sum(seconds)
    return sum(t for t in tokens if t is not None) / (total * n_gpus) if total > 0 else None


def window_throughput(runs: Sequence[Result]) -> float | None:
    """The window throughput of the measured steps of `runs` (ok runs only)."""
    steps = [s for r in runs if r.status == "ok" for s in r.measured_steps()]
    return window_of([s.total_num_tokens for s in steps], [s.time_per_step for s in steps], runs[0].n_gpus)


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None
