"""h100-1gpu-7b-fa-mb5.toml: the fastest 7B cell measured on an H100 (h100-1gpu-7b-fa-kv at gmu 0.4) with the
update's micro batch 5 instead of 3: its verl command is that measured cell's with one setting changed, read
against h100-1gpu-7b-fa's recipe; the planner puts it 0.6 GiB over the card and the runner still starts it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from evidence_helpers import BEFORE_FA_FIT, EVIDENCE, assert_plan_committed, planned_cells, verl_settings

from suite.matrix.load import load_matrix
from suite.memory.predict import predict_cell
from suite.results.io import read_result
from suite.run.cellio import cell_from_dict

ROOT = Path(__file__).resolve().parents[1]
MATRIX = ROOT / "suite" / "matrices" / "h100-1gpu-7b-fa-mb5.toml"
PREDICTIONS = EVIDENCE / "predictions" / "h100-1gpu-7b-fa-mb5.txt"
ID = "lora32-off_none-tp1-rb45-gmu0.4-attnflex-rmpad-mnbt8192-mb5-nogc"
MEASURED = EVIDENCE / "2026-12-06-h100-heavy-3" / "h100-1gpu-7b-fa-kv" / ID.replace("-mb5-", "-mb3-")
MB = "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory):
    (c,) = planned_cells(MATRIX, tmp_path_factory.mktemp("mb5"))
    return c


def test_reference_is_the_fa_recipe() -> None:
    m = load_matrix(MATRIX).matrix
    fa = load_matrix(MATRIX.with_name("h100-1gpu-7b-fa.toml")).matrix
    assert (m.reference, m.reference_matrix) == (fa.reference, "h100-1gpu-7b-fa")
    assert (m.gpu, m.gpus_per_node, m.model, m.host_memory_gb) == ("h100", 1, "synthetic:qwen2.5-7b", 125)


def test_the_measured_fastest_cell_with_micro_batch_5(cell) -> None:
    assert cell.id == ID
    mine = verl_settings(cell.argv)
    # the measured cell's command as it ran (its trainer/path settings aside)
    theirs = verl_settings(read_result(MEASURED / "result.json").provenance.argv)
    assert theirs - mine == {f"{MB}=3"} and mine - theirs == {f"{MB}=5"}
    assert json.loads((MEASURED / "cell.json").read_text())["id"] == ID.replace("-mb5-", "-mb3-")
    assert cell.setting(MB) == 5 and cell.setting("actor_rollout_ref.rollout.gpu_memory_utilization") == 0.4


def test_planned_over_the_card_by_its_update_and_still_run(tmp_path: Path) -> None:
    """The planner of its day (before the fit of the update where flash-attn is installed) put it over the card."""
    (then,) = planned_cells(MATRIX, tmp_path, calibration=BEFORE_FA_FIT)
    p = predict_cell(then, BEFORE_FA_FIT)
    assert (round(p.peak_gib, 1), p.phase, then.status) == (78.8, "actor_update", "predicted-oom")
    totals = p.phase_totals()
    assert totals["rollout"] == pytest.approx(64.25, abs=0.01) and totals["old_log_prob"] < totals["actor_update"]
    assert "78.8 GiB > 78.2 GiB usable on h100" in then.reason
    assert then.predicted_host_memory_gb == pytest.approx(53.83, abs=0.01)


def test_fits_since_the_update_is_fitted_on_the_flash_attn_stack(cell) -> None:
    """It ran at 71.8 GiB (2026-12-07-h100-heavy); with one logits copy in the update it plans at 75.1, in."""
    p = predict_cell(cell)
    assert cell.flash_attn is True
    assert (round(p.peak_gib, 1), p.phase, cell.status) == (75.1, "actor_update", "ok")
    assert p.phase_totals()["rollout"] == pytest.approx(64.25, abs=0.01)
    assert cell.predicted_host_memory_gb == pytest.approx(53.83, abs=0.01)
    # the stack travels with the cell (plan JSON, cell.json), so a runner's re-prediction is the planner's
    back = cell_from_dict(json.loads(json.dumps(cell.to_dict())))
    assert back.flash_attn is True and predict_cell(back).peak_gib == p.peak_gib
    assert predict_cell(replace(cell, flash_attn=None)).peak_gib > p.peak_gib  # flex says nothing of flash-attn


def test_committed_predictions_match_the_planner(tmp_path: Path) -> None:
    cells = planned_cells(MATRIX, tmp_path, calibration=BEFORE_FA_FIT)
    assert_plan_committed(cells, PREDICTIONS, "h100-1gpu-7b-fa-mb5", "0 ok / 1 cells")
    assert PREDICTIONS.read_text().splitlines()[0].endswith("committed before any of its cells ran")
