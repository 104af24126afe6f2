"""The seventh and eighth heavy runs (Qwen2.5-7B at the seed's shape, 1x H200, 2026-12-04): the recipe cell of the
no-KL matrix with its 4 measured steps, then the same cell on the same host for its start-up with vLLM's compile
cache warm. Read back from the committed files (parser fixtures) and the READMEs' claims recomputed: the recipe's
speed and what its step is made of, its reproduction across hosts, the planner's out-of-sample errors, the
promoted baseline and the report's best-vs-reference line it makes, and what the compile cache saves."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from evidence_helpers import (
    EVIDENCE,
    assert_prediction_committed,
    assert_readme_tables,
    log_lines,
    median_measured,
    median_phase,
    memory_errors,
    result_matching_metrics,
)

from suite.memory.validate import validate_results
from suite.report.model import build
from suite.report.table import flatten_all, with_reference
from suite.results.baseline import read_baseline
from suite.results.io import read_result
from suite.telemetry import classify, startup
from suite.telemetry.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
ID = "lora32-off_param+optimizer-tp1-rb45-mnbt1536-mb15-gc-nobm-klloss"
HERE = EVIDENCE / "2026-12-04-h200-heavy-2"
WARM = EVIDENCE / "2026-12-04-h200-heavy-3"
RECIPE = HERE / "h200-1gpu-7b-nokl" / ID
RECIPE_WARM = WARM / "h200-1gpu-7b-nokl" / ID
CUT_OFF = EVIDENCE / "2026-12-04-h200-heavy" / "h200-1gpu-7b-nokl" / ID
FIRST = (
    EVIDENCE
    / "2026-12-03-h200-heavy"
    / "h200-1gpu-7b"
    / "lora32-off_param+optimizer-tp1-rb45-gmu0.3-mnbt1536-graphs-mb15-gc"
)
NOKL_ID = "lora32-off_none-tp1-rb45-mnbt8192-mb5-nogc-bm-noklloss"
BASELINES = ROOT / "baselines" / "h200" / "h200-1gpu-7b-nokl" / "qwen2.5-7b" / "h200x1" / "fsdp"
PREDICTIONS = EVIDENCE / "predictions" / "h200-1gpu-7b-nokl.txt"


def test_recipe_is_ok_with_four_measured_steps_and_the_argv_of_the_cut_off_run() -> None:
    r = result_matching_metrics(RECIPE)
    assert r.status == "ok" and r.exit_code == 0 and r.reason is None
    assert [s.step for s in r.steps] == [1, 2, 3, 4, 5] and r.warmup_steps == 1 and len(r.measured_steps()) == 4
    assert r.provenance.git_commit == "2930f69beafff8c00811c4365e5cf9db17b9a41c"
    assert r.provenance.start_time == "2026-12-04T17:57:32+00:00"
    assert r.reference == ID  # it is its matrix's reference
    cell = json.loads((RECIPE / "cell.json").read_text())
    for other in (CUT_OFF, RECIPE_WARM):
        assert json.loads((other / "cell.json").read_text())["argv"] == cell["argv"]
    argv = set(r.provenance.argv)
    assert {
        "actor_rollout_ref.actor.use_kl_loss=True",
        "actor_rollout_ref.actor.fsdp_config.param_offload=True",
        "actor_rollout_ref.actor.fsdp_config.optimizer_offload=True",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.3",
        "actor_rollout_ref.rollout.max_num_batched_tokens=1536",
        "algorithm.rollout_correction.bypass_mode=False",
    } <= argv
    assert classify.find_oom(log_lines(RECIPE)) is None


def test_recipe_speed_and_its_step() -> None:
    r = read_result(RECIPE / "result.json")
    assert [round(s.throughput) for s in r.measured_steps()] == [1762, 1761, 1772, 1845]
    assert median_measured(RECIPE, "throughput") == pytest.approx(1767, abs=0.5)
    assert median_measured(RECIPE, "time_per_step") == pytest.approx(142.5, abs=0.05)
    assert r.steps[0].time_per_step == pytest.approx(169.5, abs=0.05)  # the warm-up
    phases = {k: median_phase(RECIPE, k) for k in ("gen", "old_log_prob", "ref", "update_actor", "update_weights")}
    assert phases == pytest.approx(
        {"gen": 17.4, "old_log_prob": 25.5, "ref": 22.9, "update_actor": 71.6, "update_weights": 2.2}, abs=0.05
    )
    assert phases["update_actor"] / median_measured(RECIPE, "time_per_step") == pytest.approx(0.50, abs=0.005)
    # every response is the full 1024 tokens (ignore_eos): the seed's shape
    assert all(s.response_length_mean == 1024 for s in r.steps)
    assert r.lora_adapter_syncs == 6
    # the padding every training pass carries: prompts of ~95 tokens padded to 512, responses the full 1024
    prompt = statistics.median(s.extra["prompt_length/mean"] for s in r.measured_steps())
    assert prompt == pytest.approx(94.8, abs=0.05)
    assert 1 - (prompt + 1024) / 1536 == pytest.approx(0.27, abs=0.005)
    assert [round(s.total_num_tokens / 225) for s in r.measured_steps()] == [1113, 1119, 1125, 1119]
    passes = phases["old_log_prob"] + phases["ref"] + phases["update_actor"]
    assert round(passes) == 120 and passes / median_measured(RECIPE, "time_per_step") == pytest.approx(0.84, abs=0.01)
    assert all(0.16 <= s.mfu <= 0.174 for s in r.measured_steps())


def test_recipe_reproduces_the_first_host() -> None:
    now, then = median_measured(RECIPE, "throughput"), median_measured(FIRST, "throughput")
    assert then == pytest.approx(1742, abs=0.5) and abs(now - then) / then == pytest.approx(0.014, abs=0.001)
    assert median_measured(FIRST, "time_per_step") == pytest.approx(144.2, abs=0.05)
    for step in read_metrics(RECIPE / "metrics.jsonl").steps:
        assert step.extra["actor/entropy"] == pytest.approx(11.2144, abs=5e-5)
        assert 147 <= round(step.extra["training/rollout_probs_diff_mean"] * 1e8) <= 149  # "1.47e-06 to 1.49e-06"
        assert step.extra["training/rollout_actor_probs_pearson_corr"] == pytest.approx(0.997, abs=0.0005)
    warm_ups = [read_metrics(c / "metrics.jsonl").steps[0].timing_s["step"] for c in (FIRST, CUT_OFF)]
    assert [round(w, 1) for w in warm_ups] == [173.8, 174.2]


def test_recipe_memory_out_of_sample() -> None:
    r = read_result(RECIPE / "result.json")
    gpu, host = memory_errors(r)
    assert max(r.peak_memory_gb) == pytest.approx(70.1, abs=0.05) and r.predicted_memory_gb == 67.54
    assert gpu == pytest.approx(-0.036, abs=0.001) and host == pytest.approx(-0.049, abs=0.001)
    assert r.host_peak_memory_gb == pytest.approx(109.6, abs=0.05)
    assert r.host_system_peak_memory_gb == pytest.approx(103.4, abs=0.05)
    assert_prediction_committed(r, PREDICTIONS, ID)
    (row, warm) = validate_results([("recipe", r), ("warm", read_result(RECIPE_WARM / "result.json"))])
    assert row.measured and row.host_measured
    assert not warm.measured  # no step ended: shown, never scored


def test_promoted_and_the_report_line_it_makes() -> None:
    recipe = read_baseline(BASELINES / f"{ID}.json")
    assert [run.provenance.start_time for run in recipe.results] == ["2026-12-04T17:57:32+00:00"]
    nokl = read_baseline(BASELINES / f"{NOKL_ID}.json")
    runs = [(f"{b.id}:{i}", r) for b in (recipe, nokl) for i, r in enumerate(b.results)]
    (best,) = build(with_reference(flatten_all(runs))).bests
    assert best.reference is not None and best.reference.cell == ID
    assert best.reference.throughput == pytest.approx(1767, abs=0.5)
    # no other cell with the recipe's objective has run in this matrix: the fastest that fits is the reference
    assert best.fastest is not None and best.fastest.cell == ID and best.speedup == pytest.approx(1.0)
    other = best.fastest_other_objective
    assert other is not None and other.cell == NOKL_ID
    assert best.other_objective_speedup == pytest.approx(1.53, abs=0.005)


def test_compile_cache_hit_on_the_warm_run() -> None:
    cold, warm = log_lines(RECIPE), log_lines(RECIPE_WARM)
    assert any("Compiling a graph for compile range (1, 1536) takes 13.16 s" in line for line in cold)
    assert not any("Directly load the compiled graph" in line for line in cold)
    assert any(
        "Directly load the compiled graph(s) for compile range (1, 1536) from the cache, took 2.109 s" in line
        for line in warm
    )
    r = read_result(RECIPE_WARM / "result.json")
    assert r.status == "timeout" and r.steps == [] and "timed out after 365 s" in (r.reason or "")
    b_cold = startup.phase_durations(read_result(RECIPE / "result.json").startup_breakdown_s)
    b_warm = startup.phase_durations(r.startup_breakdown_s)
    assert round(b_cold["vllm_compiled"]) == 36 and round(b_warm["vllm_compiled"]) == 7
    fit_cold = read_result(RECIPE / "result.json").startup_breakdown_s["ready_to_fit"]
    fit_warm = r.startup_breakdown_s["ready_to_fit"]
    assert round(fit_cold) == 379 and round(fit_warm) == 300
    # of the 79 s, the compile cache's part is torch.compile's; the rest is the warm host (page cache, imports)
    assert round(b_cold["vllm_compiled"] - b_warm["vllm_compiled"]) == 29
    for phase, (a, b) in {"imports_done": (28, 20), "data_loaded": (71, 60), "vllm_weights_loaded": (95, 78)}.items():
        assert (round(b_cold[phase]), round(b_warm[phase])) == (a, b)
    readme = (WARM / "README.md").read_text()
    assert "torch.compile 7 s against 36 s cold" in readme and "after 300 s against 379 s" in readme


def test_readme_tables_are_generated_from_the_files() -> None:
    assert_readme_tables(HERE)
    assert_readme_tables(WARM)
