"""The 14B recipe with its LoRA merged into the base weights at every weight sync (verl `model.lora.merge`),
matrix h200-1gpu-14b-merge: read against the recipe of h200-1gpu-14b-pinned, the same work, and planned with
vLLM sleeping at level 2, so the host holds no copy of the base weights."""

from __future__ import annotations

from pathlib import Path

import pytest
from evidence_helpers import assert_plan_committed, planned_cells

from suite.gate.objective import command_objective, objective_differences
from suite.matrix.load import load_matrix
from suite.memory.host import predict_host
from suite.memory.settings import settings_from_cell

ROOT = Path(__file__).resolve().parents[1]
MATRICES = ROOT / "suite" / "matrices"
MERGE = MATRICES / "h200-1gpu-14b-merge.toml"
PINNED = MATRICES / "h200-1gpu-14b-pinned.toml"
PREDICTIONS = ROOT / "baselines" / "evidence" / "predictions" / "h200-1gpu-14b-merge.txt"
MERGE_KEY = "actor_rollout_ref.model.lora.merge"


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, dict]:
    out = tmp_path_factory.mktemp("merge")
    merge = planned_cells(MERGE, out / "merge")
    pinned = {c.id: c for c in planned_cells(PINNED, out / "pinned")}
    return merge, pinned


def test_every_cell_merges_and_only_the_no_offload_ones_fit_the_host(planned) -> None:
    merge, _ = planned
    assert len(merge) == 8
    for c in merge:
        assert c.id.endswith("-merge") and f"{MERGE_KEY}=True" in c.argv, c.id  # a key of verl's config: no +
        assert settings_from_cell(c).lora_merge is True
        assert c.matrix == "h200-1gpu-14b-merge" and c.reference == "lora32-off_param+optimizer-tp1-rb45-mnbt1536-mb15"
        if "off_none" in c.id:
            assert c.status == "ok", c.id
        else:  # 82.1 GiB steady + the merge's 55.0 GiB backup of the base weights
            assert c.status == "predicted-host-oom" and c.predicted_host_memory_gb == pytest.approx(137.0, abs=0.1)
            assert "merge_sync" in c.reason and "merge backup 55.0" in c.reason, c.reason


def test_merged_cells_do_the_recipes_work(planned) -> None:
    merge, pinned = planned
    ref = pinned[load_matrix(MERGE).matrix.reference]
    for c in merge:
        assert objective_differences(command_objective(c.argv), command_objective(ref.argv)) == (), c.id


def test_the_host_holds_no_sleep_copy_once_merged_but_a_backup_at_each_sync(planned) -> None:
    merge, pinned = planned
    for c in merge:
        twin = pinned[c.id.removesuffix("-merge")]  # the same cell with the adapter served to vLLM
        mine, theirs = predict_host(settings_from_cell(c)), predict_host(settings_from_cell(twin))
        parts = {p.name: p.components for p in mine.phases}
        copy = {p.name: p.components for p in theirs.phases}["steady"]["vllm_sleep_copy"]
        assert copy == pytest.approx(27.8, abs=0.05)  # Qwen2.5-14B's bf16 weights, vLLM at sleep level 1
        assert parts["steady"].get("vllm_sleep_copy", 0) == 0
        totals, twin_totals = mine.phase_totals(), theirs.phase_totals()
        assert totals["steady"] == pytest.approx(twin_totals["steady"] - copy, abs=0.02), c.id
        assert totals["startup"] == twin_totals["startup"] == pytest.approx(94.02, abs=0.01)
        # every merged sync clones the fp32 base weights to the CPU first: 14.77 B x 4 bytes
        assert parts["merge_sync"]["merge_backup"] == pytest.approx(14_770_033_664 * 4 / 2**30, rel=0.001)
        assert totals["merge_sync"] == pytest.approx(totals["steady"] + parts["merge_sync"]["merge_backup"], abs=0.01)
        if "off_none" in c.id:  # loading the actor is the peak; a sync comes to 25.5 + 55.0
            assert mine.phase == "startup" and c.predicted_host_memory_gb == pytest.approx(94.0, abs=0.05)
            assert totals["merge_sync"] == pytest.approx(80.5, abs=0.05)
        else:
            assert mine.phase == "merge_sync" and totals["steady"] == pytest.approx(82.04, abs=0.01)
        # GPU memory: the update's peak does not move (the merge's weight sync stays below it)
        assert c.predicted_memory_gb == pytest.approx(twin.predicted_memory_gb, abs=0.01)


def test_committed_predictions_match_the_planner(planned) -> None:
    assert_plan_committed(planned[0], PREDICTIONS, "h200-1gpu-14b-merge", "4 ok / 8 cells")
