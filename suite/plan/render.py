"""Cells as a short text table (argv stays out: use --format json for the commands)."""

from __future__ import annotations

from collections.abc import Sequence

from suite.plan.cell import Cell


def table(cells: Sequence[Cell]) -> str:
    from tabulate import tabulate

    rows = [
        [
            c.id,
            c.axes.get("lora_rank"),
            c.axes.get("offload"),
            c.axes.get("tp"),
            c.axes.get("rollout_batch"),
            c.status,
            _clip(c.reason or "", 90),
        ]
        for c in cells
    ]
    ok = sum(c.status == "ok" for c in cells)
    head = ["id", "lora", "offload", "tp", "rb", "status", "reason"]
    first = cells[0] if cells else None
    title = (
        f"{first.matrix}: {first.model} on {first.n_gpus}x {first.gpu}, {first.backend}, profile {first.profile}"
        if first
        else "no cells"
    )
    return f"{title}\n{tabulate(rows, headers=head)}\n{ok} ok / {len(cells)} cells"


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."
