"""FSDP against Megatron: the same cell (generation, model, GPU count, axes) measured on both backends.

Cell ids carry the backend (`<model>/<gen>x<n>/<backend>/<axes>`), so twins are found by everything else.
Where a backend holds the cell in several matrices (other [base] settings), its rows are paired in matrix order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from suite.report.table import ReportRow

BACKENDS = ("fsdp", "megatron")


@dataclass(frozen=True)
class BackendPair:
    gpu: str
    model: str
    n_gpus: int
    cell: str
    fsdp: ReportRow
    megatron: ReportRow

    @property
    def ratio(self) -> float | None:
        """Megatron's median tokens/s/GPU over FSDP's (> 1: Megatron faster)."""
        a, b = self.fsdp.throughput, self.megatron.throughput
        return b / a if a and b is not None else None


def backend_pairs(rows: Sequence[ReportRow]) -> list[BackendPair]:
    by_key: dict[tuple[str, str, int, str], dict[str, list[ReportRow]]] = {}
    for r in rows:
        if r.backend in BACKENDS:
            by_key.setdefault((r.gpu, r.model, r.n_gpus, r.cell), {}).setdefault(r.backend, []).append(r)
    out = []
    for (gpu, model, n, cell), per in sorted(by_key.items()):
        fs = sorted(per.get("fsdp", []), key=lambda r: r.matrix)
        ms = sorted(per.get("megatron", []), key=lambda r: r.matrix)
        for i, m in enumerate(ms):
            if fs:
                out.append(BackendPair(gpu, model, n, cell, fs[min(i, len(fs) - 1)], m))
    return out
