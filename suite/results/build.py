"""Telemetry of one verl run (metrics file, log, validation dumps, NVML and host-memory samples) -> a `Result`.

Used by `run` (after each cell) and by `ingest` (a run made outside the suite), so both give the same
numbers for the same files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from suite.gpus import generation_of
from suite.results.schema import Accuracy, HostTimeline, NvmlTimeline, Provenance, Result, Step, TorchMemory
from suite.results.sentinels import count_adapter_syncs
from suite.telemetry import classify, validation
from suite.telemetry.hostmem import HostMemorySamples
from suite.telemetry.metrics import MetricsLog, read_metrics
from suite.telemetry.nvml import MemorySamples

if TYPE_CHECKING:
    from suite.plan.cell import Cell

DEFAULT_ACCURACY_KEY = "gsm8k"


@dataclass(frozen=True)
class CellInfo:
    """What a result says about the cell it measured (from a planned `Cell`, or from `ingest` flags)."""

    id: str
    matrix: str
    profile: str
    gpu: str
    n_gpus: int
    model: str
    backend: str
    axes: Mapping[str, bool | int | float | str] = field(default_factory=dict)
    nnodes: int = 1
    warmup_steps: int = 0
    predicted_memory_gb: float | None = None
    predicted_host_memory_gb: float | None = None
    reference: str | None = None
    reference_matrix: str | None = None

    @classmethod
    def from_cell(cls, cell: Cell) -> CellInfo:
        return cls(
            id=cell.full_id,
            matrix=cell.matrix,
            profile=cell.profile,
            gpu=cell.gpu,
            n_gpus=cell.n_gpus,
            model=cell.model,
            backend=cell.backend,
            axes=dict(cell.axes),
            nnodes=cell.nnodes,
            warmup_steps=cell.warmup_steps,
            predicted_memory_gb=cell.predicted_memory_gb,
            predicted_host_memory_gb=cell.predicted_host_memory_gb,
            reference=cell.reference,
            reference_matrix=cell.reference_matrix,
        )


@dataclass(frozen=True)
class Observation:
    """What was seen of one run. `exit_code` None means unknown (an ingested run): the status is then
    inferred from the log. `status`/`reason` force the outcome (timeout, interrupted, skipped, invalid)."""

    metrics_path: Path | None = None
    log_path: Path | None = None
    validation_dir: Path | None = None
    exit_code: int | None = None
    status: str | None = None
    reason: str | None = None
    oom_kind: str | None = None  # with a forced status oom: which memory ran out (schema.OomKind)
    memory: MemorySamples | None = None
    host_memory: HostMemorySamples | None = None
    wall_s: float | None = None
    startup_s: float | None = None
    startup_breakdown: Mapping[str, float] | None = None
    # seconds from process start: when each step's metrics line was seen, and when the NVML sampler began
    step_seen_s: Mapping[int, float] | None = None
    memory_start_s: float | None = None
    host_memory_start_s: float | None = None


def _accuracy_key(metrics: MetricsLog) -> str:
    sources = {src for accs in metrics.val_accuracy.values() for src in accs}
    return sources.pop() if len(sources) == 1 else DEFAULT_ACCURACY_KEY


@dataclass(frozen=True)
class Outcome:
    status: str
    reason: str | None = None
    oom_kind: str | None = None  # for oom: which memory ran out (classify.OOM_PATTERNS' kinds)


def outcome(obs: Observation, log_lines: list[str]) -> Outcome:
    if obs.status is not None:
        return Outcome(obs.status, obs.reason, obs.oom_kind if obs.status == "oom" else None)
    if obs.exit_code is not None:
        failure = classify.classify(obs.exit_code, log_lines)
        return Outcome(failure.status, failure.reason, failure.kind) if failure else Outcome("ok")
    # Unknown exit (ingest): an OOM line or a final traceback in the log means the run failed.
    oom = classify.find_oom(log_lines)
    if oom is not None:
        return Outcome("oom", oom[1], oom[0])
    tail = log_lines[-200:]
    if any("Traceback (most recent call last)" in x or "Error executing job" in x for x in tail):
        return Outcome("crash", classify.crash_reason(log_lines) or "traceback in log")
    return Outcome("ok")


def torch_memory(metrics: MetricsLog) -> TorchMemory:
    alloc = [v for s in metrics.steps if (v := s.torch_max_memory_allocated_gb) is not None]
    resv = [v for s in metrics.steps if (v := s.torch_max_memory_reserved_gb) is not None]
    return TorchMemory(
        max_memory_allocated_gb=max(alloc) if alloc else None, max_memory_reserved_gb=max(resv) if resv else None
    )


def accuracies(
    info: CellInfo, metrics: MetricsLog, validation_dir: Path | None
) -> tuple[dict[str, Accuracy], dict[str, Accuracy], str | None]:
    """(after training, before training, note). Synthetic (random) weights carry no accuracy."""
    if validation_dir is None:
        return {}, {}, None
    first, last = validation.first_and_last(validation_dir)
    if last is None:
        return {}, {}, None
    if info.model.startswith("synthetic:"):
        return {}, {}, "accuracy omitted: synthetic (random) weights"
    key = _accuracy_key(metrics)
    if last.step == 0 and any(st.step > 0 for st in metrics.steps):
        # it trained but its end-of-run validation never came (cut off): step 0 is the accuracy before training
        return {}, {key: last.accuracy()}, None
    after = {key: last.accuracy()}
    before = {key: first.accuracy()} if first is not None and first.step == 0 and last.step > 0 else {}
    return after, before, None


def measured_generation(planned: str, provenance: Provenance) -> tuple[str, Provenance]:
    """The generation a result belongs to is the hardware it ran on, not the one its matrix was planned for:
    baselines are stored and compared per generation, and an H200 run filed under h100 would gate H100 runs
    against H200 numbers (seen on 2026-11-28: an h100 matrix on a 2x H200 host). The plan's generation
    stays in provenance.extra.planned_gpu."""
    measured = generation_of(provenance.gpu_name) if provenance.gpu_name else None
    if measured is None or measured == planned:
        return planned, provenance
    extra = {**provenance.extra, "planned_gpu": planned}
    return measured, provenance.model_copy(update={"extra": extra})


def _gb(v: float | None) -> float | None:
    return round(v, 2) if v is not None else None


def _wall(obs: Observation) -> float | None:
    return round(obs.wall_s, 3) if obs.wall_s is not None else None


def _with_seen(steps: list[Step], seen: Mapping[int, float] | None, wall_s: float | None) -> list[Step]:
    if not seen:
        return steps

    def at(t: float) -> float:
        # a sighting at the process's end must not land after the rounded wall_s once rounded itself
        return round(t, 2) if wall_s is None else min(round(t, 2), wall_s)

    return [s.model_copy(update={"seen_s": at(seen[s.step])}) if s.step in seen else s for s in steps]


def _timeline(mem: MemorySamples | None, start_s: float | None) -> NvmlTimeline | None:
    if mem is None or not mem.timeline_gib or start_s is None:
        return None
    return NvmlTimeline(
        interval_s=mem.timeline_interval_s, start_s=round(start_s, 3), used_gb=[list(w) for w in mem.timeline_gib]
    )


def _host_timeline(host: HostMemorySamples | None, start_s: float | None) -> HostTimeline | None:
    if host is None or not host.timeline_gib or start_s is None:
        return None
    # a tree that does not hold the run (peak_tree_gib None: workers of an existing Ray cluster) has no tree line
    tree = [None if host.peak_tree_gib is None else w[0] for w in host.timeline_gib]
    return HostTimeline(
        interval_s=host.timeline_interval_s,
        start_s=round(start_s, 3),
        tree_gb=tree,
        system_gb=[w[1] for w in host.timeline_gib],
    )


def build_result(info: CellInfo, obs: Observation, provenance: Provenance) -> Result:
    metrics = read_metrics(obs.metrics_path) if obs.metrics_path else MetricsLog()
    log_lines = classify.read_log_lines(obs.log_path) if obs.log_path else []
    out = outcome(obs, log_lines)
    status, reason = out.status, out.reason
    if status == "ok" and not metrics.steps and obs.status is None:
        reason = "exited 0 but logged no training step"
    after, before, note = accuracies(info, metrics, obs.validation_dir)
    if note:
        provenance = provenance.model_copy(update={"extra": {**provenance.extra, "accuracy": note}})
    if metrics.bad_lines:
        provenance = provenance.model_copy(
            update={"extra": {**provenance.extra, "metrics_bad_lines": str(metrics.bad_lines)}}
        )
    gpu, provenance = measured_generation(info.gpu, provenance)
    mem = obs.memory
    host = obs.host_memory
    return Result(
        id=info.id,
        matrix=info.matrix,
        profile=info.profile,
        gpu=gpu,
        n_gpus=info.n_gpus,
        nnodes=info.nnodes,
        model=info.model,
        backend=info.backend,
        axes=dict(info.axes),
        status=status,  # type: ignore[arg-type]
        reason=reason,
        oom_kind=out.oom_kind,  # type: ignore[arg-type]
        steps=_with_seen(metrics.steps, obs.step_seen_s, _wall(obs)),
        warmup_steps=info.warmup_steps,
        peak_memory_gb=list(mem.peak_gib) if mem else [],
        nvml_sample_hz=round(mem.rate_hz, 2) if mem and mem.rate_hz else None,
        nvml_samples=mem.samples if mem else None,
        nvml_timeline=_timeline(mem, obs.memory_start_s),
        torch_memory=torch_memory(metrics),
        accuracy=after,
        accuracy_initial=before,
        predicted_memory_gb=info.predicted_memory_gb,
        host_peak_memory_gb=_gb(host.peak_tree_gib) if host else None,
        host_system_peak_memory_gb=_gb(host.peak_system_gib) if host else None,
        host_memory_total_gb=_gb(host.total_gib) if host else None,
        host_timeline=_host_timeline(host, obs.host_memory_start_s),
        host_peak_processes_gb=dict(host.peak_processes_gib) if host else {},
        host_peak_process_counts=dict(host.peak_process_counts) if host else {},
        predicted_host_memory_gb=info.predicted_host_memory_gb,
        reference=info.reference,
        reference_matrix=info.reference_matrix,
        lora_adapter_syncs=count_adapter_syncs(log_lines),
        exit_code=obs.exit_code,
        wall_s=_wall(obs),
        startup_s=round(obs.startup_s, 3) if obs.startup_s is not None else None,
        startup_breakdown_s=dict(obs.startup_breakdown or {}),
        provenance=provenance,
    )
