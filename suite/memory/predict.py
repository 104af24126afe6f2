"""The planner's entry points for plan and run: predict one cell, annotate a list of cells.

from suite.memory.predict import annotate_cells, predict_cell
cells = annotate_cells(plan_matrix(m, ...))       # `grpo-suite plan --predict-memory`
runnable = [c for c in cells if c.status == "ok"]  # `grpo-suite run --skip-predicted-oom`
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from suite.errors import InputError
from suite.memory.calibration import Calibration, default_calibration
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


def annotate_cells(cells: Iterable[Any], calibration: Calibration | None = None) -> list[Any]:
    """Cells with `predicted_memory_gb` and `memory_breakdown` set; an `ok` cell predicted not to fit becomes
    `status="predicted-oom"` with a reason built from the breakdown. Invalid cells keep their status (and get
    a prediction when their model is known); cells of unknown models are returned unchanged."""
    cal = calibration or default_calibration()
    out: list[Any] = []
    for cell in cells:
        try:
            pred = predict(settings_from_cell(cell), cal)
        except InputError:
            out.append(cell)  # e.g. a local model path with no known architecture: nothing to predict
            continue
        cell = replace(cell, predicted_memory_gb=round(pred.peak_gib, 2), memory_breakdown=pred.breakdown)
        if not pred.fits and cell.status == "ok":
            cell = replace(cell, status="predicted-oom", reason=f"memory: {pred.reason()}")
        out.append(cell)
    return out
