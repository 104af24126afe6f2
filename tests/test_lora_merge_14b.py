"""The 14B recipe with its LoRA merged into the base weights at every weight sync (verl `model.lora.merge`),
matrix h200-1gpu-14b-merge: read against the recipe of h200-1gpu-14b-pinned, the same work, and planned with
vLLM sleeping at level 2, so the host holds no copy of the base weights."""

from __future__ import annotations

from pathlib import Path

import pytest
from evidence_helpers import assert_plan_committed

from suite.gate.objective import command_objective, objective_differences
from suite.matrix.load import load_matrix
from suite.memory.host import predict_host
from suite.memory.predict import annotate_cells
from suite.memory.settings import settings_from_cell
from suite.plan.planner import plan_matrix

ROOT = Path(__file__).resolve().parents[1]
MATRICES = ROOT / "suite" / "matrices"
MERGE = MATRICES / "h200-1gpu-14b-merge.toml"
PINNED = MATRICES / "h200-1gpu-14b-pinned.toml"
PREDICTIONS = ROOT / "baselines" / "evidence" / "predictions" / "h200-1gpu-14b-merge.txt"
MERGE_KEY = "actor_rollout_ref.model.lora.merge"


def _plan(path: Path, out: Path) -> list:
    return annotate_cells(plan_matrix(load_matrix(path), "bench", out_dir=out, validate_with_verl=False))


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, dict]:
    out = tmp_path_factory.mktemp("merge")
    merge = _plan(MERGE, out / "merge")
    pinned = {c.id: c for c in _plan(PINNED, out / "pinned")}
    return merge, pinned


def test_every_cell_merges_and_fits(planned) -> None:
    merge, _ = planned
    assert len(merge) == 8 and all(c.status == "ok" for c in merge)
    for c in merge:
        assert c.id.endswith("-merge") and f"{MERGE_KEY}=True" in c.argv  # a key of verl's config: no +, c.id
        assert settings_from_cell(c).lora_merge is True
        assert c.matrix == "h200-1gpu-14b-merge" and c.reference == "lora32-off_param+optimizer-tp1-rb45-mnbt1536-mb15"


def test_merged_cells_do_the_recipes_work(planned) -> None:
    merge, pinned = planned
    ref = pinned[load_matrix(MERGE).matrix.reference]
    for c in merge:
        assert objective_differences(command_objective(c.argv), command_objective(ref.argv)) == (), c.id


def test_the_host_holds_no_sleep_copy_once_merged(planned) -> None:
    merge, pinned = planned
    for c in merge:
        twin = pinned[c.id.removesuffix("-merge")]  # the same cell with the adapter served to vLLM
        s, t = settings_from_cell(c), settings_from_cell(twin)
        mine, theirs = predict_host(s), predict_host(t)
        steady = (
            {p.name: p.components for p in mine.phases}["steady"],
            {p.name: p.components for p in theirs.phases}["steady"],
        )
        copy = steady[1]["vllm_sleep_copy"]
        assert copy == pytest.approx(27.8, abs=0.05)  # Qwen2.5-14B's bf16 weights, vLLM at sleep level 1
        assert steady[0].get("vllm_sleep_copy", 0) == 0 and "vllm_sleep_copy" not in mine.breakdown
        mine_p, theirs_p = mine.phase_totals(), theirs.phase_totals()
        assert mine_p["steady"] == pytest.approx(theirs_p["steady"] - copy, abs=0.02), c.id
        # loading the actor is the peak now
        assert mine.phase == "startup" and mine_p["startup"] == theirs_p["startup"] == pytest.approx(90.54, abs=0.01)
        assert c.predicted_host_memory_gb == pytest.approx(90.5, abs=0.05)
        # GPU memory: the update's peak does not move (the merge's weight sync stays below it)
        assert c.predicted_memory_gb == pytest.approx(twin.predicted_memory_gb, abs=0.01)
    ref = next(c for c in merge if c.id == "lora32-off_param+optimizer-tp1-rb45-mnbt1536-mb15-merge")
    assert predict_host(settings_from_cell(ref)).phase_totals()["steady"] == pytest.approx(78.56, abs=0.01)


def test_committed_predictions_match_the_planner(planned) -> None:
    assert_plan_committed(planned[0], PREDICTIONS, "h200-1gpu-14b-merge", "8 ok / 8 cells")
