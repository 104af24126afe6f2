"""Runs measured on a GPU that are not baselines: the raw files kept beside the store (`baselines/evidence/`), one
line per run of a cell the store has no baseline of, with what it measured and why the gate would not take it as
a baseline (`suite.gate.store.refusals`: its status, its rollout/actor sentinel, too few measured steps). Pure:
results in, lines out; the report shows them apart from the baselines, never pooled with them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from suite.gate.cells import median
from suite.gate.compare import required_samples
from suite.gate.config import GateConfig
from suite.gate.store import refusals
from suite.results.schema import Result


@dataclass(frozen=True)
class EvidenceRun:
    gpu: str
    model: str
    n_gpus: int
    backend: str
    matrix: str
    id: str
    profile: str
    status: str
    folder: str  # the run's evidence folder under the evidence root (named by date and host)
    measured_steps: int
    tokens_per_s: float | None  # median over the measured steps
    s_per_step: float | None
    nvml_gib: float | None  # worst GPU
    predicted_gib: float | None
    host_gib: float | None  # the process tree's host peak
    predicted_host_gib: float | None
    why_not: tuple[str, ...]  # empty: it meets the gate's bar and was not promoted

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.gpu, self.matrix, self.id)


def _folder(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).parts[0]
    except (ValueError, IndexError):
        return str(path.parent)


def evidence_runs(
    results: Sequence[tuple[Path, Result]],
    root: Path,
    baseline_keys: Iterable[tuple[str, str, str]],
    config: GateConfig,
) -> list[EvidenceRun]:
    """One line per run found under the evidence folder `root` whose (generation, matrix, id) has no baseline
    (`baseline_keys`), by GPU, model, matrix, cell, then folder. A baseline's own raw run is left out: it is shown
    as the baseline."""
    have = set(baseline_keys)
    out = []
    for path, r in results:
        if (r.gpu, r.matrix, r.id) in have:
            continue
        cell = config.for_cell(r.id)
        why = refusals([r], allow_failed=False, min_samples=required_samples(cell.throughput), sentinel=cell.sentinel)
        steps = r.measured_steps()
        out.append(
            EvidenceRun(
                gpu=r.gpu,
                model=r.model,
                n_gpus=r.n_gpus,
                backend=r.backend,
                matrix=r.matrix,
                id=r.id,
                profile=r.profile,
                status=r.status,
                folder=_folder(path, root),
                measured_steps=len(steps),
                tokens_per_s=median([s.throughput for s in steps]),
                s_per_step=median([s.time_per_step for s in steps]),
                nvml_gib=r.peak_memory_worst_gb,
                predicted_gib=r.predicted_memory_gb,
                host_gib=r.host_peak_memory_gb,
                predicted_host_gib=r.predicted_host_memory_gb,
                why_not=tuple(w.short() for w in why),
            )
        )
    return sorted(out, key=lambda e: (e.gpu, e.model, e.matrix, e.id, e.folder))
