"""The result of one cell run: the contract between run, gate, report and users.

One JSON file per cell run. `SCHEMA_VERSION` bumps on any incompatible change; readers refuse other
versions. The JSON Schema shipped beside this module (`result.schema.json`) is generated from these
models (`python -m suite.results.schema > suite/results/result.schema.json`) and a test keeps it in sync.
"""

from __future__ import annotations

import json
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1

Status = Literal["ok", "oom", "crash", "timeout", "interrupted", "invalid", "skipped"]
# Which memory an oom ran out of: the GPU's (torch / CUDA, vLLM's KV cache check) or the host's (Ray's OOM
# monitor, the host runtime's host_memory_guard, Slurm's memory limit)
OomKind = Literal["cuda", "kv-cache", "ray", "host-guard", "slurm"]
HOST_OOM_KINDS: tuple[OomKind, ...] = ("ray", "host-guard", "slurm")
FINAL_STATUSES: tuple[str, ...] = ("ok", "oom", "crash", "timeout", "invalid")
"""Statuses after which `--resume` does not re-run a cell. Interrupted cells are re-run, and so are
skipped ones (not run at all: predicted OOM under --skip-predicted-oom, or GPUs that stayed busy), because
deciding again costs nothing."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Step(_Model):
    """One verl training step, from its file logger (`{"step": N, "data": {...}}`)."""

    step: int = Field(ge=0)
    throughput: float = Field(description="perf/throughput: prompt+response tokens / (step time x GPUs), tokens/s/GPU")
    time_per_step: float = Field(description="perf/time_per_step, seconds")
    response_length_mean: float = Field(description="response_length/mean, tokens")
    total_num_tokens: float | None = Field(default=None, description="perf/total_num_tokens")
    timing_s: dict[str, float] = Field(
        default_factory=dict, description="timing_s/* phases, seconds (key without prefix)"
    )
    torch_max_memory_allocated_gb: float | None = None
    torch_max_memory_reserved_gb: float | None = None
    mfu: float | None = Field(default=None, description="perf/mfu/actor when verl reports it")
    extra: dict[str, float] = Field(default_factory=dict, description="other numeric verl metrics kept verbatim")
    seen_s: float | None = Field(
        default=None,
        description="seconds from process start to when the suite saw this step's metrics line (polled every "
        "0.5 s): the step's end, for reading nvml_timeline by phase; None for an ingested run",
    )

    @field_validator("throughput", "time_per_step", "response_length_mean")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"must be a finite number, got {v!r}")
        return v


class NvmlTimeline(_Model):
    """NVML `used` over the run: the max per GPU in each `interval_s` window, the first window starting
    `start_s` after the process started; null for a window without a sample."""

    interval_s: float = Field(gt=0)
    start_s: float = Field(description="seconds from process start to the first window")
    used_gb: list[list[float | None]] = Field(description="per window, per GPU (the order of peak_memory_gb), GiB")


class HostTimeline(_Model):
    """Host memory over the run: the max of each `interval_s` window, the first starting `start_s` after the
    process started; null for a window without a sample."""

    interval_s: float = Field(gt=0)
    start_s: float = Field(description="seconds from process start to the first window")
    tree_gb: list[float | None] = Field(description="RSS summed over the cell's process tree, GiB")
    system_gb: list[float | None] = Field(description="the host's used memory (total - available), GiB")


class Accuracy(_Model):
    """Exact counts so that intervals and tests can be computed (never a rounded mean)."""

    correct: int = Field(ge=0)
    total: int = Field(ge=1)
    flexible_correct: int | None = Field(default=None, ge=0, description="flexible-match correct count, when cheap")
    source: str | None = Field(default=None, description="where the counts came from (validation dump path, metric)")

    @property
    def rate(self) -> float:
        return self.correct / self.total


class TorchMemory(_Model):
    max_memory_allocated_gb: float | None = None
    max_memory_reserved_gb: float | None = None


class Provenance(_Model):
    gpu_name: str | None = None
    gpu_count: int | None = None
    driver: str | None = None
    cuda: str | None = None
    versions: dict[str, str] = Field(default_factory=dict, description="torch, verl, vllm, ray, transformers, ...")
    packages_checked: list[str] | None = Field(
        default=None,
        description="the distributions whose versions were looked up (suite.packages.PACKAGES then): one of them "
        "missing from versions was not installed; None (older results): unknown",
    )
    image: str | None = Field(default=None, description="container image reference")
    image_digest: str | None = None
    suite_version: str | None = None
    git_commit: str | None = None
    argv: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(
        default_factory=dict,
        description="the cell's environment variables that shape the stack (provenance.RECORDED_ENV), no secrets",
    )
    seed: int | None = None
    start_time: str | None = Field(default=None, description="ISO 8601, UTC")
    end_time: str | None = None
    host: str | None = None
    runtime: str | None = Field(default=None, description="host | docker | ray | slurm")
    cuda_visible_devices: str | None = None
    parallel_slots: int | None = Field(default=None, description="cells run at once on this host")
    model_source: str | None = Field(default=None, description="e.g. synthetic:qwen2.5-0.5b or an HF id")
    extra: dict[str, str] = Field(default_factory=dict)


class Result(_Model):
    schema_: int = Field(SCHEMA_VERSION, alias="schema")
    id: str
    matrix: str
    profile: str
    gpu: str = Field(
        description="GPU generation key of the hardware the cell ran on, e.g. h100 "
        "(the plan's generation, when it differs, is in provenance.extra.planned_gpu)"
    )
    n_gpus: int = Field(ge=1, description="world size: nnodes x gpus_per_node")
    nnodes: int = Field(1, ge=1)
    model: str
    backend: str
    axes: dict[str, bool | int | float | str] = Field(
        description="axis values: lora_rank, offload, tp, rollout_batch, then the matrix's extra axes (readable names or raw verl keys)"
    )
    status: Status
    reason: str | None = None
    oom_kind: OomKind | None = Field(
        default=None,
        description="for status oom, which memory ran out: the GPU's (cuda: torch / CUDA; kv-cache: vLLM's KV "
        "cache check) or the host's (ray: Ray's OOM monitor; host-guard: the host runtime's host_memory_guard; "
        "slurm: the job's memory limit); None for other statuses and results written before it was recorded",
    )
    steps: list[Step] = Field(default_factory=list)
    warmup_steps: int = Field(0, ge=0)
    peak_memory_gb: list[float] = Field(default_factory=list, description="NVML used, max over the run, per GPU (GiB)")
    nvml_sample_hz: float | None = Field(default=None, description="achieved NVML sampling rate, Hz")
    nvml_samples: int | None = Field(default=None, description="NVML sampling rounds (each reads every GPU)")
    nvml_timeline: NvmlTimeline | None = Field(
        default=None, description="NVML used per GPU, max over each window of the run (None: not sampled)"
    )
    torch_memory: TorchMemory = Field(default_factory=TorchMemory)
    accuracy: dict[str, Accuracy] = Field(default_factory=dict, description="after training, e.g. {'gsm8k': ...}")
    accuracy_initial: dict[str, Accuracy] = Field(default_factory=dict, description="validation before training")
    predicted_memory_gb: float | None = None
    host_peak_memory_gb: float | None = Field(
        default=None, description="max over the run of the cell's process tree resident memory (RSS, psutil), GiB"
    )
    host_system_peak_memory_gb: float | None = Field(
        default=None, description="max over the run of the host's used memory (total - available), GiB"
    )
    host_memory_total_gb: float | None = Field(default=None, description="the host's total memory, GiB")
    host_timeline: HostTimeline | None = Field(
        default=None, description="host memory over the run, max per window (None: not sampled)"
    )
    host_peak_processes_gb: dict[str, float] = Field(
        default_factory=dict,
        description="RSS by process role (ray::TaskRunner, ray::WorkerDict, VLLM::EngineCore, ...) at the sample "
        "where the process tree peaked, GiB; sums to host_peak_memory_gb",
    )
    host_peak_process_counts: dict[str, int] = Field(
        default_factory=dict, description="processes of each role at that sample"
    )
    predicted_host_memory_gb: float | None = Field(
        default=None, description="the memory planner's host peak for this cell, GiB"
    )
    reference: str | None = Field(
        default=None, description="id of the matrix's reference cell (`[matrix] reference`), if it names one"
    )
    reference_matrix: str | None = Field(
        default=None,
        description="the matrix `reference` is a cell of (`[matrix] reference_matrix`), when not this result's own",
    )
    lora_adapter_syncs: int | None = Field(
        default=None,
        description="LoRA adapter syncs to vLLM that verl logged (its INFO line 'LoRA adapter sync', "
        "seen only with VERL_LOGGING_LEVEL=INFO); None when the log holds none",
    )
    exit_code: int | None = Field(default=None, description="verl process exit code; negative: killed by signal")
    wall_s: float | None = Field(default=None, description="process start to process end, seconds")
    startup_s: float | None = Field(default=None, description="process start to the first step's metrics line")
    startup_breakdown_s: dict[str, float] = Field(
        default_factory=dict,
        description="seconds from process start to each start-up milestone seen in the log "
        "(imports_done, ray_started, data_loaded, actor_initialized, vllm_weights_loaded, "
        "vllm_graphs_captured, vllm_engine_ready, ready_to_fit, validation_started, first_step)",
    )
    provenance: Provenance = Field(default_factory=Provenance)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def measured_steps(self) -> list[Step]:
        """Steps after warm-up; verl's step 0 (validation before training) carries no throughput."""
        return [s for s in self.steps if s.step > self.warmup_steps]

    @property
    def peak_memory_worst_gb(self) -> float | None:
        return max(self.peak_memory_gb) if self.peak_memory_gb else None

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2, exclude_none=False)


def json_schema() -> dict:
    schema = Result.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://grpo-suite.dev/schema/result-v{SCHEMA_VERSION}.json"
    return schema


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
