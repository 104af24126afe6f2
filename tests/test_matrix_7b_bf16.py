"""h100-1gpu-7b-bf16.toml: the fix for the failed 14B sentinel (RoPE's frequencies kept fp32 in a bf16 actor)
tested at 7B, where the answer is known. Its two cells are the measured fastest 7B cell's command with the
actor's stored dtype spelt out, bf16 (with the fix) and fp32 (verl's default): an A/B on one host."""

from __future__ import annotations

from pathlib import Path

import pytest
from evidence_helpers import EVIDENCE, assert_plan_committed, planned_cells, verl_settings

from suite.gate.objective import command_objective, objective_differences
from suite.matrix.load import load_matrix
from suite.memory.predict import predict_cell
from suite.plan.cell import EXTERNAL_MODULES_KEY, ROPE_FP32_MODULE
from suite.results.io import read_result

ROOT = Path(__file__).resolve().parents[1]
MATRIX = ROOT / "suite" / "matrices" / "h100-1gpu-7b-bf16.toml"
PREDICTIONS = EVIDENCE / "predictions" / "h100-1gpu-7b-bf16.txt"
BASE = "lora32-off_none-tp1-rb45-gmu0.4-attnflex-rmpad-mnbt8192-mb5-nogc"
MEASURED = EVIDENCE / "2026-12-07-h100-heavy" / "h100-1gpu-7b-fa-mb5" / BASE
RECIPE = EVIDENCE / "2026-12-06-h100-heavy-2" / "h100-1gpu-7b-fa"
DTYPE = "actor_rollout_ref.actor.fsdp_config.model_dtype"


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> list:
    return planned_cells(MATRIX, tmp_path_factory.mktemp("bf16"))


def test_bf16_runs_first_and_fp32_is_its_control(cells) -> None:
    assert [c.id for c in cells] == [f"{BASE}-mdbf16", f"{BASE}-mdfp32"]
    assert [c.setting(DTYPE) for c in cells] == ["bf16", "fp32"]
    m = load_matrix(MATRIX).matrix
    fa = load_matrix(MATRIX.with_name("h100-1gpu-7b-fa.toml")).matrix
    assert (m.reference, m.reference_matrix) == (fa.reference, "h100-1gpu-7b-fa")
    assert (m.gpu, m.gpus_per_node, m.model, m.flash_attn) == ("h100", 1, "synthetic:qwen2.5-7b", True)


def test_each_cell_is_the_measured_cell_with_only_the_dtype_spelt_out(cells) -> None:
    theirs = verl_settings(read_result(MEASURED / "result.json").provenance.argv)
    for c, dtype in zip(cells, ("bf16", "fp32"), strict=True):
        mine = verl_settings(c.argv)
        assert mine - theirs == {f"{DTYPE}={dtype}"} and theirs - mine == set(), c.id
    # the bf16 actor's workers keep RoPE's frequencies in fp32; the fp32 control runs verl as the measured cell did
    assert [c.setting(EXTERNAL_MODULES_KEY) for c in cells] == [ROPE_FP32_MODULE, None]


def test_only_the_bf16_cell_has_another_objective_than_the_recipe(cells) -> None:
    recipe_dir = next(p for p in RECIPE.iterdir() if p.name.endswith("-mb15-gc"))
    recipe = command_objective(read_result(recipe_dir / "result.json").provenance.argv)
    bf16, fp32 = (objective_differences(command_objective(c.argv), recipe) for c in cells)
    assert bf16 == (DTYPE,)
    assert fp32 == ()  # fp32 is verl's default for a training actor: the recipe's objective


def test_the_fp32_control_plans_as_the_measured_cell_and_bf16_frees_the_base_copy(tmp_path: Path, cells) -> None:
    bf16, fp32 = (predict_cell(c) for c in cells)
    (mb5,) = planned_cells(MATRIX.with_name("h100-1gpu-7b-fa-mb5.toml"), tmp_path)
    assert fp32.peak_gib == pytest.approx(predict_cell(mb5).peak_gib)
    assert (round(bf16.peak_gib, 1), round(fp32.peak_gib, 1)) == (60.3, 75.1)
    # the stored base halves: 7.6e9 weights x 2 bytes fewer (GiB), give or take the adapters and their grads
    assert 13.5 < fp32.peak_gib - bf16.peak_gib < 15.5
    assert all(c.status == "ok" for c in cells)


def test_committed_predictions_match_the_planner(cells) -> None:
    assert_plan_committed(cells, PREDICTIONS, "h100-1gpu-7b-bf16", "2 ok / 2 cells")
    assert PREDICTIONS.read_text().splitlines()[0].endswith("committed before any of its cells ran")
