"""The report's "Speed planner against the measured runs": every measured FSDP run read, each predicted without
its cell; only with --speed, never in results.json / results.csv (predictions are not results)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suite.cli import main
from suite.report.columns import speed_table
from suite.report.speedcheck import SpeedChecks, speed_checks
from suite.speed.fit import SpeedRow, SpeedSummary

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "baselines"


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    args = ["report", "--baselines", str(STORE), "--evidence", str(STORE / "evidence"), "--speed"]
    assert main([*args, "--out", str(out)]) == 0
    return out


def test_the_section_lists_every_measured_run_out_of_sample(report_dir):
    md = (report_dir / "index.md").read_text()
    section = md.split("## Speed planner against the measured runs", 1)[1].split("\n## ", 1)[0]
    assert "30 runs, each predicted without its cell: median \\|error\\| of s/step 4.9%, 23 within 10 %" in section
    rows = [ln for ln in section.splitlines() if ln.startswith("| h")]
    assert len(rows) == 30
    assert any("h100-1gpu-14b-bf16/lora32-off_none-tp1-rb45-gmu0.55" in r and "+2." in r for r in rows)
    html = (report_dir / "index.html").read_text()
    assert 'id="speed"' in html and 'href="#speed"' in html


def test_predictions_never_reach_the_exports(report_dir):
    records = json.loads((report_dir / "results.json").read_text())
    assert all("predicted_tps" not in json.dumps(r) for r in records)
    assert "predicted tokens/s/GPU" not in (report_dir / "results.csv").read_text()


def test_without_the_flag_there_is_no_section(tmp_path):
    assert main(["report", "--baselines", str(STORE), "--out", str(tmp_path)]) == 0
    assert "Speed planner against" not in (tmp_path / "index.md").read_text()


def test_the_committed_report_has_the_section():
    md = (ROOT / "reports" / "index.md").read_text()
    assert "## Speed planner against the measured runs" in md


def test_no_measured_run_gives_no_check(tmp_path):
    assert speed_checks([tmp_path]) is None


def test_the_table_and_summary_of_hand_made_checks():
    c = SpeedRow(
        key="h100:m/cell@t",
        matrix="m",
        cell="cell",
        model="qwen2.5-7b",
        gpu="h100",
        flash_attn=True,
        steps=4,
        measured_s=64.0,
        predicted_s=61.44,
        measured_phases_s={},
        predicted_phases_s={},
        measured_tps=3922.0,
        predicted_tps=4085.0,
        kv_waves=1.0,
        out_of_sample=True,
        measured_run_s=None,
        predicted_run_s=600.0,
    )
    checks = SpeedChecks((c,), SpeedSummary(1, 0.04, -0.04, 1, 1))
    assert c.error == pytest.approx(-0.04)
    t = speed_table(checks)
    assert len(t.headers) == len(t.numeric) == len(t.rows[0])
    row = dict(zip(t.headers, t.rows[0], strict=True))
    assert (row["s/step"], row["predicted"], row["error"]) == ("64.0", "61.4", "-4.0%")
    assert (row["tokens/s/GPU"], row["predicted tokens/s/GPU"], row["flash-attn"]) == ("3922", "4085", "yes")
    assert row["run"] == "m/cell"
    assert checks.summary == "1 runs, each predicted without its cell: median |error| of s/step 4.0%, 1 within 10 %."
