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
    if any(c.predicted_memory_gb is not None for c in cells):
        from suite.gpus import GPUS

        limit = GPUS[cells[0].gpu].memory_gib if cells[0].gpu in GPUS else None
        head.insert(5, f"pred GiB/{limit:.0f}" if limit else "pred GiB")
        for row, c in zip(rows, cells, strict=True):
            row.insert(5, None if c.predicted_memory_gb is None else round(c.predicted_memory_gb, 1))
    first = cells[0] if cells else None
    title = (
        f"{first.matrix}: {first.model} on {first.n_gpus}x {first.gpu}, {first.backend}, profile {first.profile}"
        if first
        else "no cells"
    )
    return f"{title}\n{tabulate(rows, headers=head)}\n{ok} ok / {len(cells)} cells"


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."
