"""Bench cells read only the prompts their steps consume.

verl loads, tokenises and filters the whole train file before its dataloader exists (7,473 GSM8K rows; part of
the 64-76 s between Ray's start and "dataloader initialized" measured on H200 hosts), and a bench run of N
steps uses N x rollout_batch of them. The plan points such cells at `<cell dir>/inputs/*.parquet` and names
the rows each needs; `write_subsets` cuts them from the full files on the machine that runs the cells."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypedDict

from suite.errors import InputError


class Subset(TypedDict):
    source: str  # the full parquet file
    rows: int  # its first rows to keep


def train_rows(total_steps: int, rollout_batch: int) -> int:
    # one spare batch: verl's dataloader drops the last incomplete batch, and overlong prompts are filtered out
    return (total_steps + 1) * rollout_batch


def write_subset(dest: str | Path, spec: Subset) -> Path:
    """The first `rows` rows of `source` as `dest` (atomic; all rows when the source holds fewer)."""
    import pyarrow.parquet as pq

    src, out = Path(spec["source"]), Path(dest)
    if not src.is_file():
        raise InputError(
            f"dataset file not found: {src} (build it with `grpo-suite data gsm8k` or pass --data-root)",
            field="data.train_files",
        )
    table = pq.read_table(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    pq.write_table(table.slice(0, min(int(spec["rows"]), table.num_rows)), tmp)
    os.replace(tmp, out)
    return out


def write_subsets(inputs: Iterable[Mapping[str, Subset]]) -> list[Path]:
    """Every cell's subsets (a destination shared by cells with the same spec is written once)."""
    done: dict[str, Subset] = {}
    for spec_map in inputs:
        for dest, spec in spec_map.items():
            if done.get(dest) != spec:
                write_subset(dest, spec)
                done[dest] = spec
    return [Path(d) for d in done]
