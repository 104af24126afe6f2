"""GPU-slot packing: which GPUs each cell gets when several cells share one host (pure functions).

A host with G GPUs runs floor(G / g) cells needing g GPUs each at once, on disjoint GPUs. Cells take the
lowest free block of g GPUs, aligned to g where possible (GPU 0-1, 2-3, ... share an NVLink/PCIe switch
on most boards), so the same cell lands on the same GPUs from run to run.
"""

from __future__ import annotations

from collections.abc import Sequence

from suite.errors import InputError


def parse_parallel(value: str | int | None) -> int | None:
    """'auto' -> None (as many as fit), N -> N (>= 1)."""
    if value is None or value == "auto":
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InputError(f"bad value {value!r}; allowed: auto or an integer >= 1", field="--parallel") from None
    if n < 1:
        raise InputError(f"bad value {n}; allowed: auto or an integer >= 1", field="--parallel")
    return n


def parse_gpu_ids(value: str) -> list[int]:
    try:
        ids = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise InputError(
            f"bad value {value!r}; allowed: comma-separated GPU indices, e.g. 0,1,2,3", field="--gpus"
        ) from None
    if not ids or len(set(ids)) != len(ids) or min(ids) < 0:
        raise InputError(f"bad value {value!r}; allowed: distinct non-negative GPU indices", field="--gpus")
    return ids


def slot_count(host_gpus: int, gpus_per_cell: int, parallel: int | None) -> int:
    """How many cells needing `gpus_per_cell` run at once: floor(G/g), capped by --parallel N."""
    if gpus_per_cell < 1 or host_gpus < gpus_per_cell:
        return 0
    fit = host_gpus // gpus_per_cell
    return fit if parallel is None else max(1, min(fit, parallel))


def take_gpus(free: Sequence[int], all_gpus: Sequence[int], need: int) -> list[int] | None:
    """The GPUs a cell needing `need` gets from `free` (a subset of `all_gpus`), or None if they don't fit.

    Prefers an aligned block of consecutive positions in `all_gpus` (0-1, 2-3 for need=2), then any
    consecutive block, then the lowest free ones."""
    if need < 1 or len(free) < need:
        return None
    free_set = set(free)
    order = list(all_gpus)
    blocks = [order[i : i + need] for i in range(0, len(order) - need + 1)]
    aligned = [b for i, b in enumerate(blocks) if i % need == 0]
    for candidates in (aligned, blocks):
        for block in candidates:
            if all(g in free_set for g in block):
                return block
    return sorted(free, key=order.index)[:need]


def static_slots(all_gpus: Sequence[int], gpus_per_cell: int, parallel: int | None) -> list[list[int]]:
    """The disjoint GPU sets of a uniform matrix (every cell needs the same g)."""
    n = slot_count(len(all_gpus), gpus_per_cell, parallel)
    free = list(all_gpus)
    out = []
    for _ in range(n):
        block = take_gpus(free, all_gpus, gpus_per_cell)
        assert block is not None
        out.append(block)
        free = [g for g in free if g not in block]
    return out
