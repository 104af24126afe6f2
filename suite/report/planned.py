"""Matrices the report holds no result of, as the memory and speed planners see them: which cells the next GPU
time could run, which of them should run first, and why the ones that cannot (the reference above all) do not
fit. Predictions only, never a measurement."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.errors import InputError

# the order statuses are counted in, as a reader scans them: what could run first
_STATUS_ORDER = ("ok", "predicted-oom", "predicted-host-oom", "invalid")


@dataclass(frozen=True)
class PlannedCell:
    id: str
    status: str  # the planner's: ok, predicted-oom, predicted-host-oom, invalid
    reason: str | None
    gpu_gib: float | None  # predicted peak GPU memory, worst GPU
    host_gib: float | None  # predicted host RAM per node


@dataclass(frozen=True)
class PlannedSpeed:
    """The speed planner's prediction for one cell (suite/speed)."""

    id: str
    tokens_per_s_per_gpu: float
    step_s: float
    run_s: float  # the profile's whole run
    vs_reference: float | None  # over the reference cell's predicted tokens/s/GPU


@dataclass(frozen=True)
class PlannedMatrix:
    matrix: str
    gpu: str
    n_gpus: int
    model: str
    backend: str
    host_memory_gb: float | None  # the host RAM per node the matrix plans against
    statuses: tuple[tuple[str, int], ...]  # (status, cells), in _STATUS_ORDER then by name
    reference: PlannedCell | None
    reference_matrix: str | None  # where the reference is a cell of another matrix
    lightest: PlannedCell | None  # the cell that plans ok with the smallest predicted GPU peak
    # why the generation's pinned image cannot run the cells as planned (preflight.torch_gaps), however they fit
    image_gaps: tuple[str, ...] = ()
    # the ok cell with the most predicted tokens/s/GPU, and the reference's prediction (None: not predicted)
    fastest: PlannedSpeed | None = None
    reference_speed: PlannedSpeed | None = None

    @property
    def n_cells(self) -> int:
        return sum(n for _, n in self.statuses)

    @property
    def n_ok(self) -> int:
        return dict(self.statuses).get("ok", 0)


def _planned_cell(cell: Any) -> PlannedCell:
    return PlannedCell(
        id=cell.id,
        status=cell.status,
        reason=cell.reason,
        gpu_gib=cell.predicted_memory_gb,
        host_gib=cell.predicted_host_memory_gb,
    )


def _rank(status: str) -> tuple[int, str]:
    return (_STATUS_ORDER.index(status) if status in _STATUS_ORDER else len(_STATUS_ORDER), status)


def _speed(cell_id: str, speeds: Sequence[Any], ref_tps: float | None) -> PlannedSpeed | None:
    s = next((x for x in speeds if x.id == cell_id and x.prediction is not None), None)
    if s is None:
        return None
    tps = s.prediction.tokens_per_s_per_gpu
    return PlannedSpeed(cell_id, tps, s.prediction.step_s, s.run_s, tps / ref_tps if ref_tps else None)


