"""LoRA cells ask verl for INFO logs: its adapter-sync line (the sentinel's evidence that the adapter reached
vLLM) is logged only at that level. Full fine-tuning cells keep verl's default."""

from __future__ import annotations

from pathlib import Path

from suite.matrix.load import load_matrix
from suite.plan.overrides import LORA_SYNC_LOG_ENV, cell_env
from suite.plan.planner import plan_matrix

MATRICES = Path(__file__).resolve().parents[1] / "suite" / "matrices"


def test_cell_env_sets_the_log_level_for_lora_only(tmp_path: Path) -> None:
    assert cell_env(tmp_path) == {"VERL_FILE_LOGGER_PATH": str(tmp_path / "metrics.jsonl")}
    assert cell_env(tmp_path, lora=True)[LORA_SYNC_LOG_ENV] == "INFO"
    assert LORA_SYNC_LOG_ENV == "VERL_LOGGING_LEVEL"


def test_planned_cells_of_a_mixed_matrix(tmp_path: Path) -> None:
    cells = plan_matrix(
        load_matrix(MATRICES / "h100-1gpu-graphs.toml"), "bench", out_dir=tmp_path, validate_with_verl=False
    )
    lora = [c for c in cells if c.id.startswith("lora")]
    full = [c for c in cells if c.id.startswith("full")]
    assert lora and full
    assert all(c.env.get("VERL_LOGGING_LEVEL") == "INFO" for c in lora)
    assert all("VERL_LOGGING_LEVEL" not in c.env for c in full)


def test_lora_rank_from_base_counts(tmp_path: Path) -> None:
    cells = plan_matrix(
        load_matrix(MATRICES / "h200-1gpu-7b-rmpad.toml"), "bench", out_dir=tmp_path, validate_with_verl=False
    )
    assert cells and all(c.env["VERL_LOGGING_LEVEL"] == "INFO" for c in cells)
