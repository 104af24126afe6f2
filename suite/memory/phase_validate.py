"""Predicted vs measured GPU memory per phase of a step: the planner's phase totals against the NVML peak of each
phase, read from a result's timeline (suite/results/phases.py). The whole-run peak says that a prediction missed;
this says in which phase."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from suite.errors import InputError
from suite.memory.calibration import Calibration, default_calibration
from suite.memory.model import predict
from suite.memory.settings import settings_from_result
from suite.memory.validate import _full_id
from suite.results.phases import PLANNER_PHASE, phase_peaks
from suite.results.schema import Result


@dataclass(frozen=True)
class PhaseRow:
    cell: str
    phase: str  # the planner's name (rollout, sync, old_log_prob, ref_log_prob, actor_update)
    verl_phase: str  # timing_s key
    measured_gib: float
    predicted_gib: float | None

    @property
    def error(self) -> float | None:
        """(predicted - measured) / measured, as `memory validate`'s peak error."""
        if self.predicted_gib is None or not self.measured_gib:
            return None
        return (self.predicted_gib - self.measured_gib) / self.measured_gib


def phase_rows(results: Iterable[tuple[str, Result]], calibration: Calibration | None = None) -> list[PhaseRow]:
    """One row per planner phase of each result that recorded an NVML timeline and its steps' sightings."""
    cal = calibration or default_calibration()
    rows: list[PhaseRow] = []
    for _source, r in results:
        measured = phase_peaks(r)
        if not measured:
            continue
        try:
            predicted = predict(settings_from_result(r), cal).phase_totals()
        except InputError:
            predicted = {}
        for verl_phase, gib in measured.items():
            phase = PLANNER_PHASE.get(verl_phase)
            if phase is None:
                continue
            rows.append(PhaseRow(_full_id(r), phase, verl_phase, round(gib, 2), predicted.get(phase)))
    return rows


def markdown(rows: list[PhaseRow]) -> str:
    if not rows:
        return "no result with an NVML timeline (recorded since 2026-12-06 by the host runtime)"
    out = ["| cell | phase (verl) | measured GiB | predicted GiB | error |", "|---|---|---:|---:|---:|"]
    for r in rows:
        pred = "—" if r.predicted_gib is None else f"{r.predicted_gib:.1f}"
        err = "—" if r.error is None else f"{r.error * 100:+.1f} %"
        out.append(f"| {r.cell} | {r.phase} ({r.verl_phase}) | {r.measured_gib:.1f} | {pred} | {err} |")
    return "\n".join(out)
