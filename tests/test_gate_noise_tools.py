"""The noise tools of issue 21 on the committed real samples: benchmarks/gate_power.py (both measured
quantities, the smallest drop caught) and benchmarks/step_noise.py (where the step noise comes from), and the
window throughput (`[throughput] measure = "window"`, and what calibrate and history keep per run)."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from gate_data import base_results, scaled

from suite.gate import stats
from suite.gate.cells import pool, window_throughput

ROOT = Path(__file__).resolve().parents[1]


def run(*argv: str) -> str:
    out = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_window_throughput_is_tokens_over_seconds_and_matches_verl_per_step() -> None:
    (r,) = base_results()[0]
    steps = r.measured_steps()
    tokens = sum(s.total_num_tokens for s in steps)  # type: ignore[misc]
    assert window_throughput([r]) == pytest.approx(tokens / sum(s.time_per_step for s in steps))
    # verl's per-step perf/throughput is the same quantity over one step
    assert all(s.throughput == pytest.approx(s.total_num_tokens / s.time_per_step) for s in steps)  # type: ignore[operator]
    assert pool([r]).window == pytest.approx(window_throughput([r]))
    slow = scaled(r, 0.9)
    ch = stats.window_change(
        ([s.total_num_tokens for s in slow.measured_steps()], [s.time_per_step for s in slow.measured_steps()]),
        ([s.total_num_tokens for s in steps], [s.time_per_step for s in steps]),
        resamples=500,
        level=0.95,
        seed=1,
    )
    assert ch.estimate == pytest.approx(-0.1) and ch.low < -0.1 < ch.high


def test_gate_power_reports_both_measures_and_the_smallest_drop_caught() -> None:
    out = run(
        "benchmarks/gate_power.py",
        "--baselines",
        "baselines/h100/h100-1gpu-graphs/**/*.json",
        "--designs",
        "1x8",
        "--slowdowns",
        "0,10,20",
        "--trials",
        "40",
        "--bootstrap",
        "200",
        "--measures",
        "step,window",
        "--jobs",
        "1",
    )
    assert "Gate power on 2 baseline cell(s)" in out
    table = out.split("Smallest drop caught", 1)[1]
    rows = [ln for ln in table.splitlines() if ln.startswith("| step") or ln.startswith("| window")]
    assert [ln.split("|")[1].strip() for ln in rows] == ["step, interval", "window, interval"]
    assert all(ln.split("|")[4].strip() in ("10 %", "20 %", "> 20 %", "false alarms > 1 %") for ln in rows)


def test_step_noise_finds_the_gen_timer_one_poll_in_graphs_bench_cells() -> None:
    out = run("benchmarks/step_noise.py")
    lines = [ln for ln in out.splitlines() if ln.startswith("| h")]
    assert len(lines) == 9
    bench = [ln for ln in lines if "| bench " in ln]
    # verl's gen timer rounds the rollout up to its 2 s poll: one quantum, sd <= 0.02 s, in every graphs bench cell
    assert all("| 1 (2-4 s)" in ln for ln in bench)
    gen_sd = [float(ln.split("|")[7].split("±")[1]) for ln in bench]
    assert max(gen_sd) <= 0.02
    shares = dict(
        (ln.split("|")[1].strip(), float(ln.split("|")[2].strip().rstrip("%")))
        for ln in out.split("Share of the step-time variance", 1)[1].splitlines()
        if ln.startswith("| ") and "%" in ln
    )
    assert shares["update_actor"] + shares["old_log_prob"] + shares["ref"] >= 80
    assert shares["gen"] <= 15  # all of it from the train cell, whose gen moves between the 2 s and 4 s polls


def test_the_gate_reports_the_measure_it_used(tmp_path, capsys) -> None:
    import json

    from gate_data import write_baseline, write_results

    from suite.cli import main

    (r,) = base_results()[1]
    write_baseline([r], tmp_path / "b")
    write_results([scaled(r, 0.9)], tmp_path / "cur")
    argv = ["gate", str(tmp_path / "cur"), "--baselines", str(tmp_path / "b"), "--format", "json"]
    cfg = tmp_path / "w.toml"
    cfg.write_text('[throughput]\nmeasure = "window"\n')
    rows = {}
    for name, extra in (("step", []), ("window", ["--config", str(cfg)])):
        assert main([*argv, *extra]) == 1
        rows[name] = next(x for x in json.loads(capsys.readouterr().out)["rows"] if x["metric"] == "throughput")
    assert "median step throughput" in rows["step"]["detail"] and "window throughput" in rows["window"]["detail"]
    assert float(rows["step"]["baseline"]) == pytest.approx(
        statistics.median(s.throughput for s in r.measured_steps()), abs=0.05
    )
    assert float(rows["window"]["baseline"]) == pytest.approx(window_throughput([r]), abs=0.05)
    assert rows["step"]["estimate"] == pytest.approx(-0.1) and rows["window"]["estimate"] == pytest.approx(-0.1)
