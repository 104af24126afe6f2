"""The ninth and tenth heavy runs (Qwen2.5-7B at the seed's shape, 1x H200, 2026-12-04): remove-padding on flex
attention with its 4 measured steps, then its padded sdpa twin on the same host (cut off in step 2). Read back
from the committed files (parser fixtures) and the README's claims recomputed: the speed against the recipe of
another matrix, that removing the padding left the training passes as they were, the log-prob agreement, the
planner's out-of-sample errors, the compile cache's hit, and the report line the promoted baseline makes."""

from __future__ import annotations

import json
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

ROOT = Path(__file__).resolve().parents[1]
HERE = EVIDENCE / "2026-12-04-h200-heavy-4"
FLEX_ID = "lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb5-nogc"
TWIN_ID = "lora32-off_none-tp1-rb45-attnsdpa-normpad-mnbt8192-mb5-nogc"
FLEX = HERE / "h200-1gpu-7b-flex" / FLEX_ID
TWIN = HERE / "h200-1gpu-7b-flex" / TWIN_ID
# the padded cell of the first matrix, with the same settings under the old axis names (x1.07, 1 measured step)
OLD_TWIN = (
    EVIDENCE / "2026-12-03-h200-heavy-2" / "h200-1gpu-7b" / "lora32-off_none-tp1-rb45-gmu0.3-mnbt8192-graphs-mb5-nogc"
)
RECIPE_ID = "lora32-off_param+optimizer-tp1-rb45-mnbt1536-mb15-gc-nobm-klloss"
RECIPE = EVIDENCE / "2026-12-04-h200-heavy-2" / "h200-1gpu-7b-nokl" / RECIPE_ID
STORE = ROOT / "baselines" / "h200"
PREDICTIONS = EVIDENCE / "predictions" / "h200-1gpu-7b-flex.txt"
PASSES = ("old_log_prob", "ref", "update_actor")


def test_flex_is_ok_with_four_measured_steps_read_against_the_other_matrix() -> None:
    r = result_matching_metrics(FLEX)
    assert r.status == "ok" and r.exit_code == 0 and r.reason is None
    assert [s.step for s in r.steps] == [1, 2, 3, 4, 5] and r.warmup_steps == 1 and len(r.measured_steps()) == 4
    assert r.provenance.git_commit == "07f79068bbb4079a228f22e3ed5fdd38166895b6"
    assert r.provenance.start_time == "2026-12-04T19:37:32+00:00"
    assert (r.reference, r.reference_matrix) == (RECIPE_ID, "h200-1gpu-7b-nokl")
    argv = set(r.provenance.argv)
    assert {
        "+actor_rollout_ref.model.override_config.attn_implementation=flex_attention",
        "actor_rollout_ref.model.use_remove_padding=True",
        "actor_rollout_ref.actor.use_kl_loss=True",
        "actor_rollout_ref.actor.fsdp_config.param_offload=False",
        "actor_rollout_ref.rollout.max_num_batched_tokens=8192",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=5",
    } <= argv
    # the twin differs from it in the two attention settings only
    twin = set(json.loads((TWIN / "cell.json").read_text())["argv"])
    flex = set(json.loads((FLEX / "cell.json").read_text())["argv"])
    changed = {a.split("=", 1)[0] for a in flex ^ twin if FLEX_ID not in a and TWIN_ID not in a}
    assert changed == {
        "+actor_rollout_ref.model.override_config.attn_implementation",
        "actor_rollout_ref.model.use_remove_padding",
    }
    assert classify.find_oom(log_lines(FLEX)) is None


def test_flex_speed_against_the_recipe() -> None:
    r = read_result(FLEX / "result.json")
    assert [round(s.throughput) for s in r.measured_steps()] == [1954, 1993, 1890, 1915]
    assert median_measured(FLEX, "throughput") == pytest.approx(1934, abs=0.5)
    assert median_measured(FLEX, "time_per_step") == pytest.approx(129.8, abs=0.05)
    ratio = median_measured(FLEX, "throughput") / median_measured(RECIPE, "throughput")
    assert ratio == pytest.approx(1.09, abs=0.005) and ratio < 1.25  # the goal is not met
    assert all(s.response_length_mean == 1024 for s in r.steps) and r.lora_adapter_syncs == 6
    assert all(0.179 <= s.mfu <= 0.195 for s in r.measured_steps())


def test_removing_the_padding_left_the_passes_as_they_were() -> None:
    flex = {k: median_phase(FLEX, k) for k in PASSES}
    assert flex == pytest.approx({"old_log_prob": 23.9, "ref": 21.3, "update_actor": 63.3}, abs=0.05)
    old = {k: median_phase(OLD_TWIN, k) for k in PASSES}
    assert old == pytest.approx({"old_log_prob": 23.7, "ref": 22.3, "update_actor": 66.5}, abs=0.05)
    (twin_step,) = read_result(TWIN / "result.json").steps  # its warm-up step, on this host
    assert {k: round(twin_step.timing_s[k], 1) for k in PASSES} == {
        "old_log_prob": 23.4,
        "ref": 21.9,
        "update_actor": 62.8,
    }
    # within 5 % pass by pass, though the padded passes run the model over 1536 positions per sequence and flex
    # over the ~1119 real tokens
    for k in PASSES:
        assert abs(flex[k] - old[k]) / old[k] < 0.05 and abs(flex[k] - twin_step.timing_s[k]) / flex[k] < 0.05
    real = [s.total_num_tokens / 225 for s in read_result(FLEX / "result.json").measured_steps()]
    assert all(1 - t / 1536 == pytest.approx(0.27, abs=0.006) for t in real)  # 26.8-27.5 %
    # the update without offload and checkpointing is where both beat the recipe (71.6 s)
    assert median_phase(RECIPE, "update_actor") - flex["update_actor"] == pytest.approx(8.3, abs=0.05)


