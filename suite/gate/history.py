"""A cell's series in the baseline store: its promotions and the later runs the gate compared with it.

`gate --record` appends one `GatedEntry` per compared cell to its baseline file (the runs' provenance and
summary, the verdict of each metric, the metrics that broke a threshold). The series serves two things:

- the consecutive rule: a throughput, memory or accuracy violation fails the gate only as the Nth violation
  in a row against the current baseline (`[gate] consecutive`); before that it is `suspicious`. One slow run
  on a shared host is common (docs/gate.md: step CV 3-12 % on the committed cells); a real regression stays.
- `grpo-suite baseline history CELL` and the report's history plot.

Pure functions over baselines and rows, except `record`, which writes through the baseline file's writer.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from suite.gate.store import summarize
from suite.results.baseline import Baseline, GatedEntry, HistoryRun, write_baseline
from suite.results.schema import Result

# Metrics whose violation waits for a second one; a failed status or a sentinel fails at once.
STREAK_METRICS = ("throughput", "memory", "host_memory", "accuracy:")


def waits(metric: str) -> bool:
    return metric.startswith(STREAK_METRICS)


def against_current(baseline: Baseline, runs: Sequence[Result] = ()) -> list[GatedEntry]:
    """Recorded runs compared with the baseline as it is now (not with one it replaced), oldest first; an entry
    of the very `runs` being gated is left out (gating a recorded folder again must not count it twice)."""
    mine = [r.provenance for r in runs]
    return [e for e in baseline.gated if e.against == baseline.promoted_at and [r.provenance for r in e.runs] != mine]


def prior_streak(baseline: Baseline, metric: str, runs: Sequence[Result] = ()) -> int | None:
    """How many of the latest recorded runs against the current baseline broke `metric` in a row; None when
    no run was recorded against it (then the gate cannot tell a one-off from a lasting change)."""
    entries = against_current(baseline, runs)
    if not entries:
        return None
    n = 0
    for entry in reversed(entries):
        if metric not in entry.violations:
            break
        n += 1
    return n


@dataclass(frozen=True)
class Decision:
    regression: bool  # True: regressed (fails); False: suspicious
    streak: int  # violations in a row, this run included
    detail: str


def decide(prior: int | None, consecutive: int) -> Decision:
    """The verdict of one violation given the recorded streak before it."""
    if prior is None:
        return Decision(True, 1, "first violation, and no run recorded against this baseline (gate --record)")
    streak = prior + 1
    if streak >= consecutive:
        return Decision(True, streak, f"{streak} violations in a row (fails from {consecutive})")
    return Decision(False, streak, f"{streak} of {consecutive} violations in a row needed to fail")


# --- recording --------------------------------------------------------------------------------------------


def gated_entry(
    runs: Sequence[Result], verdicts: dict[str, str], violations: Sequence[str], against: str | None, at: str
) -> GatedEntry:
    return GatedEntry(
        gated_at=at,
        against=against,
        verdicts=dict(verdicts),
        violations=sorted(violations),
        runs=[HistoryRun(provenance=r.provenance, summary=summarize(r)) for r in runs],
    )


def already_recorded(baseline: Baseline, entry: GatedEntry) -> bool:
    """Whether these very runs were recorded before (a second `gate --record` of the same folder): counting them
    twice would turn one violation into two in a row."""
    mine = [r.provenance for r in entry.runs]
    return any([r.provenance for r in e.runs] == mine for e in baseline.gated)


def record(path: Path, baseline: Baseline, entry: GatedEntry) -> bool:
    """Append `entry` to the baseline file at `path`; False (nothing written) when these runs are there."""
    if already_recorded(baseline, entry):
        return False
    write_baseline(path, baseline.model_copy(update={"gated": [*baseline.gated, entry]}))
    return True


# --- the series -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One entry of a cell's series: a promotion (its runs became the baseline) or a gated run."""

    at: str
    kind: str  # "promoted" | "gated"
    runs: int
    steps: int
    throughput: float | None  # median over runs of each run's window throughput, tokens/s/GPU
    peak_memory_gb: float | None  # worst run
    probs_diff_mean: float | None  # median over runs
    against: str | None = None  # gated: promoted_at of the baseline it was compared with
    verdicts: dict[str, str] = field(default_factory=dict)
    violations: tuple[str, ...] = ()
    current: bool = False  # promoted: the baseline in the store now
    host_peak_memory_gb: float | None = None  # the process tree's host peak, worst run


def _median(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def _point(at: str, kind: str, runs: Sequence[HistoryRun], **extra: object) -> Point:
    sums = [r.summary for r in runs]
    peaks = [s.peak_memory_worst_gb for s in sums if s.peak_memory_worst_gb is not None]
    host = [s.host_peak_memory_gb for s in sums if s.host_peak_memory_gb is not None]
    return Point(
        at=at,
        kind=kind,
        runs=len(sums),
        steps=sum(s.measured_steps for s in sums),
        throughput=_median(
            [s.throughput_window if s.throughput_window is not None else s.throughput_median for s in sums]
        ),
        peak_memory_gb=max(peaks) if peaks else None,
        probs_diff_mean=_median([s.probs_diff_mean for s in sums]),
        host_peak_memory_gb=max(host) if host else None,
        **extra,  # type: ignore[arg-type]
    )


def series(baseline: Baseline) -> list[Point]:
    """Promotions and gated runs of one baseline file, oldest first (by time stamp; ISO 8601 UTC sorts)."""
    points = [_point(h.promoted_at or "?", "promoted", h.runs) for h in baseline.history]
    now = [HistoryRun(provenance=r.provenance, summary=summarize(r)) for r in baseline.results]
    points.append(_point(baseline.promoted_at or "?", "promoted", now, current=True))
    points += [
        _point(e.gated_at, "gated", e.runs, against=e.against, verdicts=e.verdicts, violations=tuple(e.violations))
        for e in baseline.gated
    ]

    # Ties (a promotion in the same second as a recorded run) keep the order things happened in: runs gated
    # against a replaced baseline came before the promotion that replaced it, runs against the current one after.
    def rank(p: Point) -> int:
        if p.kind == "promoted":
            return 2 if p.current else 0
        return 3 if p.against == baseline.promoted_at else 1

    return sorted(points, key=lambda p: (p.at, rank(p)))
