"""Predicted vs measured peak memory over stored results (NVML peak of the worst GPU), as rows, a summary
against the issue-10 goal (within +-10 % on >= 90 % of measured cells, no predicted-fit cell that OOMed) and
a Markdown table. Host RAM alongside: the predicted peak per node against `host_peak_memory_gb` (peak RSS of
the cell's process tree) where a result has it; it is reported, not part of the goal (uncalibrated so far)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from suite.errors import InputError
from suite.memory.calibration import Calibration, default_calibration
from suite.memory.host import predict_host
from suite.memory.model import predict
from suite.memory.settings import settings_from_result
from suite.results.schema import Result

GOAL_TOLERANCE = 0.10
GOAL_FRACTION = 0.90
# Stopped from outside: a step that ended before the stop had its whole peak (every step has the same shape).
STOPPED = ("timeout", "interrupted")


@dataclass(frozen=True)
class MemoryRow:
    cell: str  # '<matrix>: <full id>' (model/hardware/backend/axes)
    source: str
    status: str  # the measured run's status (ok, oom, ...)
    measured_gib: float | None
    predicted_gib: float | None
    phase: str | None
    predicted_fits: bool | None
    note: str = ""
    host_measured_gib: float | None = None  # Result.host_peak_memory_gb; None: not measured
    host_predicted_gib: float | None = None  # per node
    host_phase: str | None = None
    steps: int = 0  # steps the run ended
    # the trainer's torch.cuda.max_memory_allocated (Result.torch_memory, logged by verl) and the predicted tensors:
    # the tensor terms alone, without the contexts and the allocator's slack NVML also sees
    torch_measured_gib: float | None = None
    torch_predicted_gib: float | None = None

    @property
    def clean(self) -> bool:
        """The run saw a whole step's peak: it finished, or it was stopped from outside after ending a step. A crash
        or an OOM stops at a point no prediction describes."""
        return self.status == "ok" or (self.status in STOPPED and self.steps > 0)

    @property
    def error(self) -> float | None:
        """(predicted - measured) / measured; None without both numbers."""
        return _error(self.predicted_gib, self.measured_gib)

    @property
    def host_error(self) -> float | None:
        return _error(self.host_predicted_gib, self.host_measured_gib)

    @property
    def torch_error(self) -> float | None:
        return _error(self.torch_predicted_gib, self.torch_measured_gib) if self.clean else None

    @property
    def host_measured(self) -> bool:
        """A clean host measurement (see `clean`) with a host peak."""
        return self.clean and self.host_error is not None

    @property
    def measured(self) -> bool:
        """A clean measurement to score the error on (see `clean`) with an NVML peak."""
        return self.clean and self.error is not None

    @property
    def missed_oom(self) -> bool:
        return self.status == "oom" and bool(self.predicted_fits)

    @property
    def false_oom(self) -> bool:
        """Predicted not to fit, and it ran clean: a cell the planner would have pruned (`plan` marks it
        predicted-oom), the costlier miss where the fastest cell sits at the card's edge."""
        return self.predicted_fits is False and self.clean


def _error(predicted: float | None, measured: float | None) -> float | None:
    if measured is None or predicted is None or measured <= 0:
        return None
    return (predicted - measured) / measured


@dataclass(frozen=True)
class Summary:
    measured: int
    within: int
    missed_ooms: int
    unpredicted: int
    tolerance: float
    median_error: float | None
    median_residual_gib: float | None  # measured - predicted, GiB (what a constant offset would absorb)
    host_measured: int = 0
    host_within: int = 0
    host_not_measured: int = 0  # results without host_peak_memory_gb
    host_median_error: float | None = None
    host_median_residual_gib: float | None = None
    torch_measured: int = 0
    torch_within: int = 0
    torch_median_error: float | None = None
    false_oom_cells: tuple[str, ...] = ()  # predicted not to fit, ran clean

    @property
    def fraction_within(self) -> float | None:
        return self.within / self.measured if self.measured else None

    @property
    def host_fraction_within(self) -> float | None:
        return self.host_within / self.host_measured if self.host_measured else None

    @property
    def goal_met(self) -> bool:
        frac = self.fraction_within
        return frac is not None and frac >= GOAL_FRACTION and self.missed_ooms == 0


def _full_id(r: Result) -> str:
    """`<gen> <matrix>: <id>`: a result's id is already the full cell id (model/hardware/backend/axes), but
    matrices with different base settings share cell ids, and one matrix may run on several generations."""
    if r.id.count("/") < 3:  # a bare axes id (hand-made results): spell out the rest
        model = r.model.split(":", 1)[-1].rstrip("/").split("/")[-1].lower()
        return f"{r.gpu} {r.matrix}: {model}/{r.gpu}x{r.n_gpus}/{r.backend}/{r.id}"
    return f"{r.gpu} {r.matrix}: {r.id}"


def validate_results(results: Iterable[tuple[str, Result]], calibration: Calibration | None = None) -> list[MemoryRow]:
    cal = calibration or default_calibration()
    rows: list[MemoryRow] = []
    for source, r in results:
        measured = r.peak_memory_worst_gb
        host_measured = r.host_peak_memory_gb
        torch_measured = r.torch_memory.max_memory_allocated_gb
        try:
            settings = settings_from_result(r)
            pred, host = predict(settings, cal), predict_host(settings, cal)
        except InputError as exc:
            rows.append(
                MemoryRow(_full_id(r), source, r.status, measured, None, None, None, note=str(exc),
                    host_measured_gib=host_measured, steps=len(r.steps), torch_measured_gib=torch_measured)
            )  # fmt: skip
            continue
        note = "; ".join(pred.notes)
        if not r.provenance.argv:
            note = "; ".join(x for x in ("no command recorded: axes over verl defaults", note) if x)
        rows.append(
            MemoryRow(_full_id(r), source, r.status, measured, pred.peak_gib, pred.phase, pred.fits, note,
                host_measured_gib=host_measured, host_predicted_gib=host.peak_gib, host_phase=host.phase,
                steps=len(r.steps), torch_measured_gib=torch_measured, torch_predicted_gib=pred.trainer_tensors_gib)
        )  # fmt: skip
    return rows


