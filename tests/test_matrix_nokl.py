"""h200-1gpu-7b-nokl.toml: the KL loss as an axis next to a raw verl key (bypass); a cell without the KL loss
plans no reference pass, its memory prediction is its KL twin's (with LoRA the reference is the actor anyway),
and the committed predictions are what the planner says today."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.matrix.load import load_matrix
from suite.memory.predict import annotate_cells
from suite.plan.planner import plan_matrix

ROOT = Path(__file__).resolve().parents[1]
MATRIX = ROOT / "suite" / "matrices" / "h200-1gpu-7b-nokl.toml"
PREDICTIONS = ROOT / "baselines" / "evidence" / "predictions" / "h200-1gpu-7b-nokl.txt"
BYPASS = "algorithm.rollout_correction.bypass_mode"
KL = "actor_rollout_ref.actor.use_kl_loss"


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> list:
    out = tmp_path_factory.mktemp("nokl")
    return annotate_cells(plan_matrix(load_matrix(MATRIX), "bench", out_dir=out, validate_with_verl=False))


def test_kl_loss_is_an_axis_with_its_own_id_part(cells: list) -> None:
    # 16 ok when the predictions were committed; bypass with the KL loss is refused since it crashed
    assert len(cells) == 24 and sum(c.status == "ok" for c in cells) == 12
    refused = {c.id for c in cells if c.status == "invalid"}
    assert refused == {c.id for c in cells if c.setting(BYPASS) and c.setting(KL)}
    assert all("bypass-lora-ref-first" in (c.reason or "") for c in cells if c.id in refused)
    for c in cells:
        kl = c.setting(KL)
        assert kl in (True, False)
        assert c.id.endswith("-klloss") is kl and c.id.endswith("-noklloss") is (not kl)
        assert f"{KL}={kl}" in c.argv and "algorithm.use_kl_in_reward=False" in c.argv
        assert c.setting(BYPASS) is ("-bm-" in c.id)
        assert c.setting("actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu") == 15


def test_reference_is_the_recipe_with_its_kl_loss(cells: list) -> None:
    ref = next(c for c in cells if c.id == load_matrix(MATRIX).matrix.reference)
    assert ref.status == "ok" and ref.setting(KL) is True and ref.setting(BYPASS) is False
    assert ref.setting("actor_rollout_ref.actor.kl_loss_coef") == 0.001
    assert ref.setting("actor_rollout_ref.actor.fsdp_config.param_offload") is True
    assert ref.setting("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu") == 15


def test_dropping_the_kl_loss_does_not_change_the_memory_prediction(cells: list) -> None:
    by_twin: dict[str, set[tuple[float, float]]] = {}
    for c in cells:
        twin = c.id.removesuffix("-noklloss").removesuffix("-klloss")
        by_twin.setdefault(twin, set()).add((c.predicted_memory_gb, c.predicted_host_memory_gb))
    assert len(by_twin) == 12 and all(len(v) == 1 for v in by_twin.values())


def test_committed_predictions_match_the_planner(cells: list) -> None:
    lines = PREDICTIONS.read_text().splitlines()
    assert lines[0].startswith("# grpo-suite plan suite/matrices/h200-1gpu-7b-nokl.toml --predict-memory")
    for c in cells:
        row = next(line for line in lines if line.startswith(c.id + " "))
        # the numbers are the planner before its 2026-12-04 revision: the results carry them (test_evidence_heavy5)
        assert c.status in row or (c.status == "invalid" and c.setting(BYPASS) and c.setting(KL))
