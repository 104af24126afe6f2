"""h200-1gpu-7b-fa.toml: the 7B recipe and its fastest recipe-objective cells planned again for one stack with
flash-attn's Triton cross entropy. The cells are the recipe's and the measured candidates' settings (the same argv
as in h200-1gpu-7b-nokl / -flex, apart from the id, the paths and the project names), its own reference, and the
committed predictions are what the planner says."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from evidence_helpers import BEFORE_GPU_FIT, assert_plan_committed, planned_cells, verl_settings

from suite.matrix.load import load_matrix
from suite.memory.calibration import default_calibration
from suite.memory.model import predict
from suite.memory.settings import settings_from_cell

ROOT = Path(__file__).resolve().parents[1]
MATRICES = ROOT / "suite" / "matrices"
MATRIX = MATRICES / "h200-1gpu-7b-fa.toml"
PREDICTIONS = ROOT / "baselines" / "evidence" / "predictions" / "h200-1gpu-7b-fa.txt"
RECIPE = "lora32-off_param+optimizer-tp1-rb45-attnsdpa-normpad-mnbt1536-mb15-gc"
# the cells' twins measured without flash-attn: (matrix, cell id)
TWINS = {
    RECIPE: ("h200-1gpu-7b-nokl", "lora32-off_param+optimizer-tp1-rb45-mnbt1536-mb15-gc-nobm-klloss"),
    "lora32-off_none-tp1-rb45-attnsdpa-normpad-mnbt8192-mb5-nogc": (
        "h200-1gpu-7b-nokl",
        "lora32-off_none-tp1-rb45-mnbt8192-mb5-nogc-nobm-klloss",
    ),
    "lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb5-nogc": (
        "h200-1gpu-7b-flex",
        "lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb5-nogc",
    ),
}


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> list:
    return planned_cells(MATRIX, tmp_path_factory.mktemp("fa"))


def test_the_cells_and_the_reference(cells: list) -> None:
    assert len(cells) == 7 and sum(c.status == "ok" for c in cells) == 5
    m = load_matrix(MATRIX).matrix
    assert m.reference == RECIPE and m.reference_matrix is None
    ref = next(c for c in cells if c.id == RECIPE)
    assert ref.status == "ok" and ref.setting("actor_rollout_ref.actor.fsdp_config.param_offload") is True
    assert ref.setting("actor_rollout_ref.actor.use_kl_loss") is True
    assert ref.setting("actor_rollout_ref.rollout.max_num_batched_tokens") == 1536
    assert {c.id for c in cells if c.status != "ok"} == {
        "lora32-off_none-tp1-rb45-attnsdpa-normpad-mnbt8192-mb15-nogc",
        "lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb15-nogc",
    }
    assert all(c.status == "predicted-oom" for c in cells if c.status != "ok")


@pytest.mark.parametrize("cell_id", sorted(TWINS))
def test_each_measured_twin_is_the_same_verl_config(cells: list, cell_id: str, tmp_path: Path) -> None:
    matrix, twin_id = TWINS[cell_id]
    twin = next(c for c in planned_cells(MATRICES / f"{matrix}.toml", tmp_path) if c.id == twin_id)
    cell = next(c for c in cells if c.id == cell_id)
    mine, theirs = verl_settings(cell.argv), verl_settings(twin.argv)
    # the nokl matrix states verl's default bypass_mode (False, verl/trainer/config/algorithm.py) as its axis value
    expected = {"algorithm.rollout_correction.bypass_mode=False"} if matrix == "h200-1gpu-7b-nokl" else set()
    assert theirs - mine == expected and mine - theirs == set()
    assert len(mine) > 40
    assert cell.predicted_host_memory_gb == twin.predicted_host_memory_gb
    # the same command: the GPU predictions differ only by the stack (the update's logits with flash-attn's cross
    # entropy), and are the twin's on the twin's stack
    assert cell.flash_attn is True and twin.flash_attn is None
    assert cell.predicted_memory_gb <= twin.predicted_memory_gb
    twin_stack = predict(replace(settings_from_cell(cell), flash_attn=False), default_calibration())
    assert twin_stack.peak_gib == pytest.approx(twin.predicted_memory_gb, abs=0.005)


def test_committed_predictions_match_the_planner(tmp_path: Path) -> None:
    """The committed file is the planner of its day, before the GPU fit of the old log-prob pass."""
    assert_plan_committed(
        planned_cells(MATRIX, tmp_path, calibration=BEFORE_GPU_FIT), PREDICTIONS, "h200-1gpu-7b-fa", "5 ok / 7 cells"
    )
    assert PREDICTIONS.read_text().splitlines()[0].endswith("committed before any of its cells ran")
