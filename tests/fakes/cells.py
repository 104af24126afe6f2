"""Cells whose command is the fake verl script (tests/fakes/fake_verl.py), laid out as the planner does."""

from __future__ import annotations

import sys
from pathlib import Path

from suite.plan.cell import Cell

FAKE_VERL = str(Path(__file__).with_name("fake_verl.py"))


def fake_cell(cell_id: str, args: list[str] | None = None, *, out_dir: Path | None = None,
              model: str = "fake/tiny", gpus_per_node: int = 1, status: str = "ok", reason: str | None = None,
              warmup_steps: int = 1, total_steps: int = 3, validation: bool = False) -> Cell:
    """A cell running the fake verl; with `out_dir`, its argv/env point at `<out_dir>/<full_id>` like a
    planned cell (file logger env + validation_data_dir override)."""
    argv = [sys.executable, FAKE_VERL, *(args or [])]
    env: dict[str, str] = {}
    stub = Cell(id=cell_id, matrix="fake", gpu="h100", gpus_per_node=gpus_per_node, nnodes=1, model=model,
                backend="fsdp", profile="bench", axes={"name": cell_id}, status=status,  # type: ignore[arg-type]
                reason=reason, argv=[], env={}, warmup_steps=warmup_steps, total_steps=total_steps)
    if out_dir is not None:
        d = Path(out_dir) / stub.full_id
        env["VERL_FILE_LOGGER_PATH"] = str(d / "metrics.jsonl")
        argv.append(f"+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={d / 'metrics.jsonl'}")
        if validation:
            argv.append(f"trainer.validation_data_dir={d / 'validation'}")
    return Cell(**{**stub.__dict__, "argv": argv, "env": env})
