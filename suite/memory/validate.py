"""Predicted vs measured peak memory over stored results (NVML peak of the worst GPU), as rows, a summary
against the issue-10 goal (within +-10 % on >= 90 % of measured cells, no predicted-fit cell that OOMed) and
a Markdown table."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from suite.errors import InputError
from suite.memory.calibration import Calibration, default_calibration
from suite.memory.model import predict
from suite.memory.settings import settings_from_result
from suite.results.schema import Result

GOAL_TOLERANCE = 0.10
GOAL_FRACTION = 0.90


@dataclass(frozen=True)
class Row:
    cell: str  # '<matrix>: <full id>' (model/hardware/backend/axes)
    source: str
    status: str  # the measured run's status (ok, oom, ...)
    measured_gib: float | None
    predicted_gib: float | None
    phase: str | None
    predicted_fits: bool | None
    note: str = ""

    @property
    def error(self) -> float | None:
        """(predicted - measured) / measured; None without both numbers."""
        if self.measured_gib is None or self.predicted_gib is None or self.measured_gib <= 0:
            return None
        return (self.predicted_gib - self.measured_gib) / self.measured_gib

    @property
    def measured(self) -> bool:
        """A clean measurement to score the error on: the run finished and NVML saw its peak."""
        return self.status == "ok" and self.error is not None

    @property
    def missed_oom(self) -> bool:
        return self.status == "oom" and bool(self.predicted_fits)


@dataclass(frozen=True)
class Summary:
    measured: int
    within: int
    missed_ooms: int
    unpredicted: int
    tolerance: float
    median_error: float | None
    median_residual_gib: float | None  # measured - predicted, GiB (what a constant offset would absorb)

    @property
    def fraction_within(self) -> float | None:
        return self.within / self.measured if self.measured else None

    @property
    def goal_met(self) -> bool:
        frac = self.fraction_within
        return frac is not None and frac >= GOAL_FRACTION and self.missed_ooms == 0


def find_results(paths: Iterable[str | Path]) -> list[tuple[str, Result]]:
    """Results under the given files/directories, sorted by path: result JSON files and the runs of baseline
    files (a baseline store works as is); other JSON files and a store's evidence folder are skipped."""
    from suite.gate.store import in_evidence, read_results_file
    from suite.results.io import read_result

    found: list[tuple[str, Result]] = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*.json")):
                if in_evidence(f, p):
                    continue
                try:
                    found.extend((str(f), r) for r in read_results_file(f, in_folder=True) or ())
                except InputError:
                    continue  # unreadable files are skipped here, as before
        elif p.is_file():
            found.append((str(p), read_result(p)))
        else:
            raise InputError("no such file or directory", source=str(p))
    return found


def _full_id(r: Result) -> str:
    """`<gen> <matrix>: <id>`: a result's id is already the full cell id (model/hardware/backend/axes), but
    matrices with different base settings share cell ids, and one matrix may run on several generations."""
    if r.id.count("/") < 3:  # a bare axes id (hand-made results): spell out the rest
        model = r.model.split(":", 1)[-1].rstrip("/").split("/")[-1].lower()
        return f"{r.gpu} {r.matrix}: {model}/{r.gpu}x{r.n_gpus}/{r.backend}/{r.id}"
    return f"{r.gpu} {r.matrix}: {r.id}"


def validate_results(results: Iterable[tuple[str, Result]], calibration: Calibration | None = None) -> list[Row]:
    cal = calibration or default_calibration()
    rows: list[Row] = []
    for source, r in results:
        measured = r.peak_memory_worst_gb
        try:
            pred = predict(settings_from_result(r), cal)
        except InputError as exc:
            rows.append(Row(_full_id(r), source, r.status, measured, None, None, None, note=str(exc)))
            continue
        note = "; ".join(pred.notes)
        if not r.provenance.argv:
            note = "; ".join(x for x in ("no command recorded: axes over verl defaults", note) if x)
        rows.append(Row(_full_id(r), source, r.status, measured, pred.peak_gib, pred.phase, pred.fits, note))
    return rows


def summarize(rows: list[Row], tolerance: float = GOAL_TOLERANCE) -> Summary:
    scored = [r for r in rows if r.measured]
    errors = [r.error for r in scored if r.error is not None]
    residuals = [r.measured_gib - r.predicted_gib for r in scored if r.measured_gib is not None and r.predicted_gib]
    return Summary(
        measured=len(scored),
        within=sum(abs(e) <= tolerance + 1e-12 for e in errors),
        missed_ooms=sum(r.missed_oom for r in rows),
        unpredicted=sum(r.predicted_gib is None for r in rows),
        tolerance=tolerance,
        median_error=statistics.median(errors) if errors else None,
        median_residual_gib=statistics.median(residuals) if residuals else None,
    )


def _num(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def markdown(rows: list[Row], summary: Summary) -> str:
    head = "| cell | status | measured GiB | predicted GiB | error | predicted phase | predicted fit |"
    lines = [head, "|---|---|---:|---:|---:|---|---|"]
    for r in sorted(rows, key=lambda r: r.cell):
        err = "-" if r.error is None else f"{r.error * 100:+.1f} %"
        if r.missed_oom:
            err += " **(OOM missed)**"
        fit = "-" if r.predicted_fits is None else ("yes" if r.predicted_fits else "no")
        cells = [r.cell, r.status, _num(r.measured_gib), _num(r.predicted_gib), err, r.phase or "-", fit]
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
    return "\n".join(lines)


def suggest_runtime_gib(summary: Summary, calibration: Calibration | None = None) -> float | None:
    """The `[overhead].runtime_gib` that would centre the measured cells (median residual absorbed): a
    one-constant refit, the first step before touching per-component constants."""
    cal = calibration or default_calibration()
    if summary.median_residual_gib is None:
        return None
    return round(cal.overhead.runtime_gib + summary.median_residual_gib, 2)
