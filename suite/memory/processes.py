"""The host model's processes against a run's RSS by process role (`Result.host_peak_processes_gb`, the tree at
its peak): which measured titles belong to which modelled kind, and one row per kind and cell, so that the
per-process constants of `[host]` can be refitted one by one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from suite.errors import InputError
from suite.memory.calibration import Calibration, default_calibration
from suite.memory.host import PROCESS_KINDS, process_counts
from suite.memory.settings import settings_from_result
from suite.results.schema import Result

# Title prefixes of each kind (verl 0.9.1, vLLM 0.25, Ray 2.59). DataLoader workers are forked from the TaskRunner
# and keep its title, so the two kinds are compared as one.
ROLE_PREFIXES: dict[str, tuple[str, ...]] = {
    "driver": ("python -m verl.trainer.main_ppo",),
    "ray_system": ("raylet", "gcs_server", "ray::RuntimeEnvAgent", "ray::DashboardAgent", "python log_monitor.py",
                   "python dashboard.py", "python agent.py", "python runtime_env_agent"),
    "task_runner": ("ray::TaskRunner",),
    "trainer_worker": ("ray::WorkerDict",),
    "vllm_server": ("ray::vLLMHttpServer",),
    "vllm_engine_core": ("VLLM::EngineCore",),
    "vllm_worker": ("VLLM::Worker",),
    "agent_worker": ("ray::AgentLoopWorker",),
    "reward_worker": ("ray::RewardLoopWorker", "ray::RewardManagerWorker"),
    "tq_storage_unit": ("ray::SimpleStorageUnit",),
    "tq_controller": ("ray::TransferQueueController",),
}  # fmt: skip
MERGED = {"dataloader_worker": "task_runner"}
OTHER = "other"


def role_kind(label: str) -> str:
    """The modelled kind a measured process title belongs to; `other` for one the model does not count."""
    for kind, prefixes in ROLE_PREFIXES.items():
        if label.startswith(prefixes):
            return kind
    return OTHER


@dataclass(frozen=True)
class ProcessRow:
    cell: str
    kind: str
    predicted_count: int
    predicted_gib: float
    measured_count: int
    measured_gib: float

    @property
    def residual_gib(self) -> float:
        return self.measured_gib - self.predicted_gib


def process_rows(results: Iterable[tuple[str, Result]], calibration: Calibration | None = None) -> list[ProcessRow]:
    """Rows for every result that recorded RSS by role; results without it give none."""
    cal = calibration or default_calibration()
    rows: list[ProcessRow] = []
    for _, r in results:
        if not r.host_peak_processes_gb:
            continue
        try:
            counts = process_counts(settings_from_result(r))
        except InputError:
            continue
        predicted: dict[str, tuple[int, float]] = {}
        for kind in PROCESS_KINDS:
            into = MERGED.get(kind, kind)
            n, gib = predicted.get(into, (0, 0.0))
            predicted[into] = (n + counts.get(kind, 0), gib + counts.get(kind, 0) * getattr(cal.host, f"{kind}_gib"))
        measured: dict[str, tuple[int, float]] = {}
        for label, gib in r.host_peak_processes_gb.items():
            kind = role_kind(label)
            n, total = measured.get(kind, (0, 0.0))
            measured[kind] = (n + r.host_peak_process_counts.get(label, 1), total + gib)
        cell = f"{r.gpu} {r.matrix}: {r.id.rsplit('/', 1)[-1]}"
        for kind in [*predicted, *(k for k in measured if k not in predicted)]:
            pn, pg = predicted.get(kind, (0, 0.0))
            mn, mg = measured.get(kind, (0, 0.0))
            if pn or mn:
                rows.append(ProcessRow(cell, kind, pn, round(pg, 2), mn, round(mg, 2)))
    return rows


def markdown(rows: list[ProcessRow]) -> str:
    if not rows:
        return "no result records RSS by process role (host_peak_processes_gb)"
    lines = [
        "| cell | process kind | predicted n | predicted GiB | measured n | measured GiB | residual GiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.cell} | {r.kind} | {r.predicted_count} | {r.predicted_gib:.2f} | {r.measured_count} "
            f"| {r.measured_gib:.2f} | {r.residual_gib:+.2f} |"
        )
    return "\n".join(lines)
