"""Before cells run: plan the matrix, build missing models / datasets, find the host's GPUs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from suite.data.paths import dataset_files
from suite.data.subset import write_subsets
from suite.errors import InputError
from suite.gpus import generation_of
from suite.matrix import load_matrix
from suite.memory.predict import annotate_cells
from suite.plan.cell import LOGGER_ENV, Cell
from suite.plan.planner import plan_matrix
from suite.run import slots as slotting
from suite.run.cellio import cell_from_dict, read_json
from suite.telemetry.nvml import device_count, gpu_info, nvml_session


def load_plan(path: str | Path) -> list[Cell]:
    """Cells from a plan JSON (`grpo-suite plan --format json`): a reviewed plan runs exactly as printed."""
    p = Path(path)
    data = read_json(p)
    if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
        raise InputError("expected a JSON list of cells (grpo-suite plan --format json)", source=str(p))
    return [cell_from_dict(x, source=f"{p}[{i}]") for i, x in enumerate(data)]


def plan(
    matrix_path: str, profile: str, out_dir: Path, *, data_root: str | None = None, verl_check: bool = True
) -> tuple[Any, list[Cell]]:
    """(matrix, cells) from a matrix TOML, or (None, cells) from a plan JSON. A plan JSON's cells keep
    the paths they were planned with (their argv names them), so `--out` must match the plan's."""
    if str(matrix_path).endswith(".json"):
        cells = load_plan(matrix_path)
        check_plan_out(cells, out_dir, source=str(matrix_path))
        return None, cells
    matrix = load_matrix(matrix_path)
    cells = plan_matrix(matrix, profile, out_dir=out_dir, data_root=data_root, validate_with_verl=verl_check)
    return matrix, predict_memory(cells)


def planned_out_dir(cell: Cell) -> Path | None:
    """The --out a planned cell was made with: its metrics file sits in `<out>/<full_id>/`."""
    logger = cell.env.get(LOGGER_ENV)
    if not logger:
        return None
    cell_dir = Path(logger).parent
    parts = Path(cell.full_id).parts
    if cell_dir.parts[-len(parts) :] != parts:
        return None
    return Path(*cell_dir.parts[: -len(parts)])


def check_plan_out(cells: Sequence[Cell], out_dir: Path, *, source: str) -> None:
    """A plan's verl arguments name its own --out (metrics file, dataset subsets, checkpoints): run elsewhere,
    a cell would write those into the planned folder, over another run's files, while its result lands in
    `out_dir`. Refused before anything starts."""
    planned = {d for c in cells if (d := planned_out_dir(c)) is not None}
    if planned and planned != {Path(out_dir)}:
        names = ", ".join(sorted(map(str, planned)))
        raise InputError(
            f"the plan's cells were made with --out {names} (their verl arguments name it), not {out_dir}; "
            "run with that --out, or plan again with the new one",
            field="--out",
            source=source,
        )


def predict_memory(cells: list[Cell]) -> list[Cell]:
    """Every result carries the planner's prediction beside the measurement; cells predicted not to fit
    become `predicted-oom` (run anyway unless --skip-predicted-oom: a prediction is not a measurement)."""
    return annotate_cells(cells)


def ensure_models(models: Sequence[str]) -> None:
    for model in dict.fromkeys(models):
        try:  # optional in a build without the model builder: the error says which model could not be made
            from suite.models.build import ensure_model
        except ImportError as exc:
            raise InputError(
                f"cannot prepare model {model!r}: suite.models.build is not available ({exc})", field="matrix.model"
            ) from None
        ensure_model(model)


def ensure_inputs(matrix: Any, cells: Sequence[Cell], *, data_root: str | None = None) -> None:
    """Build the cells' models (synthetic:<arch>) and the matrix's dataset when missing, then the cells' own
    input files (the bench profile's dataset subsets); once per run."""
    ensure_models([c.model for c in cells if c.status != "invalid"])
    if matrix is not None:
        ensure_dataset_files(matrix, data_root)
    write_subsets(c.inputs for c in cells if c.status != "invalid")  # type: ignore[misc]


def ensure_dataset_files(matrix: Any, data_root: str | None) -> None:
    mx = matrix.matrix
    dataset = getattr(mx, "dataset", None)
    if dataset:
        train, test = dataset_files(dataset, data_root)
        if Path(train).exists() and Path(test).exists():
            return
        try:  # optional like the model builder above
            from suite.data.build import ensure_dataset
        except ImportError as exc:
            raise InputError(
                f"dataset {dataset!r} missing ({train}) and suite.data.build is not available "
                f"to make it ({exc}); pass --data-root",
                field="matrix.dataset",
            ) from None
        ensure_dataset(dataset, root=data_root)


def generation_note(planned: Sequence[str], device_name: str | None) -> str | None:
    """A warning when the host's GPUs are not the generation the cells were planned for (pure): their
    results are filed under the generation they ran on, and the memory plan was made for another card."""
    measured = generation_of(device_name) if device_name else None
    others = sorted(set(planned) - {measured}) if measured else []
    if not others:
        return None
    return (
        f"cells planned for {', '.join(others)} run on {device_name} ({measured}): results are filed under "
        f"{measured}, and memory predictions were made for the planned card"
    )


def host_device_name(gpu_ids: Sequence[int] | None) -> str | None:
    """NVML name of the first GPU the cells will use (None without NVML)."""
    with nvml_session() as nvml:
        info = gpu_info(nvml, list(gpu_ids)[:1] if gpu_ids else None)
    return info.name if info else None


def host_gpu_ids() -> list[int] | None:
    """GPU indices this host offers: integers of CUDA_VISIBLE_DEVICES if set, else every NVML device.
    None when unknown (no NVML): cells then run one at a time without pinning."""
    with nvml_session() as nvml:
        if nvml is None:
            return None
        count = device_count(nvml)
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        ids = [int(x) for x in cvd.split(",") if x.strip().isdigit() and int(x) < count]
        return ids or None
    return list(range(count))


def max_slots(cells: Sequence[Cell], gpu_ids: list[int] | None, parallel: int | None) -> int:
    if gpu_ids is None:
        return 1
    return max((slotting.slot_count(len(gpu_ids), c.gpus_per_node, parallel) for c in cells), default=1) or 1
