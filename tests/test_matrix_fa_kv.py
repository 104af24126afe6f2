"""h100-1gpu-7b-fa-kv.toml: the fastest 7B cell that fits an H100 (h100-1gpu-7b-fa's flex cell at micro batch 3)
with a larger vLLM share of the card, so the whole rollout fits the KV cache at once. Each cell is that measured
cell's verl command with only gpu_memory_utilization changed, read against the recipe of h100-1gpu-7b-fa, and the
committed predictions are what the planner says."""

from __future__ import annotations

from pathlib import Path

import pytest
from evidence_helpers import BEFORE_GPU_FIT, assert_plan_committed, planned_cells, verl_settings

from suite.matrix.load import load_matrix
from suite.memory.predict import predict_cell

ROOT = Path(__file__).resolve().parents[1]
MATRICES = ROOT / "suite" / "matrices"
MATRIX = MATRICES / "h100-1gpu-7b-fa-kv.toml"
PREDICTIONS = ROOT / "baselines" / "evidence" / "predictions" / "h100-1gpu-7b-fa-kv.txt"
MEASURED = "lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb3-nogc"
GMU = "actor_rollout_ref.rollout.gpu_memory_utilization"


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> list:
    return planned_cells(MATRIX, tmp_path_factory.mktemp("kv"))


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory):
    fa = planned_cells(MATRICES / "h100-1gpu-7b-fa.toml", tmp_path_factory.mktemp("fa"))
    return next(c for c in fa if c.id == MEASURED)


def test_reference_is_the_recipe_of_the_fa_matrix() -> None:
    m = load_matrix(MATRIX).matrix
    fa = load_matrix(MATRICES / "h100-1gpu-7b-fa.toml").matrix
    assert (m.reference, m.reference_matrix) == (fa.reference, "h100-1gpu-7b-fa")
    assert (m.gpu, m.gpus_per_node, m.model, m.backend) == (fa.gpu, fa.gpus_per_node, fa.model, fa.backend)


def test_cells_differ_from_the_measured_cell_only_in_gmu(cells: list, measured) -> None:
    assert [c.id for c in cells] == [
        f"lora32-off_none-tp1-rb45-gmu{g}-attnflex-rmpad-mnbt8192-mb3-nogc" for g in ("0.4", "0.5", "0.6")
    ]
    base = verl_settings(measured.argv)
    assert f"{GMU}=0.3" in base and len(base) > 40
    for c, g in zip(cells, (0.4, 0.5, 0.6), strict=True):
        mine = verl_settings(c.argv)
        assert base - mine == {f"{GMU}=0.3"}
        assert mine - base == {f"{GMU}={g}"}
        assert c.setting(GMU) == g


def test_only_the_rollout_phase_grows(cells: list, measured) -> None:
    phases = [predict_cell(c).phase_totals() for c in cells]
    theirs = predict_cell(measured).phase_totals()
    assert [p["rollout"] for p in phases] == [64.25, 72.17, 80.09]
    assert theirs["rollout"] == 56.33
    for p in phases:
        assert set(p) == set(theirs)
        assert {k: v for k, v in p.items() if k != "rollout"} == {k: v for k, v in theirs.items() if k != "rollout"}
    assert [c.status for c in cells] == ["ok", "ok", "predicted-oom"]
    assert all(c.predicted_host_memory_gb == pytest.approx(measured.predicted_host_memory_gb) for c in cells)


def test_committed_predictions_match_the_planner(tmp_path: Path) -> None:
    """The committed file is the planner of its day, before the GPU fit of the old log-prob pass."""
    assert_plan_committed(
        planned_cells(MATRIX, tmp_path, calibration=BEFORE_GPU_FIT), PREDICTIONS, "h100-1gpu-7b-fa-kv", "2 ok / 3 cells"
    )
    assert PREDICTIONS.read_text().splitlines()[0].endswith("committed before any of its cells ran")


def test_since_the_gpu_fit_old_log_prob_is_the_gmu_04_cells_worst_phase(cells: list) -> None:
    """64.2 GiB (rollout) when committed, 70.2 measured (old log-prob 69.9); the fitted planner says 70.5."""
    assert [c.predicted_memory_gb for c in cells] == [70.48, 72.17, 80.09]
    assert [predict_cell(c).phase for c in cells] == ["old_log_prob", "rollout", "rollout"]
    assert [c.status for c in cells] == ["ok", "ok", "predicted-oom"]
