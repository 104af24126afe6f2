"""Which of a run's cells to start, in which order, when GPU time is short (`grpo-suite run --order speed
--time-budget S`): the reference first where it is predicted to fit memory (every ratio is read against it),
then the other cells predicted to fit, fastest predicted first, then the rest in plan order; under a budget, each cell whose predicted wall
time still fits what is left, in that order (one cell at a time: packed cells only finish sooner)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from suite.errors import InputError
from suite.speed.predict import CellSpeed

ORDERS = ("plan", "speed")


@dataclass(frozen=True)
class LeftOut:
    cell: Any
    reason: str


@dataclass(frozen=True)
class Schedule:
    start: list[Any]  # the cells to hand to the runner, in this order
    left_out: list[LeftOut]  # not started: run them later (`--resume` does)
    predicted_s: float  # the predicted wall time of `start`, one cell after another


def schedule(
    cells: Sequence[Any], speeds: Sequence[CellSpeed], *, order: str = "plan", budget_s: float | None = None
) -> Schedule:
    if order not in ORDERS:
        raise InputError(f"bad value {order!r}; allowed: {', '.join(ORDERS)}", field="--order")
    if budget_s is not None and budget_s <= 0:
        raise InputError(f"bad value {budget_s}; allowed: seconds > 0", field="--time-budget")
    by_id = {(s.matrix, s.id): s for s in speeds}
    plan_index = {id(c): i for i, c in enumerate(cells)}

    def speed_of(c: Any) -> CellSpeed | None:
        return by_id.get((c.matrix, c.id))

    def key(c: Any) -> tuple[int, int, float, int]:
        s = speed_of(c)
        tps = s.prediction.tokens_per_s_per_gpu if s and s.prediction else None
        return (
            0 if (c.reference == c.id and c.status == "ok") else 1,
            0 if (c.status == "ok" and tps is not None) else 1,
            -(tps or 0.0),
            plan_index[id(c)],
        )

    ordered = sorted(cells, key=key) if order == "speed" else list(cells)
    if budget_s is None:
        total = sum(s.run_s or 0.0 for c in ordered if (s := speed_of(c)) is not None)
        return Schedule(ordered, [], total)
    start: list[Any] = []
    left: list[LeftOut] = []
    used = 0.0
    for c in ordered:
        if c.status == "invalid":  # recorded, never run: costs nothing
            start.append(c)
            continue
        s = speed_of(c)
        run_s = s.run_s if s else None
        if run_s is None:
            why = s.reason if s and s.reason else "no prediction"
            left.append(LeftOut(c, f"no predicted wall time to budget ({why})"))
        elif used + run_s > budget_s:
            left.append(LeftOut(c, f"predicted {run_s:.0f} s, {budget_s - used:.0f} s of the budget left"))
        else:
            start.append(c)
            used += run_s
    return Schedule(start, left, used)
