"""h200-1gpu-7b-flex.toml: remove-padding on torch's flex attention, planned around the recipe. The reference is
the recipe measured in h200-1gpu-7b-nokl (`reference_matrix`), the candidates change only how the attention
runs, ids read short, and the committed predictions are what the planner says today."""

from __future__ import annotations

from pathlib import Path

import pytest
from evidence_helpers import assert_rows_committed, committed_plan_rows

from suite.matrix.ids import axis_part
from suite.matrix.load import load_matrix
from suite.memory.predict import annotate_cells
from suite.plan.planner import plan_matrix

ROOT = Path(__file__).resolve().parents[1]
MATRICES = ROOT / "suite" / "matrices"
FLEX = MATRICES / "h200-1gpu-7b-flex.toml"
PREDICTIONS = ROOT / "baselines" / "evidence" / "predictions" / "h200-1gpu-7b-flex.txt"
ATTN = "+actor_rollout_ref.model.override_config.attn_implementation"
RMPAD = "actor_rollout_ref.model.use_remove_padding"
# what names a cell rather than configures it (its paths and its experiment name hold its id)
NAMING = ("trainer.project_name=",)


def _cells(path: Path, out: Path) -> list:
    return annotate_cells(plan_matrix(load_matrix(path), "bench", out_dir=out, validate_with_verl=False))


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> list:
    return _cells(FLEX, tmp_path_factory.mktemp("flex"))


def _command(cell) -> set[str]:
    return {a for a in cell.argv if cell.id not in a and not any(n in a for n in NAMING)}


def test_ids_and_statuses(cells: list) -> None:
    assert axis_part("attn_implementation", "flex_attention") == "attnflex"
    assert axis_part("attn_implementation", "flash_attention_2") == "attnfa2"
    assert axis_part("attn_implementation", "sdpa") == "attnsdpa"
    assert len(cells) == 8 and sum(c.status == "ok" for c in cells) == 5
    assert {c.status for c in cells} == {"ok", "predicted-oom"}
    for c in cells:
        flex = "-attnflex-rmpad-" in c.id
        assert flex or "-attnsdpa-normpad-" in c.id
        assert c.setting(ATTN.lstrip("+")) == ("flex_attention" if flex else "sdpa")
        assert c.setting(RMPAD) is flex
        # the recipe runs only in the reference matrix
        assert flex or "off_none" in c.id


def test_the_reference_is_the_recipe_measured_in_the_nokl_matrix(cells: list, tmp_path: Path) -> None:
    m = load_matrix(FLEX)
    assert (m.matrix.reference_matrix, m.matrix.reference) == (
        "h200-1gpu-7b-nokl",
        "lora32-off_param+optimizer-tp1-rb45-mnbt1536-mb15-gc-nobm-klloss",
    )
    assert all((c.reference, c.reference_matrix) == (m.matrix.reference, m.matrix.reference_matrix) for c in cells)
    nokl = _cells(MATRICES / "h200-1gpu-7b-nokl.toml", tmp_path)
    recipe = next(c for c in nokl if c.id == m.matrix.reference)
    # the x1.07 cell's padded twin here is the nokl matrix's twin: the same command but bypass spelled out there
    twin = next(c for c in cells if c.id == "lora32-off_none-tp1-rb45-attnsdpa-normpad-mnbt8192-mb5-nogc")
    there = next(c for c in nokl if c.id == "lora32-off_none-tp1-rb45-mnbt8192-mb5-nogc-nobm-klloss")
    assert _command(twin) ^ _command(there) == {"algorithm.rollout_correction.bypass_mode=False"}
    assert recipe.status == "ok"


def test_flex_candidates_differ_from_their_padded_twins_in_the_attention_only(cells: list, tmp_path: Path) -> None:
    by_id = {c.id: c for c in cells}
    twins = 0
    for c in cells:
        twin = by_id.get(c.id.replace("-attnflex-rmpad-", "-attnsdpa-normpad-"))
        if "-attnflex-rmpad-" not in c.id or twin is None:
            continue
        twins += 1
        assert _command(c) ^ _command(twin) == {
            f"{ATTN}=flex_attention",
            f"{ATTN}=sdpa",
            f"{RMPAD}=True",
            f"{RMPAD}=False",
        }
    assert twins == 3
    # the same packed micro batches; flex attends with GQA, while sdpa gets a mask and repeats k, v to all 28 heads:
    # 4 bytes x (3584 - 512) x 28 layers x 5 x (187 + 1024) tokens more
    rmpad = {c.id: c for c in _cells(MATRICES / "h200-1gpu-7b-rmpad.toml", tmp_path)}
    flex = by_id["lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb5-nogc"].memory_breakdown
    sdpa = rmpad["lora32-off_none-tp1-rb45-rmpad-mnbt8192-mb5-nogc"].memory_breakdown
    assert sdpa["activations"] - flex["activations"] == pytest.approx(4 * 3072 * 28 * 5 * 1211 / 2**30, abs=0.01)
    assert sdpa["logits"] == flex["logits"] and sdpa["actor_params"] == flex["actor_params"]


def test_committed_predictions_match_the_planner(cells: list) -> None:
    rows, summary = committed_plan_rows(PREDICTIONS, "h200-1gpu-7b-flex")
    assert summary == "5 ok / 8 cells"
    assert_rows_committed(cells, rows)
