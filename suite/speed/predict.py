"""Planned cells with their predicted speed: seconds per step, tokens/s/GPU, the ratio to the matrix's
reference cell, and the wall time of the profile's whole run, so the cells a GPU's time should go to, and
whether each fits a window, are known before it is spent."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from suite.errors import InputError
from suite.memory.calibration import Calibration, default_calibration
from suite.memory.settings import settings_from_cell
from suite.speed.constants import Constants, default_constants
from suite.speed.model import SpeedPrediction, predict_speed


@dataclass(frozen=True)
class CellSpeed:
    matrix: str
    id: str
    memory_status: str  # the planner's: ok, predicted-oom, predicted-host-oom, ...
    is_reference: bool
    total_steps: int
    prediction: SpeedPrediction | None  # None: the model covers no such cell (reason says why)
    vs_reference: float | None  # tokens/s/GPU over the reference cell's
    reason: str | None = None

    @property
    def run_s(self) -> float | None:
        return self.prediction.run_s(self.total_steps) if self.prediction else None

    def fits(self, window_s: float) -> bool:
        return self.run_s is not None and self.run_s <= window_s


def predict_cells(
    cells: Iterable[Any], constants: Constants | None = None, calibration: Calibration | None = None
) -> list[CellSpeed]:
    """Every cell, fastest predicted first (cells without a prediction last, in plan order)."""
    k = constants or default_constants()
    c = calibration or default_calibration()
    out: list[tuple[Any, SpeedPrediction | None, str | None]] = []
    for cell in cells:
        if cell.backend != "fsdp":
            out.append((cell, None, f"the speed model covers FSDP cells, not {cell.backend}"))
            continue
        if cell.n_gpus > k.max_gpus:
            out.append(
                (cell, None, f"the speed model is fitted on runs of at most {k.max_gpus} GPU(s), not {cell.n_gpus}")
            )
            continue
        try:
            out.append((cell, predict_speed(settings_from_cell(cell), constants=k, calibration=c), None))
        except InputError as exc:
            out.append((cell, None, str(exc)))
    # a reference in another matrix (`reference_matrix`) counts where that matrix is predicted alongside
    ref_tps = {(cell.matrix, cell.id): p.tokens_per_s_per_gpu for cell, p, _ in out if p}
    rows = []
    for cell, p, reason in out:
        ref_key = (cell.reference_matrix or cell.matrix, cell.reference)
        ref = ref_tps.get(ref_key) if cell.reference else None
        rows.append(
            CellSpeed(
                matrix=cell.matrix,
                id=cell.id,
                memory_status=str(cell.status),
                is_reference=cell.reference == cell.id and not cell.reference_matrix,
                total_steps=int(cell.total_steps),
                prediction=p,
                vs_reference=p.tokens_per_s_per_gpu / ref if (p and ref) else None,
                reason=reason,
            )
        )
    return sorted(rows, key=lambda r: -(r.prediction.tokens_per_s_per_gpu if r.prediction else -1.0))