def test_flex_warm_up_pays_for_its_kernels_in_the_first_old_log_prob_pass() -> None:
    flex1 = read_result(FLEX / "result.json").steps[0]
    (twin1,) = read_result(TWIN / "result.json").steps
    assert (round(flex1.time_per_step, 1), round(twin1.time_per_step, 1)) == (208.9, 147.1)
    assert (round(flex1.timing_s["old_log_prob"], 1), round(twin1.timing_s["old_log_prob"], 1)) == (66.1, 23.4)
    # later steps carry no compile cost: each measured old log-prob pass is within 4 s of the padded one
    assert all(abs(s.timing_s["old_log_prob"] - 23.4) < 4 for s in read_result(FLEX / "result.json").measured_steps())


def test_flex_gives_the_actor_the_recipe_s_log_probs() -> None:
    for cell in (FLEX, TWIN, RECIPE):
        for s in read_result(cell / "result.json").steps:
            assert 147 <= round(s.extra["training/rollout_probs_diff_mean"] * 1e8) <= 150, cell.name
            assert s.extra["training/rollout_actor_probs_pearson_corr"] == pytest.approx(0.997, abs=0.0005)
            assert s.extra["actor/entropy"] == pytest.approx(11.2144, abs=5e-5)


def test_memory_out_of_sample() -> None:
    flex, twin = read_result(FLEX / "result.json"), read_result(TWIN / "result.json")
    assert (max(flex.peak_memory_gb), flex.predicted_memory_gb) == (pytest.approx(76.5, abs=0.05), 84.2)
    assert (max(twin.peak_memory_gb), twin.predicted_memory_gb) == (pytest.approx(78.0, abs=0.05), 88.54)
    assert [round(e, 3) for e in memory_errors(flex)] == [0.101, -0.073]
    assert [round(e, 3) for e in memory_errors(twin)] == [0.134, -0.067]
    for r, cell in ((flex, FLEX_ID), (twin, TWIN_ID)):
        assert_prediction_committed(r, PREDICTIONS, cell)
    rows = validate_results([("flex", flex), ("twin", twin)])
    assert [row.measured for row in rows] == [True, True]  # the twin's warm-up step ended: its peak counts


def test_compile_cache_hit_on_the_second_cell() -> None:
    assert any("Compiling a graph for compile range (1, 8192) takes 13.54 s" in line for line in log_lines(FLEX))
    assert any(
        "Directly load the compiled graph(s) for compile range (1, 8192) from the cache, took 2.025 s" in line
        for line in log_lines(TWIN)
    )
    cold = startup.phase_durations(read_result(FLEX / "result.json").startup_breakdown_s)
    warm_result = read_result(TWIN / "result.json")
    warm = startup.phase_durations(warm_result.startup_breakdown_s)
    assert (round(cold["vllm_compiled"]), round(warm["vllm_compiled"])) == (32, 7)
    assert round(warm_result.startup_breakdown_s["ready_to_fit"]) == 270
    assert warm_result.status == "timeout" and "timed out after 509 s (last step: 1)" in (warm_result.reason or "")


def test_promoted_and_the_report_line_it_makes() -> None:
    flex = read_baseline(STORE / "h200-1gpu-7b-flex" / "qwen2.5-7b" / "h200x1" / "fsdp" / f"{FLEX_ID}.json")
    assert [run.provenance.start_time for run in flex.results] == ["2026-12-04T19:37:32+00:00"]
    nokl = sorted((STORE / "h200-1gpu-7b-nokl").rglob("*.json"))
    runs = [(f"{b.id}:{i}", r) for b in (flex, *map(read_baseline, nokl)) for i, r in enumerate(b.results)]
    bests = {b.matrix: b for b in build(with_reference(flatten_all(runs))).bests}
    line = bests["h200-1gpu-7b-flex"]
    # the flex matrix holds no recipe run: its reference is the recipe measured in h200-1gpu-7b-nokl
    assert line.reference is not None and line.reference.cell == RECIPE_ID
    assert line.fastest is not None and line.fastest.cell == FLEX_ID
    assert line.speedup == pytest.approx(1.09, abs=0.005)
    assert line.fastest_other_objective is None


def test_readme_tables_are_generated_from_the_files() -> None:
    assert_readme_tables(HERE)
    readme = (HERE / "README.md").read_text()
    assert "1934 tokens/s/GPU, 129.8 s/step, x1.09 the recipe" in readme
    assert "Measured steps 1954 / 1993 / 1890 / 1915" in readme