def summarise(
    cells: Sequence[Any],
    reference: Any | None = None,
    reference_matrix: str | None = None,
    image_gaps: Sequence[str] = (),
    speeds: Sequence[Any] = (),
) -> PlannedMatrix:
    """One matrix's planned and predicted cells (suite.plan.cell.Cell) as a report line. `reference`: the
    reference cell, planned in `reference_matrix` where it is not one of `cells`. `speeds`: the speed planner's
    predictions (suite.speed.predict.CellSpeed) of the cells and the reference."""
    if not cells:
        raise InputError("a planned matrix has no cells", field="matrix")
    first = cells[0]
    counts = Counter(c.status for c in cells)
    ok = [c for c in cells if c.status == "ok" and c.predicted_memory_gb is not None]
    lightest = min(ok, key=lambda c: (c.predicted_memory_gb, c.predicted_host_memory_gb or 0.0, c.id), default=None)
    ref_pred = next(
        (x.prediction for x in speeds if reference is not None and x.id == reference.id and x.prediction), None
    )
    ref_tps = ref_pred.tokens_per_s_per_gpu if ref_pred else None
    ref_speed = _speed(reference.id, speeds, ref_tps) if reference is not None else None
    ok_ids = {c.id for c in cells if c.status == "ok"}
    ranked = sorted(
        (x for x in speeds if x.id in ok_ids and x.prediction is not None),
        key=lambda x: (-x.prediction.tokens_per_s_per_gpu, x.id),
    )
    fastest = _speed(ranked[0].id, ranked, ref_tps) if ranked else None
    return PlannedMatrix(
        matrix=first.matrix,
        gpu=first.gpu,
        n_gpus=first.n_gpus,
        model=first.model,
        backend=first.backend,
        host_memory_gb=first.host_memory_gb,
        statuses=tuple(sorted(counts.items(), key=lambda kv: _rank(kv[0]))),
        reference=_planned_cell(reference) if reference is not None else None,
        reference_matrix=reference_matrix,
        lightest=_planned_cell(lightest) if lightest is not None else None,
        image_gaps=tuple(image_gaps),
        fastest=fastest,
        reference_speed=ref_speed,
    )


def unmeasured(planned: Iterable[PlannedMatrix], measured_matrices: Iterable[str]) -> list[PlannedMatrix]:
    """The planned matrices none of whose cells the report holds a result of, by GPU, model, then matrix."""
    seen = set(measured_matrices)
    return sorted(
        (p for p in planned if p.matrix not in seen), key=lambda p: (p.gpu, p.model, p.n_gpus, p.backend, p.matrix)
    )


def matrix_files(paths: Iterable[Path]) -> list[Path]:
    """TOML files named, or found directly in folders named; a path that is neither is an error naming it."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(p.glob("*.toml"))
            if not found:
                raise InputError(f"{p}: no matrix (*.toml) in this folder", field="--plan")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{p}: no such matrix file or folder", field="--plan")
    return list(dict.fromkeys(files))


def plan_matrices(paths: Iterable[Path], profile: str = "bench") -> list[PlannedMatrix]:
    """Plan and predict every matrix under `paths` (CPU only, nothing written: cells' files would go to a
    folder that is never made). A reference held by another matrix is read from that matrix's cells where it
    is among `paths` (planned once), else planned on its own."""
    from suite.containers.lock import image_pin
    from suite.matrix import load_matrix
    from suite.memory.predict import annotate_cells
    from suite.plan.planner import plan_matrix, plan_reference_cell
    from suite.run.preflight import torch_gaps
    from suite.speed.predict import predict_cells

    nowhere = "/nonexistent/grpo-suite-report"  # never created: planning only names the cells' folders
    planned = []
    for path in matrix_files(paths):
        m = load_matrix(path)
        planned.append((m, annotate_cells(plan_matrix(m, profile, out_dir=nowhere, validate_with_verl=False))))
    by_name = {m.matrix.name: cells for m, cells in planned}
    torch_of = {gen: image_pin(gen, "torch") for gen in sorted({m.matrix.gpu for m, _ in planned})}
    out: list[PlannedMatrix] = []
    for m, cells in planned:
        ref_id, ref_matrix = m.matrix.reference, m.matrix.reference_matrix
        if ref_matrix is None:
            ref = next((c for c in cells if c.id == ref_id), None)
        elif ref_matrix in by_name:
            ref = next((c for c in by_name[ref_matrix] if c.id == ref_id), None)
        else:
            elsewhere = plan_reference_cell(m, profile, out_dir=nowhere)
            ref = annotate_cells([elsewhere])[0] if elsewhere is not None else None
        gaps = torch_gaps(cells, torch_of[m.matrix.gpu], m.matrix.gpu)
        speeds = predict_cells([*cells, *([] if ref is None or ref in cells else [ref])])
        out.append(summarise(cells, ref, ref_matrix, gaps, speeds))
    return out
