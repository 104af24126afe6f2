"""Cells whose command is the fake verl script (tests/fakes/fake_verl.py), laid out as the planner does."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from suite.plan.cell import LOGGER_KEY, VALIDATION_KEY, Cell
from suite.plan.hydra import Override, split_argv

FAKE_VERL = str(Path(__file__).with_name("fake_verl.py"))


def fake_cell(
    cell_id: str,
    args: list[str] | None = None,
    *,
    out_dir: Path | None = None,
    model: str = "fake/tiny",
    gpus_per_node: int = 1,
    status: str = "ok",
    reason: str | None = None,
    warmup_steps: int = 1,
    total_steps: int = 3,
    validation: bool = False,
) -> Cell:
    """A cell running the fake verl; with `out_dir`, its overrides/env point at `<out_dir>/<full_id>` like a
    planned cell (file logger env + validation_data_dir override)."""
    env: dict[str, str] = {}
    overrides: list[Override] = []
    stub = Cell(
        id=cell_id,
        matrix="fake",
        gpu="h100",
        gpus_per_node=gpus_per_node,
        nnodes=1,
        model=model,
        backend="fsdp",
        profile="bench",
        axes={"name": cell_id},
        status=status,  # type: ignore[arg-type]
        reason=reason,
        command=[sys.executable, FAKE_VERL, *(args or [])],
        env={},
        warmup_steps=warmup_steps,
        total_steps=total_steps,
    )
    if out_dir is not None:
        d = Path(out_dir) / stub.full_id
        env["VERL_FILE_LOGGER_PATH"] = str(d / "metrics.jsonl")
        overrides.append(Override(LOGGER_KEY, str(d / "metrics.jsonl"), "+"))
        if validation:
            overrides.append(Override(VALIDATION_KEY, str(d / "validation")))
    return dataclasses.replace(stub, overrides=tuple(overrides), env=env)


def with_argv(cell: Cell, argv: list[str]) -> Cell:
    """The same cell running a hand-written command line (read as a recorded command: program, then overrides)."""
    command, overrides = split_argv(argv)
    return dataclasses.replace(cell, command=command, overrides=overrides)
