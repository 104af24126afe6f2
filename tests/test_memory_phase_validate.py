"""memory validate --phases: the planner's phase totals against each phase's NVML peak (suite/memory/phase_validate.py),
on the committed H100 7B result with a timeline made here (the run itself predates the timeline)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from suite.memory.model import predict
from suite.memory.phase_validate import markdown, phase_rows
from suite.memory.settings import settings_from_result
from suite.results.io import read_result
from suite.results.phases import phase_windows
from suite.results.schema import NvmlTimeline

ROOT = Path(__file__).resolve().parents[1]
CELL = (
    ROOT / "baselines/evidence/2026-12-06-h100-heavy/h100-1gpu-7b-fa/"
    "lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb3-nogc/result.json"
)
LEVELS = {"gen": 56.0, "old_log_prob": 70.0, "ref": 52.0, "update_actor": 64.0}


@pytest.fixture(scope="module")
def result():
    r = read_result(CELL)
    # steps seen back to back from 300 s on, each level held through its phase
    t, steps = 300.0, []
    for s in r.steps:
        t += s.time_per_step
        steps.append(s.model_copy(update={"seen_s": t}))
    spans = [(w.start_s, w.end_s, LEVELS[w.phase]) for s in steps for w in phase_windows(s) if w.phase in LEVELS]
    used = [[next((g for a, b, g in spans if a <= i < b), 20.0)] for i in range(int(t) + 2)]
    return r.model_copy(
        update={"steps": steps, "nvml_timeline": NvmlTimeline(interval_s=1.0, start_s=0.0, used_gb=used)}
    )


def test_one_row_per_planner_phase_with_the_planners_totals(result) -> None:
    rows = phase_rows([("x", result)])
    totals = predict(settings_from_result(result)).phase_totals()
    assert {r.phase: r.measured_gib for r in rows} == {
        "rollout": 56.0, "old_log_prob": 70.0, "ref_log_prob": 52.0, "actor_update": 64.0}  # fmt: skip
    assert all(r.predicted_gib == totals[r.phase] for r in rows)
    old = next(r for r in rows if r.phase == "old_log_prob")
    assert old.error == pytest.approx((totals["old_log_prob"] - 70.0) / 70.0)
    assert old.cell.endswith("lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb3-nogc")
    table = markdown(rows)
    assert table.count("\n") == len(rows) + 1 and "old_log_prob (old_log_prob)" in table


def test_results_without_a_timeline_give_no_rows() -> None:
    r = read_result(CELL)
    assert r.nvml_timeline is None and phase_rows([("x", r)]) == []
    assert "no result with an NVML timeline" in markdown([])


def test_cli_prints_phases_in_json(tmp_path: Path, result) -> None:
    f = tmp_path / "r.json"
    f.write_text(result.to_json())
    out = subprocess.run(
        [sys.executable, "-m", "suite", "memory", "validate", str(f), "--phases", "--format", "json"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert out.returncode in (0, 1), out.stderr
    phases = json.loads(out.stdout)["phases"]
    assert [p["phase"] for p in phases] == ["rollout", "old_log_prob", "ref_log_prob", "actor_update"]
    assert all(isinstance(p["error"], float) for p in phases)


def test_host_rows_against_the_host_models_phases(result) -> None:
    from suite.memory.host import predict_host
    from suite.results.schema import HostTimeline

    first = result.steps[0]
    start = first.seen_s - first.time_per_step
    n = len(result.nvml_timeline.used_gb)
    tree = [100.0 if i < start - 1 else 60.0 for i in range(n)]
    r = result.model_copy(
        update={"host_timeline": HostTimeline(interval_s=1.0, start_s=0.0, tree_gb=tree, system_gb=tree)}
    )
    rows = {row.phase: row for row in phase_rows([("x", r)]) if row.verl_phase == "host"}
    host = predict_host(settings_from_result(r)).phase_totals()
    assert {k: v.measured_gib for k, v in rows.items()} == {"startup": 100.0, "steady": 60.0}
    assert rows["steady"].predicted_gib == host["steady"]
    assert rows["startup"].predicted_gib == host.get("startup", host["steady"])
    assert "| startup (host) | 100.0 |" in markdown(list(rows.values()))


KV = (
    ROOT / "baselines/evidence/2026-12-06-h100-heavy-3/h100-1gpu-7b-fa-kv/"
    "lora32-off_none-tp1-rb45-gmu0.4-attnflex-rmpad-mnbt8192-mb3-nogc/result.json"
)


def test_held_phases_are_marked_as_bounds() -> None:
    """No offload: ref and update run inside the cache old log-prob left, so their rows bound, not measure."""
    rows = phase_rows([("x", read_result(KV))])
    gpu = [r for r in rows if r.verl_phase != "host"]
    assert {r.phase: r.held for r in gpu} == {
        "rollout": False, "old_log_prob": False, "ref_log_prob": True, "actor_update": True}  # fmt: skip
    assert not any(r.held for r in rows if r.verl_phase == "host")
    table = markdown(rows)
    ref = next(ln for ln in table.splitlines() if "ref_log_prob (ref)" in ln)
    assert "| ≤ 69.9 | 45.6 | under the bound (held) |" in ref
    old = next(ln for ln in table.splitlines() if "old_log_prob (old_log_prob)" in ln)
    assert "| 69.9 |" in old and "(held)" not in old
    assert "upper bound on the phase's own need" in table
    # the table of a run without held phases has no footnote
    assert "held:" not in markdown([r for r in rows if not r.held])


def test_the_cli_json_carries_held(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "suite", "memory", "validate", str(KV), "--phases", "--format", "json"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    phases = json.loads(out.stdout)["phases"]
    assert {p["phase"]: p["held"] for p in phases if p["verl_phase"] != "host"}["actor_update"] is True
    assert all(isinstance(p["held"], bool) for p in phases)
