"""Predicted vs measured GPU memory per phase of a step: the planner's phase totals against the NVML peak of each
phase, read from a result's timeline (suite/results/phases.py). The whole-run peak says that a prediction missed;
this says in which phase."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from suite.errors import InputError
from suite.memory.calibration import Calibration, default_calibration
from suite.memory.host import predict_host
from suite.memory.model import predict
from suite.memory.settings import settings_from_result
from suite.memory.validate import _full_id
from suite.results.phases import PLANNER_PHASE, held_phases, host_phase_peaks, phase_peaks
from suite.results.schema import Result


@dataclass(frozen=True)
class PhaseRow:
    cell: str
    phase: str  # the planner's name (rollout, sync, old_log_prob, ref_log_prob, actor_update; host: startup, steady)
    verl_phase: str  # timing_s key; for host rows "host"
    measured_gib: float
    predicted_gib: float | None
    # the phase never left the level the phase before it left in torch's cache: measured bounds its need from above
    held: bool = False

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
        measured, host, held = phase_peaks(r), host_phase_peaks(r), held_phases(r)
        if not measured and not host:
            continue
        try:
            settings = settings_from_result(r)
            predicted, host_predicted = (
                predict(settings, cal).phase_totals(),
                predict_host(settings, cal).phase_totals(),
            )
        except InputError:
            predicted, host_predicted = {}, {}
        for verl_phase, gib in measured.items():
            phase = PLANNER_PHASE.get(verl_phase)
            if phase is None:
                continue
            rows.append(
                PhaseRow(_full_id(r), phase, verl_phase, round(gib, 2), predicted.get(phase), verl_phase in held)
            )
        for phase, gib in host.items():
            # a host model without a startup phase predicts its steady peak for the whole run
            pred = host_predicted.get(phase, host_predicted.get("steady"))
            rows.append(PhaseRow(_full_id(r), phase, "host", round(gib, 2), pred))
    return rows


def markdown(rows: list[PhaseRow]) -> str:
    if not rows:
        return "no result with an NVML timeline (recorded since 2026-12-06 by the host runtime)"
    out = ["| cell | phase (verl) | measured GiB | predicted GiB | error |", "|---|---|---:|---:|---:|"]
    for r in rows:
        pred = "—" if r.predicted_gib is None else f"{r.predicted_gib:.1f}"
        err = "—" if r.error is None else f"{r.error * 100:+.1f} %"
        if r.held and r.error is not None:
            # against a bound from above: a prediction under it may be right; one over it is over by at least that
            err = "under the bound (held)" if r.error <= 0 else f"≥ {err} (held)"
        meas = f"≤ {r.measured_gib:.1f}" if r.held else f"{r.measured_gib:.1f}"
        out.append(f"| {r.cell} | {r.phase} ({r.verl_phase}) | {meas} | {pred} | {err} |")
    if any(r.held for r in rows):
        out.append(
            "\nheld: the phase began at the level the phase before it left in torch's cache and stayed there, so NVML"
            " shows that level: an upper bound on the phase's own need, not a measurement of it"
        )
    return "\n".join(out)
