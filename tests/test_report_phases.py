"""The report's memory by phase: a row's NVML peak per step phase from its runs' timelines, the column that names
the peak's phase, and the exported memory_<phase>_gb fields (suite/report/table.py, columns.py)."""

from __future__ import annotations

from pathlib import Path

from suite.report.columns import cell_table, peak_phase
from suite.report.table import Group, flatten, to_record
from suite.results.baseline import read_baseline
from suite.results.phases import PLANNER_PHASES

ROOT = Path(__file__).resolve().parents[1]
FA = ROOT / "baselines" / "h100" / "h100-1gpu-7b-fa" / "qwen2.5-7b" / "h100x1" / "fsdp"
RECIPE = FA / "lora32-off_param+optimizer-tp1-rb45-attnsdpa-normpad-mnbt1536-mb15-gc.json"
FLEX = FA / "lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb3-nogc.json"


def test_a_row_with_a_timeline_has_its_phase_peaks() -> None:
    row = flatten(read_baseline(RECIPE).results)
    assert row.phase_peaks_gb == {"rollout": 26.946, "old_log_prob": 69.936, "ref_log_prob": 44.661, "actor_update": 54.932}  # fmt: skip
    assert row.peak_phase == "old_log_prob"
    assert peak_phase(row) == "old_log_prob (69.9; rollout 26.9; ref lp 44.7; update 54.9)"
    rec = to_record(row)
    assert rec["peak_phase"] == "old_log_prob" and "phase_peaks_gb" not in rec
    assert [rec[f"memory_{k}_gb"] for k in PLANNER_PHASES] == [26.946, 69.936, 44.661, 54.932, None]


def test_a_row_without_one_has_none() -> None:
    row = flatten(read_baseline(FLEX).results)
    assert row.phase_peaks_gb == {} and row.peak_phase is None and peak_phase(row) == "—"
    rec = to_record(row)
    assert rec["peak_phase"] is None and all(rec[f"memory_{k}_gb"] is None for k in PLANNER_PHASES)


def test_the_column_shows_only_where_a_row_has_phases() -> None:
    with_phase = [flatten(read_baseline(RECIPE).results), flatten(read_baseline(FLEX).results)]
    t = cell_table(Group(with_phase[0].gpu, with_phase[0].model, with_phase), gated=False)
    i = t.headers.index("NVML peak phase")
    assert [r[i] for r in t.rows] == ["old_log_prob (69.9; rollout 26.9; ref lp 44.7; update 54.9)", "—"]
    assert len(t.numeric) == len(t.headers) and t.numeric[i] is False
    t = cell_table(Group(with_phase[1].gpu, with_phase[1].model, with_phase[1:]), gated=False)
    assert "NVML peak phase" not in t.headers


KV = ROOT / "baselines" / "h100" / "h100-1gpu-7b-fa-kv" / "qwen2.5-7b" / "h100x1" / "fsdp"


def test_held_phases_are_not_where_the_peak_arose() -> None:
    """gmu 0.4, no offload: update's 70.2 is the cache old log-prob filled (69.9) plus less than the tolerance, so
    the peak phase is old log-prob; at gmu 0.5 the rollout's 72.4 is above everything the training passes held."""
    row = flatten(read_baseline(KV / "lora32-off_none-tp1-rb45-gmu0.4-attnflex-rmpad-mnbt8192-mb3-nogc.json").results)
    assert row.held_phases == ("ref_log_prob", "actor_update")
    assert max(row.phase_peaks_gb, key=row.phase_peaks_gb.get) == "actor_update"
    assert row.peak_phase == "old_log_prob"
    assert peak_phase(row) == "old_log_prob (69.9; rollout 64.8; ref lp ≤69.9; update ≤70.2)"
    assert to_record(row)["held_phases"] == "ref_log_prob;actor_update" and "held_phases" in to_record(row)
    row5 = flatten(read_baseline(KV / "lora32-off_none-tp1-rb45-gmu0.5-attnflex-rmpad-mnbt8192-mb3-nogc.json").results)
    assert row5.peak_phase == "rollout" and row5.held_phases == ("ref_log_prob", "actor_update")
    # the recipe offloads between the passes: nothing held, nothing exported
    recipe = flatten(read_baseline(RECIPE).results)
    assert recipe.held_phases == () and to_record(recipe)["held_phases"] == ""
