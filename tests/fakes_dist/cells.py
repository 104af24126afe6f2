"""Cells whose command is the distributed fake verl, laid out as the planner lays out a multi-node cell."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from suite.plan.cell import LOGGER_KEY, VALIDATION_KEY, Cell
from suite.plan.hydra import Override

FAKE_VERL_DIST = str(Path(__file__).with_name("fake_verl_dist.py"))


def dist_cell(
    cell_id: str,
    out_dir: Path,
    args: list[str] | None = None,
    *,
    nnodes: int = 2,
    gpus_per_node: int = 1,
    topology: tuple[int, int] | None = None,
) -> Cell:
    """`topology` overrides what the command tells verl (to test a command that disagrees with the matrix)."""
    stub = Cell(
        id=cell_id,
        matrix="dist",
        gpu="h100",
        gpus_per_node=gpus_per_node,
        nnodes=nnodes,
        model="fake/tiny",
        backend="fsdp",
        profile="bench",
        axes={"name": cell_id},
        status="ok",
        reason=None,
        command=[sys.executable, FAKE_VERL_DIST, *(args or [])],
        env={},
        warmup_steps=1,
        total_steps=3,
    )
    d = Path(out_dir) / stub.full_id
    n, g = topology or (nnodes, gpus_per_node)
    overrides = (
        Override("trainer.nnodes", n),
        Override("trainer.n_gpus_per_node", g),
        Override(VALIDATION_KEY, str(d / "validation")),
        Override(LOGGER_KEY, str(d / "metrics.jsonl"), "+"),
    )
    return dataclasses.replace(stub, overrides=overrides, env={"VERL_FILE_LOGGER_PATH": str(d / "metrics.jsonl")})
