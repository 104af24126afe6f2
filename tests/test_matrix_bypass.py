"""h200-1gpu-7b-bypass.toml: a raw verl key (rollout-correction bypass) as an axis next to named ones, the
recipe kept as the reference, and the committed predictions are what the planner says today."""

from __future__ import annotations

from pathlib import Path

import pytest
from evidence_helpers import BEFORE_GPU_FIT

from suite.matrix.load import load_matrix
from suite.memory.predict import annotate_cells
from suite.plan.planner import plan_matrix

ROOT = Path(__file__).resolve().parents[1]
MATRIX = ROOT / "suite" / "matrices" / "h200-1gpu-7b-bypass.toml"
PREDICTIONS = ROOT / "baselines" / "evidence" / "predictions" / "h200-1gpu-7b-bypass.txt"
KEY = "algorithm.rollout_correction.bypass_mode"


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> list:
    out = tmp_path_factory.mktemp("bypass")
    return annotate_cells(plan_matrix(load_matrix(MATRIX), "bench", out_dir=out, validate_with_verl=False))


@pytest.fixture(scope="module")
def cells_then(tmp_path_factory: pytest.TempPathFactory) -> list:
    """The planner the committed file was made with, before the GPU fit of the old log-prob pass."""
    out = tmp_path_factory.mktemp("bypass-then")
    return annotate_cells(
        plan_matrix(load_matrix(MATRIX), "bench", out_dir=out, validate_with_verl=False), BEFORE_GPU_FIT
    )


def test_bypass_is_an_axis_with_its_own_id_part(cells: list, cells_then: list) -> None:
    # 16 ok when the predictions were committed; the bypass cells are refused since they crashed (all keep the KL
    # loss: with LoRA the reference pass comes first, see suite.plan.constraints._bypass_lora_ref)
    assert len(cells) == 24 and sum(c.status == "ok" for c in cells_then) == 8
    # since the GPU fit a log-prob micro batch of 45 (54,495 tokens: 15.4 GiB a logits copy) plans over the H200
    assert sum(c.status == "ok" for c in cells) == 4
    assert {c.id for c in cells_then if c.status == "ok"} - {c.id for c in cells if c.status == "ok"} == {
        c.id for c in cells_then if c.status == "ok" and c.id.endswith("-lpmb45")
    }
    assert all(c.status == "predicted-oom" for c in cells if c.id.endswith("-nobm-lpmb45"))
    for c in cells:
        on = c.setting(KEY)
        assert on in (True, False)
        assert (c.status == "invalid") is on and (not on or "bypass-lora-ref-first" in (c.reason or ""))
        assert ("-bm-" in c.id) is on and ("-nobm-" in c.id) is (not on)
        assert f"{KEY}={on}" in c.argv


def test_reference_is_the_recipe_and_candidates_sit_around_the_best_cell(cells: list) -> None:
    ref = next(c for c in cells if c.id == load_matrix(MATRIX).matrix.reference)
    assert ref.status == "ok" and ref.setting(KEY) is False
    assert ref.setting("actor_rollout_ref.actor.fsdp_config.param_offload") is True
    assert ref.setting("actor_rollout_ref.rollout.max_num_batched_tokens") == 1536
    assert ref.setting("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu") == 15
    no_offload = [c for c in cells if "off_none" in c.id]
    assert no_offload and all(c.setting("actor_rollout_ref.rollout.max_num_batched_tokens") == 8192 for c in no_offload)


def test_bypass_does_not_change_the_memory_prediction(cells: list) -> None:
    by_twin: dict[str, set[float]] = {}
    for c in cells:
        by_twin.setdefault(c.id.replace("-bm-", "-nobm-"), set()).add(c.predicted_memory_gb)
    assert all(len(v) == 1 for v in by_twin.values())


def test_committed_predictions_match_the_planner(cells_then: list) -> None:
    cells = cells_then
    lines = PREDICTIONS.read_text().splitlines()
    assert lines[0].startswith("# grpo-suite plan suite/matrices/h200-1gpu-7b-bypass.toml --predict-memory")
    for c in cells:
        row = next(line for line in lines if line.startswith(c.id + " ") or line.startswith(c.id + "  "))
        # the numbers are the planner before its 2026-12-04 revision: the result carries them (test_evidence_heavy4)
        # what the planner knew then: a bypass cell refused now was ok or predicted-oom in the committed file
        assert c.status in row or (c.status == "invalid" and c.setting(KEY) and ("ok" in row or "oom" in row))
