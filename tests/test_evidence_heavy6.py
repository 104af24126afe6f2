"""The sixth heavy run (Qwen2.5-7B at the seed's shape, 1x H200, 2026-12-04): the recipe cell of the no-KL matrix,
its host gone during step 2. Read back from the committed files (parser fixtures) and the README's claims
recomputed: one warm-up step, none measured; the warm-up step and the start-up milestones reproduce the first
host's recipe cell; nothing here can be a baseline or a memory measurement."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from evidence_helpers import EVIDENCE, assert_readme_tables, log_lines, result_matching_metrics

from suite.memory.validate import validate_results
from suite.results.io import read_result
from suite.telemetry import classify, startup
from suite.telemetry.metrics import read_metrics

HERE = EVIDENCE / "2026-12-04-h200-heavy"
CELL = HERE / "h200-1gpu-7b-nokl" / "lora32-off_param+optimizer-tp1-rb45-mnbt1536-mb15-gc-nobm-klloss"
FIRST = (
    EVIDENCE
    / "2026-12-03-h200-heavy"
    / "h200-1gpu-7b"
    / "lora32-off_param+optimizer-tp1-rb45-gmu0.3-mnbt1536-graphs-mb15-gc"
)
PREDICTIONS = EVIDENCE / "predictions" / "h200-1gpu-7b-nokl.txt"


def test_interrupted_after_the_warm_up_with_nothing_measured() -> None:
    r = result_matching_metrics(CELL)
    assert r.status == "interrupted" and "host went away during step 2" in (r.reason or "")
    assert [s.step for s in r.steps] == [1] and r.warmup_steps == 1 and r.measured_steps() == []
    assert r.peak_memory_gb == [] and r.host_peak_memory_gb is None
    (row,) = validate_results([("here", r)])
    assert not row.measured and not row.host_measured  # no peak was written: not a memory measurement
    cell = json.loads((CELL / "cell.json").read_text())
    first = json.loads((FIRST / "cell.json").read_text())
    assert cell["id"] == CELL.name and cell["matrix"] == "h200-1gpu-7b-nokl"
    # the first host's recipe cell with other axes around it: the same verl command but for paths and names,
    # and bypass spelled out at verl's default; the same predictions
    named = ("/root/runs/", "trainer.project_name=", "trainer.experiment_name=")
    differ = {a for a in set(cell["argv"]) ^ set(first["argv"]) if not any(n in a for n in named)}
    assert differ == {"algorithm.rollout_correction.bypass_mode=False"}
    assert (cell["predicted_memory_gb"], cell["predicted_host_memory_gb"]) == (
        first["predicted_memory_gb"],
        first["predicted_host_memory_gb"],
    )


def test_warm_up_step_reproduces_the_first_host() -> None:
    (now,) = read_metrics(CELL / "metrics.jsonl").steps
    then = read_metrics(FIRST / "metrics.jsonl").steps[0]
    assert now.step == then.step == 1
    assert now.timing_s["step"] == pytest.approx(174.2, abs=0.05)
    assert now.timing_s["step"] == pytest.approx(then.timing_s["step"], rel=0.01)
    for phase, (a, b) in {
        "gen": (22.5, 20.4),
        "old_log_prob": (26.1, 27.6),
        "ref": (23.7, 22.2),
        "update_actor": (75.2, 77.7),
    }.items():
        assert now.timing_s[phase] == pytest.approx(a, abs=0.05) and then.timing_s[phase] == pytest.approx(b, abs=0.05)
    readme = (HERE / "README.md").read_text()
    assert "174.2 s (gen 22.5, old log-prob 26.1, ref 23.7, update 75.2" in readme


def test_start_up_milestones_from_the_log_timestamps() -> None:
    lines = log_lines(CELL)
    assert startup.milestones_in(lines)[-1] == "ready_to_fit"
    assert classify.find_oom(lines) is None
    start = datetime(2026, 12, 4, 4, 0, 13)  # lane0.log's stamp as the cell started
    assert (
        "=== 04:00:13 lora32-off_param+optimizer-tp1-rb45-mnbt1536-mb15-gc-nobm-klloss on GPU 0"
        in (HERE / "lane0.log").read_text()
    )
    # the suite's own reader of the log's times (ingest --started-at), to the whole second the README quotes
    recovered = startup.milestones_from_timestamps(lines, start)
    seconds = {k: int(v) for k, v in recovered.items()}
    assert seconds == {
        "ray_started": 25,
        "data_loaded": 86,
        "actor_initialized": 159,
        "vllm_weights_loaded": 256,
        "vllm_compiled": 289,
        "vllm_graphs_captured": 316,
        "vllm_engine_ready": 331,
        "ready_to_fit": 352,
    }
    # and it is what `ingest --started-at` wrote into the result
    assert read_result(CELL / "result.json").startup_breakdown_s == recovered
    assert recovered["ray_started"] == 25.32 and recovered["ready_to_fit"] == 352.61
    first = json.loads((FIRST / "result.json").read_text())["startup_breakdown_s"]
    assert abs(seconds["ready_to_fit"] - first["ready_to_fit"]) < 0.02 * first["ready_to_fit"]
    assert "25 / 86 / 159 / 256 / 289 / 316 / 331 / 352 s" in (HERE / "README.md").read_text()


def test_its_prediction_was_committed_and_readme_tables() -> None:
    row = next(x for x in PREDICTIONS.read_text().splitlines() if x.startswith(CELL.name + " "))
    assert "(ref)" in row and " 67.5 " in row and " 104.2 " in row and row.rstrip().endswith("ok")
    assert_readme_tables(HERE)
