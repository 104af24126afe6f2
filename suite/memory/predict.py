"""The planner's entry points for plan and run: predict one cell (GPU and host memory), annotate a list of cells.

from suite.memory.predict import annotate_cells, predict_cell, predict_cell_host
cells = annotate_cells(plan_matrix(m, ...))       # `grpo-suite plan --predict-memory`
runnable = [c for c in cells if c.status == "ok"]  # `grpo-suite run --skip-predicted-oom`
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from suite.errors import InputError
from suite.memory.calibration import Calibration, default_calibration
from suite.memory.host import HostPrediction, predict_host
from suite.memory.model import Prediction, predict
from suite.memory.settings import MemorySettings, settings_from_cell, settings_from_overrides


def predict_settings(
    settings: MemorySettings | Mapping[str, Any], calibration: Calibration | None = None
) -> Prediction:
    """A prediction from `MemorySettings`, or from a plain dict of verl Hydra keys plus `model`, `gpu`,
    `n_gpus` (and optionally `backend`), e.g. {"model": "synthetic:qwen2.5-0.5b", "gpu": "h100", "n_gpus": 1,
    "actor_rollout_ref.model.lora_rank": 8, ...}."""
    if not isinstance(settings, MemorySettings):
        d = dict(settings)
        try:
            model, gpu, n_gpus = d.pop("model"), d.pop("gpu"), int(d.pop("n_gpus"))
        except KeyError as exc:
            raise InputError(f"settings need {exc.args[0]!r} (with model, gpu, n_gpus)") from None
        settings = settings_from_overrides(d, model=model, gpu=gpu, n_gpus=n_gpus, backend=d.pop("backend", None))
    return predict(settings, calibration or default_calibration())


def predict_cell(cell: Any, calibration: Calibration | None = None) -> Prediction:
    """A planned `Cell` (its verl argv, model, gpu, n_gpus, backend) -> Prediction(peak_gib, breakdown, phase,
    fits, ...)."""
    return predict(settings_from_cell(cell), calibration or default_calibration())


def predict_cell_host(cell: Any, calibration: Calibration | None = None) -> HostPrediction:
    """A planned `Cell` -> HostPrediction(peak_gib per node, phase, breakdown, fits(host_gib), reason(host_gib))."""
    return predict_host(settings_from_cell(cell), calibration or default_calibration())


def cell_host_gib(cell: Any) -> float:
    """The host RAM per node a cell plans against: its own `host_memory_gb` (the planner fills it from
    `[matrix] host_memory_gb`), else its generation's usual server (suite/gpus.py)."""
    from suite.gpus import get_gpu

    own = getattr(cell, "host_memory_gb", None)
    return float(own) if own else get_gpu(cell.gpu).host_memory_gib


def clash_reason(clashes: tuple[tuple[int, ...], ...], settings: MemorySettings) -> str:
    """Why a cell's pinned-allocator settings are refused, with the sizes and the ways out."""
    mib = "; ".join(" and ".join(f"{b / 2**20:.1f}" for b in group) + " MiB" for group in clashes)
    return (
        f"pinned_max_round_threshold_mb:{settings.pinned_round_max_mib:g} (pinned_round_max_mb): torch's host allocator would cache unrounded "
        f"pinned blocks of different sizes in one size class ({mib}) and can hand the smaller to a larger request "
        "(a heap overflow, pytorch #192722); choose a threshold above these sizes, or also set "
        "pinned_max_cached_size_mb no higher than pinned_max_round_threshold_mb (large blocks neither rounded nor cached)"
    )


def annotate_cells(cells: Iterable[Any], calibration: Calibration | None = None) -> list[Any]:
    """Cells with `predicted_memory_gb`, `memory_breakdown` (GPU) and `predicted_host_memory_gb`,
    `host_memory_breakdown` (host RAM per node) set. An `ok` cell predicted not to fit its GPUs becomes
    `status="predicted-oom"` (the reason also names the host when that is over too); one that fits its GPUs but
    not `memory_usage_threshold` (0.95) x `host_memory_gb` becomes `predicted-host-oom`. Invalid cells keep their
    status (and get predictions when their model is known); cells of unknown models are returned unchanged."""
    cal = calibration or default_calibration()
    out: list[Any] = []
    for cell in cells:
        try:
            settings = settings_from_cell(cell)
        except InputError:
            out.append(cell)  # e.g. a local model path with no known architecture: nothing to predict
            continue
        pred, host = predict(settings, cal), predict_host(settings, cal)
        host_gib = cell_host_gib(cell)
        cell = replace(
            cell,
            predicted_memory_gb=round(pred.peak_gib, 2),
            memory_breakdown=pred.breakdown,
            predicted_host_memory_gb=round(host.peak_gib, 2),
            host_memory_breakdown=host.breakdown,
            host_memory_gb=host_gib,
        )
        if cell.status == "ok" and host.pinned_clashes:
            cell = replace(cell, status="invalid", reason=clash_reason(host.pinned_clashes, settings))
        elif cell.status == "ok" and not pred.fits:
            extra = "" if host.fits(host_gib) else f"; {host.reason(host_gib)}"
            cell = replace(cell, status="predicted-oom", reason=f"memory: {pred.reason()}{extra}")
        elif cell.status == "ok" and not host.fits(host_gib):
            cell = replace(cell, status="predicted-host-oom", reason=host.reason(host_gib))
        out.append(cell)
    return out
