"""The baseline file: its one reader (`read_baseline`) and its one writer (`write_baseline`).

A baseline file is a wrapper, not a Result with extra keys, because one baseline pools several runs of the
cell (N runs x M steps is what gives the gate its power) and the Result schema forbids extra keys:

    {"format": 1, "id": ..., "gpu": ..., "promoted_at": ...,
     "results": [Result, ...],                                   # the runs the gate compares with
     "history": [{"promoted_at", "replaced_at", "runs": [...]}],  # replaced baselines, newest first
     "gated": [{"gated_at", "against", "verdicts", "runs": [...]}],  # later gated runs, oldest first
     "calibration": {"runs", "throughput_tolerance", "memory_tolerance_gib", ...} | null}

`gated` and `calibration` were added later; a file without them reads as an empty series and no
calibration. A bare Result JSON committed in the store is read as a baseline of one run with no history.
The results inside go through the one result reader (`suite.results.io.result_from_dict`), so a baseline
and a result file are refused for the same reasons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from suite.errors import InputError
from suite.results.io import describe, looks_like_result, read_json, result_from_dict, write_text_atomic
from suite.results.schema import Provenance, Result

BASELINE_FORMAT = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunSummary(_Model):
    status: str
    measured_steps: int
    throughput_median: float | None = None
    time_per_step_median: float | None = None
    response_length_median: float | None = None
    peak_memory_worst_gb: float | None = None
    host_peak_memory_gb: float | None = Field(default=None, description="the process tree's host peak (RSS), GiB")
    accuracy: dict[str, dict[str, int]] = Field(default_factory=dict)
    throughput_window: float | None = Field(
        default=None, description="measured tokens / (measured seconds x GPUs): the run's whole measured window"
    )
    probs_diff_mean: float | None = Field(
        default=None, description="median over measured steps of verl's training/rollout_probs_diff_mean"
    )


class HistoryRun(_Model):
    provenance: Provenance
    summary: RunSummary


class HistoryEntry(_Model):
    promoted_at: str | None
    replaced_at: str
    runs: list[HistoryRun]


class GatedEntry(_Model):
    """One later run of the cell that the gate compared with this baseline (`gate --record`)."""

    gated_at: str
    against: str | None = Field(description="promoted_at of the baseline it was compared with")
    verdicts: dict[str, str] = Field(default_factory=dict, description="metric -> verdict, as the gate printed")
    violations: list[str] = Field(
        default_factory=list, description="metrics that broke a threshold (suspicious or regressed)"
    )
    runs: list[HistoryRun]


class Calibration(_Model):
    """Tolerances derived from the baseline's own runs (`grpo-suite baseline calibrate`)."""

    calibrated_at: str
    runs: int = Field(ge=2, description="how many runs of the baseline the tolerances come from")
    factor: float = Field(gt=0, description="the largest deviation seen between runs is multiplied by this")
    throughput_tolerance: float = Field(ge=0, lt=1, description="fraction of the baseline throughput")
    memory_tolerance_gib: float = Field(ge=0)
    throughput_runs: list[float] = Field(description="each run's window throughput, tokens/s/GPU")
    memory_runs: list[float] = Field(default_factory=list, description="each run's NVML peak (worst GPU), GiB")
    host_memory_tolerance_gib: float | None = Field(
        default=None, ge=0, description="None: no run recorded its process tree's host peak (the thresholds apply)"
    )
    host_memory_runs: list[float] = Field(
        default_factory=list, description="each run's host peak of its process tree (RSS), GiB"
    )


class Baseline(_Model):
    format: int = BASELINE_FORMAT
    id: str
    gpu: str
    promoted_at: str | None = None
    results: list[Result] = Field(min_length=1)
    history: list[HistoryEntry] = Field(default_factory=list)
    gated: list[GatedEntry] = Field(default_factory=list)
    calibration: Calibration | None = None

    @property
    def matrix(self) -> str:
        return self.results[0].matrix

    def to_json(self) -> str:
        # The later keys are left out while unused: a store that never gated or calibrated keeps the files
        # an older grpo-suite reads.
        skip = {k for k, empty in (("gated", not self.gated), ("calibration", self.calibration is None)) if empty}
        return self.model_dump_json(by_alias=True, indent=2, exclude=skip) + "\n"


def baseline_from_dict(data: Any, source: str) -> Baseline:
    if looks_like_result(data):
        result = result_from_dict(data, source)
        return Baseline(id=result.id, gpu=result.gpu, results=[result])
    if not isinstance(data, dict) or "results" not in data:
        raise InputError("neither a baseline (no 'results' list) nor a result (no 'schema'/'id')", source=source)
    if data.get("format") != BASELINE_FORMAT:
        raise InputError(
            f"baseline format {data.get('format')!r} is not supported; this grpo-suite reads {BASELINE_FORMAT}",
            source=source,
            field="format",
        )
    raw_results = data.get("results")
    if not isinstance(raw_results, list) or not raw_results:
        raise InputError("must be a non-empty list of results", source=source, field="results")
    results = [result_from_dict(r, source, prefix=f"results[{i}].") for i, r in enumerate(raw_results)]
    try:
        baseline = Baseline.model_validate({**data, "results": results})
    except ValidationError as exc:
        raise InputError(describe(exc), source=source) from None
    ids = {r.id for r in results}
    if ids != {baseline.id}:
        raise InputError(f"results hold cell ids {sorted(ids)}, not only {baseline.id!r}", source=source, field="id")
    matrices = {r.matrix for r in results}
    if len(matrices) > 1:
        raise InputError(f"results come from several matrices {sorted(matrices)}", source=source, field="results")
    gpus = {r.gpu for r in results}
    if gpus != {baseline.gpu}:
        # the wrapper's generation is its runs' (each the card it ran on): anything else contradicts them
        raise InputError(
            f"gpu {baseline.gpu!r} vs results[].gpu {sorted(gpus)} (fields contradict each other)",
            source=source,
            field="gpu",
        )
    return baseline


def read_baseline(path: str | Path) -> Baseline:
    return baseline_from_dict(read_json(path), str(path))


def write_baseline(path: str | Path, baseline: Baseline) -> Path:
    # through the reader, as write_result does: the store never holds a file its readers refuse
    text = baseline.to_json()
    baseline_from_dict(Baseline.model_validate_json(text).model_dump(mode="json", by_alias=True), str(path))
    return write_text_atomic(path, text)
