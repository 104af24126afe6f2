"""Cells as a short text table (argv stays out: use --format json for the commands)."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate

from suite.gpus import GPUS
from suite.matrix.ids import BOOL_WORDS, axis_code, setting_name
from suite.plan.cell import Cell

# Column heads of the four named axes (extra axes use their id code, e.g. gmu, mnbt, eager).
HEADS = {"lora_rank": "lora", "offload": "offload", "tp": "tp", "rollout_batch": "rb"}


def ratio(value: float | None, reference: float | None) -> str | None:
    """`x1.42`: a number read against the reference cell's."""
    if value is None or not reference:
        return None
    return f"x{value / reference:.2f}"


def table(cells: Sequence[Cell], reference: Cell | None = None) -> str:
    """`reference`: the reference cell when it is another matrix's (`[matrix] reference_matrix`), planned."""
    first = cells[0] if cells else None
    axes = list(first.axes) if first else list(HEADS)
    head = ["id", *(_head(a) for a in axes)]
    rows: list[list[object]] = [[c.id, *(c.axes.get(a) for a in axes)] for c in cells]
    here = next((c for c in cells if first and c.id == first.reference and not first.reference_matrix), None)
    ref = here or reference
    if here is not None:
        for row, c in zip(rows, cells, strict=True):
            row[0] = f"{c.id} (ref)" if c is here else c.id
    if any(c.predicted_memory_gb is not None for c in cells):
        limit = GPUS[cells[0].gpu].memory_gib if cells[0].gpu in GPUS else None
        head.append(f"pred GiB/{limit:.0f}" if limit else "pred GiB")
        for row, c in zip(rows, cells, strict=True):
            row.append(None if c.predicted_memory_gb is None else round(c.predicted_memory_gb, 1))
        if ref is not None:
            head.append("vs ref")
            for row, c in zip(rows, cells, strict=True):
                row.append(ratio(c.predicted_memory_gb, ref.predicted_memory_gb))
    if any(c.predicted_host_memory_gb is not None for c in cells):
        host = cells[0].host_memory_gb
        head.append(f"host GiB/{host:.0f}" if host else "host GiB")
        for row, c in zip(rows, cells, strict=True):
            row.append(None if c.predicted_host_memory_gb is None else round(c.predicted_host_memory_gb, 1))
    head += ["status", "reason"]
    for row, c in zip(rows, cells, strict=True):
        row += [c.status, _clip(c.reason or "", 90)]
    ok = sum(c.status == "ok" for c in cells)
    title = (
        f"{first.matrix}: {first.model} on {first.n_gpus}x {first.gpu}, {first.backend}, profile {first.profile}"
        + (f", reference {first.reference}" if first.reference else "")
        + (f" of {first.reference_matrix}" if first.reference_matrix else "")
        if first
        else "no cells"
    )
    return f"{title}\n{tabulate(rows, headers=head)}\n{ok} ok / {len(cells)} cells"


def _head(axis: str) -> str:
    name = setting_name(axis)
    if axis in HEADS:
        return HEADS[axis]
    return BOOL_WORDS[name][0] if name in BOOL_WORDS else (axis_code(axis) or name)


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."