def summarize(rows: list[MemoryRow], tolerance: float = GOAL_TOLERANCE) -> Summary:
    scored = [r for r in rows if r.measured]
    errors = [r.error for r in scored if r.error is not None]
    residuals = [r.measured_gib - r.predicted_gib for r in scored if r.measured_gib is not None and r.predicted_gib]
    host = [r for r in rows if r.host_measured]
    host_errors = [r.host_error for r in host if r.host_error is not None]
    host_residuals = [
        r.host_measured_gib - r.host_predicted_gib
        for r in host
        if r.host_measured_gib is not None and r.host_predicted_gib is not None
    ]
    torch_errors = [e for r in rows if (e := r.torch_error) is not None]
    return Summary(
        torch_measured=len(torch_errors),
        torch_within=sum(abs(e) <= tolerance + 1e-12 for e in torch_errors),
        torch_median_error=statistics.median(torch_errors) if torch_errors else None,
        measured=len(scored),
        within=sum(abs(e) <= tolerance + 1e-12 for e in errors),
        missed_ooms=sum(r.missed_oom for r in rows),
        false_oom_cells=tuple(sorted(r.cell for r in rows if r.false_oom)),
        unpredicted=sum(r.predicted_gib is None for r in rows),
        tolerance=tolerance,
        median_error=statistics.median(errors) if errors else None,
        median_residual_gib=statistics.median(residuals) if residuals else None,
        host_measured=len(host),
        host_within=sum(abs(e) <= tolerance + 1e-12 for e in host_errors),
        host_not_measured=sum(r.host_measured_gib is None for r in rows),
        host_median_error=statistics.median(host_errors) if host_errors else None,
        host_median_residual_gib=statistics.median(host_residuals) if host_residuals else None,
    )


def _num(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def _pct(e: float | None) -> str:
    return "-" if e is None else f"{e * 100:+.1f} %"


def markdown(rows: list[MemoryRow], summary: Summary) -> str:
    head = "| cell | status | measured GiB | predicted GiB | error | predicted phase | predicted fit |"
    head += " host measured GiB | host predicted GiB | host error | torch measured GiB | torch predicted GiB |"
    lines = [head, "|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: r.cell):
        err = _pct(r.error)
        if r.missed_oom:
            err += " **(OOM missed)**"
        elif r.false_oom:
            err += " **(ran; predicted OOM)**"
        fit = "-" if r.predicted_fits is None else ("yes" if r.predicted_fits else "no")
        cells = [r.cell, r.status, _num(r.measured_gib), _num(r.predicted_gib), err, r.phase or "-", fit]
        host_measured = "not measured" if r.host_measured_gib is None else _num(r.host_measured_gib)
        cells += [host_measured, _num(r.host_predicted_gib), _pct(r.host_error)]
        cells += [_num(r.torch_measured_gib), _num(r.torch_predicted_gib)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    frac = summary.fraction_within
    lines.append("")
    lines.append(
        f"{summary.within} of {summary.measured} measured cells within ±{summary.tolerance * 100:.0f} %"
        + (f" ({frac * 100:.0f} %)" if frac is not None else "")
        + f"; predicted-fit cells that OOMed: {summary.missed_ooms}"
        + f"; median error {_num(summary.median_error and summary.median_error * 100, '{:+.1f}')} %"
        + f"; goal (±{GOAL_TOLERANCE * 100:.0f} % on ≥ {GOAL_FRACTION * 100:.0f} %, no missed OOM): "
        + ("met" if summary.goal_met else "not met")
    )
    if summary.false_oom_cells:
        lines.append(
            f"predicted-oom cells that ran: {len(summary.false_oom_cells)} (the planner would have pruned them): "
            + ", ".join(summary.false_oom_cells)
        )
    hfrac = summary.host_fraction_within
    lines.append(
        f"host: {summary.host_within} of {summary.host_measured} measured cells within ±{summary.tolerance * 100:.0f} %"
        + (f" ({hfrac * 100:.0f} %)" if hfrac is not None else "")
        + f"; median error {_num(summary.host_median_error and summary.host_median_error * 100, '{:+.1f}')} %"
        + f"; {summary.host_not_measured} results not measured (no host_peak_memory_gb)"
        + "; not part of the goal until the host constants are calibrated"
    )
    lines.append(
        f"trainer tensors (torch max_memory_allocated, logged by verl): {summary.torch_within} of "
        f"{summary.torch_measured} measured cells within ±{summary.tolerance * 100:.0f} %"
        + f"; median error {_num(summary.torch_median_error and summary.torch_median_error * 100, '{:+.1f}')} %"
    )
    return "\n".join(lines)


def suggest_runtime_gib(summary: Summary, calibration: Calibration | None = None) -> float | None:
    """The `[overhead].runtime_gib` that would centre the measured cells (median residual absorbed): a
    one-constant refit, the first step before touching per-component constants."""
    cal = calibration or default_calibration()
    if summary.median_residual_gib is None:
        return None
    return round(cal.overhead.runtime_gib + summary.median_residual_gib, 2)
