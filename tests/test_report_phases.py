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
