"""h200-1gpu-14b-fa.toml: Qwen2.5-14B on one H200 on the flash-attn stack, the recipe against the 7B's fastest
settings without offload. The recipe plans over the host on torch 2.11.0 (pinned rounding); the candidates fit the
card, and their KV cache at gmu 0.5 nearly holds a step's rollout."""

from __future__ import annotations

import pytest
from evidence_helpers import BEFORE_FA_FIT, EVIDENCE, assert_plan_committed, planned_cells, verl_settings

from suite.matrix.load import load_matrix
from suite.memory.calibration import default_calibration
from suite.memory.model import vllm_budget
from suite.memory.predict import predict_cell
from suite.memory.settings import settings_from_cell

MATRIX = EVIDENCE.parents[1] / "suite" / "matrices" / "h200-1gpu-14b-fa.toml"
PREDICTIONS = EVIDENCE / "predictions" / "h200-1gpu-14b-fa.txt"
REF = "lora32-off_param+optimizer-tp1-rb45-gmu0.3-attnsdpa-normpad-mnbt1536-mb15-gc"
FAST = "lora32-off_none-tp1-rb45-gmu0.5-attnflex-rmpad-mnbt8192-mb3-nogc"
GMU = "actor_rollout_ref.rollout.gpu_memory_utilization"
MB = "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return {c.id: c for c in planned_cells(MATRIX, tmp_path_factory.mktemp("14bfa"))}


def test_seven_cells_the_recipe_and_six_candidates(cells) -> None:
    m = load_matrix(MATRIX).matrix
    assert (m.gpu, m.gpus_per_node, m.model, m.host_memory_gb, m.reference) == (
        "h200",
        1,
        "synthetic:qwen2.5-14b",
        125,
        REF,
    )
    assert len(cells) == 7 and REF in cells
    others = [c for i, c in cells.items() if i != REF]
    assert {c.id.split("-")[1] for c in others} == {"off_none"}
    assert {(c.setting(GMU), c.setting(MB)) for c in others} == {(g, mb) for g in (0.3, 0.5) for mb in (3, 5, 15)}
    for c in others:
        gc = c.setting("actor_rollout_ref.model.enable_gradient_checkpointing")
        assert gc is (c.setting(MB) == 15), c.id
        assert c.setting("actor_rollout_ref.model.use_remove_padding") is True, c.id


def test_the_recipe_keeps_the_7b_recipes_command_and_plans_over_the_host(cells, tmp_path) -> None:
    ref = cells[REF]
    assert ref.status == "predicted-host-oom" and "171.4 GiB > 0.95 x 125 GiB" in ref.reason
    assert "pinned rounding 61.6" in ref.reason
    # the 7B stack's recipe, same settings but for the model
    seven = next(
        c
        for c in planned_cells(MATRIX.with_name("h200-1gpu-7b-fa.toml"), tmp_path)
        if c.id == "lora32-off_param+optimizer-tp1-rb45-attnsdpa-normpad-mnbt1536-mb15-gc"
    )
    drop = ("actor_rollout_ref.model.path", "trainer.", "data.", "+ray_kwargs")
    mine = {s for s in verl_settings(ref.argv) if not s.startswith(drop)}
    theirs = {s for s in verl_settings(seven.argv) if not s.startswith(drop)}
    assert len(mine) > 40 and mine == theirs


def test_candidates_fit_the_card_and_gmu_sets_the_rollout_peak(cells) -> None:
    for i, c in cells.items():
        if i != REF:
            assert c.status == "ok" and c.predicted_memory_gb < 138.8 and c.predicted_host_memory_gb < 0.95 * 125, i
    fast = predict_cell(cells[FAST])
    assert (round(fast.peak_gib, 1), fast.phase) == (129.8, "rollout")
    slow = predict_cell(cells[FAST.replace("gmu0.5", "gmu0.3")])
    # 0.2 of the card's 140 GiB moves the rollout phase and nothing else
    assert fast.phase_totals()["rollout"] - slow.phase_totals()["rollout"] == pytest.approx(0.2 * 140, rel=0.02)
    assert fast.phase_totals()["actor_update"] == pytest.approx(slow.phase_totals()["actor_update"], abs=0.01)


def test_a_steps_rollout_nearly_fits_the_kv_cache_at_half_the_card(cells) -> None:
    def cache_tokens(cell_id: str) -> tuple[float, float]:
        s = settings_from_cell(cells[cell_id])
        vb = vllm_budget(s, default_calibration())
        per_token = vb.kv_needed / s.max_model_len
        return per_token, vb.kv_cache / per_token

    per_token, half = cache_tokens(FAST)
    assert per_token == 192 * 1024  # 48 layers x 8 KV heads x 128 x K and V x bf16
    assert 200_000 < half < 251_000  # a step's rollout: ~251,000 tokens
    _, low = cache_tokens(FAST.replace("gmu0.5", "gmu0.3"))
    assert low < 251_000 / 3


def test_committed_predictions_match_the_planner(tmp_path) -> None:
    """The committed file is the planner of its day, before the fit of the update where flash-attn is installed."""
    cells = planned_cells(MATRIX, tmp_path, calibration=BEFORE_FA_FIT)
    assert_plan_committed(cells, PREDICTIONS, "h200-1gpu-14b-fa", "6 ok / 7 cells")
    assert PREDICTIONS.read_text().splitlines()[0].endswith("committed before any of its cells ran")
