"""The sixteenth heavy run (1x H100, 2026-12-07): the fastest cell (flex, gmu 0.4) with update micro batch 5 on the
recipe's card and stack, 1 warm-up + 4 measured steps: the first cell past x1.25, and a cell the planner of its
day called predicted-oom. Read back from the committed files and the README's claims recomputed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evidence_helpers import (
    BEFORE_FA_FIT,
    EVIDENCE,
    assert_prediction_committed,
    assert_readme_phase_rows,
    assert_readme_tables,
    log_lines,
    median_measured,
    median_phase,
    memory_errors,
    result_matching_metrics,
    verl_settings,
)
from md_tables import best_cells_row

from suite.gate.store import plan_promotions
from suite.memory.phase_validate import phase_rows
from suite.memory.settings import flash_attn_recorded, settings_from_result
from suite.memory.validate import summarize, validate_results
from suite.report.table import flatten
from suite.results.baseline import read_baseline
from suite.results.io import read_result
from suite.results.phases import held_phases, phase_peaks
from suite.results.provenance import run_stack, version_differences
from suite.telemetry import classify, startup

ROOT = Path(__file__).resolve().parents[1]
HERE = EVIDENCE / "2026-12-07-h100-heavy"
ID = "lora32-off_none-tp1-rb45-gmu0.4-attnflex-rmpad-mnbt8192-mb5-nogc"
CELL = HERE / "h100-1gpu-7b-fa-mb5" / ID
MB3 = EVIDENCE / "2026-12-06-h100-heavy-3" / "h100-1gpu-7b-fa-kv" / ID.replace("-mb5-", "-mb3-")
RECIPE_ID = "lora32-off_param+optimizer-tp1-rb45-attnsdpa-normpad-mnbt1536-mb15-gc"
RECIPE = EVIDENCE / "2026-12-06-h100-heavy-2" / "h100-1gpu-7b-fa" / RECIPE_ID
# the same cell without flash-attn (H200, gmu 0.3): the update does not depend on gmu
NO_FA = (
    EVIDENCE
    / "2026-12-04-h200-heavy-4"
    / "h200-1gpu-7b-flex"
    / "lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb5-nogc"
)
PREDICTIONS = EVIDENCE / "predictions" / "h100-1gpu-7b-fa-mb5.txt"
BASELINE = ROOT / "baselines" / "h100" / "h100-1gpu-7b-fa-mb5" / "qwen2.5-7b" / "h100x1" / "fsdp" / f"{ID}.json"
MB = "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"


def test_the_cell_is_ok_on_the_recipes_stack() -> None:
    r = result_matching_metrics(CELL)
    assert r.status == "ok" and r.exit_code == 0 and r.reason is None
    assert (r.matrix, r.profile, r.gpu, r.n_gpus) == ("h100-1gpu-7b-fa-mb5", "bench", "h100", 1)
    assert (r.reference, r.reference_matrix) == (RECIPE_ID, "h100-1gpu-7b-fa")
    assert [s.step for s in r.steps] == [1, 2, 3, 4, 5] and len(r.measured_steps()) == 4
    p = r.provenance
    assert p.git_commit == "4542dbee3cb90975d301d4b75d663074c8ed680c"
    assert (p.gpu_name, p.driver, p.cuda) == ("NVIDIA H100 80GB HBM3", "580.159.04", "13.0")
    assert p.versions["flash-attn"] == "2.8.3" and p.env["FLASH_ATTENTION_TRITON_AMD_ENABLE"] == "TRUE"
    recipe = read_result(RECIPE / "result.json")
    assert version_differences([run_stack(p), run_stack(recipe.provenance)]) is None
    assert classify.find_oom(log_lines(CELL)) is None
    assert r.lora_adapter_syncs == 6
    assert all(s.response_length_mean == 1024 for s in r.steps)
    assert (r.nvml_sample_hz, r.nvml_samples, round(r.wall_s)) == (19.95, 12461, 624)


def test_it_differs_from_the_measured_mb3_cell_in_the_micro_batch_only() -> None:
    mine = read_result(CELL / "result.json").provenance.argv
    theirs = read_result(MB3 / "result.json").provenance.argv
    assert verl_settings(mine) - verl_settings(theirs) == {f"{MB}=5"}
    assert verl_settings(theirs) - verl_settings(mine) == {f"{MB}=3"}


def test_speed_and_the_ratio_to_the_recipe() -> None:
    r = read_result(CELL / "result.json")
    assert [round(s.throughput) for s in r.steps] == [2085, 3923, 3967, 3900, 3922]
    assert [round(s.time_per_step, 1) for s in r.steps[1:]] == [63.8, 63.5, 64.9, 64.2]
    tps = median_measured(CELL, "throughput")
    assert tps == pytest.approx(3922, abs=0.5)
    assert median_measured(CELL, "time_per_step") == pytest.approx(64.0, abs=0.05)
    ratio = tps / median_measured(RECIPE, "throughput")
    assert round(ratio, 3) == 1.290 and ratio >= 1.25  # the goal
    assert round(median_measured(RECIPE, "time_per_step") / median_measured(CELL, "time_per_step"), 2) == 1.29
    assert round(tps / median_measured(MB3, "throughput"), 3) == 1.035


def test_the_gain_over_micro_batch_3_is_the_update() -> None:
    keys = ("gen", "old_log_prob", "ref", "update_actor")
    mine = {k: round(median_phase(CELL, k), 1) for k in keys}
    assert mine == {"gen": 18.3, "old_log_prob": 10.8, "ref": 8.2, "update_actor": 25.0}
    before = {k: round(median_phase(MB3, k), 1) for k in keys}
    assert before == {"gen": 18.3, "old_log_prob": 10.3, "ref": 8.0, "update_actor": 28.0}
    r = read_result(CELL / "result.json")
    assert [round(s.timing_s["old_log_prob"], 1) for s in r.measured_steps()] == [11.1, 10.5, 11.7, 10.5]
    assert round(median_phase(CELL, "update_actor") / median_measured(CELL, "time_per_step"), 2) == 0.39
    # the whole rollout is in vLLM's KV cache at gmu 0.4, as for micro batch 3
    assert any("GPU KV cache size: 299,200 tokens" in ln for ln in log_lines(CELL))


def test_memory_out_of_sample_predicted_oom_and_ran() -> None:
    r = read_result(CELL / "result.json")
    assert (max(r.peak_memory_gb), r.predicted_memory_gb) == (71.831, 78.85)
    assert (r.host_peak_memory_gb, r.predicted_host_memory_gb) == (54.11, 53.83)
    assert [round(e, 3) for e in memory_errors(r)] == [0.098, -0.005]
    assert_prediction_committed(r, PREDICTIONS, ID, status="predicted-oom")
    assert "78.8 GiB > 78.2 GiB usable on h100" in PREDICTIONS.read_text()
    (then,) = validate_results([("cell", r)], BEFORE_FA_FIT)
    assert then.measured and then.predicted_fits is False  # the planner said it would not fit; it did, 7.8 GiB spare
    assert (round(then.torch_measured_gib, 1), round(then.torch_predicted_gib, 1)) == (67.2, 71.2)
    assert summarize([then]).missed_ooms == 0
    assert then.false_oom and summarize([then]).false_oom_cells == (then.cell,)  # the planner would have pruned it


def test_memory_by_phase_at_the_planner_of_its_day() -> None:
    r = read_result(CELL / "result.json")
    assert phase_peaks(r) == {"gen": 64.872, "old_log_prob": 70.319, "ref": 70.319, "update_actor": 71.793}
    assert held_phases(r) == {"ref"}  # the update rises above the old log-prob level: a measurement here
    assert held_phases(read_result(MB3 / "result.json")) == {"ref", "update_actor"}
    rows = {row.phase: row for row in phase_rows([("x", r)], BEFORE_FA_FIT)}
    errors = {k: round(v.error * 100, 1) for k, v in rows.items() if not v.held}
    # forward_factor 5.4, fitted on 2026-12-06 to three cells, holds out of sample in the old log-prob pass
    assert errors == {"rollout": -1.0, "old_log_prob": 0.2, "actor_update": 9.8, "startup": 0.9, "steady": -3.2}
    assert (rows["actor_update"].measured_gib, rows["actor_update"].predicted_gib) == (71.79, 78.85)


def test_the_same_cell_without_flash_attn_peaks_higher_in_the_update() -> None:
    fa, no_fa = read_result(CELL / "result.json"), read_result(NO_FA / "result.json")
    assert flash_attn_recorded(fa) is True and flash_attn_recorded(no_fa) is False
    assert "flash-attn" not in no_fa.provenance.versions
    drop = ("actor_rollout_ref.rollout.gpu_memory_utilization",)
    assert verl_settings(fa.provenance.argv, *drop) == verl_settings(no_fa.provenance.argv, *drop)
    assert round(max(no_fa.peak_memory_gb) - max(fa.peak_memory_gb), 1) == 4.7  # 76.5 vs 71.8
    assert settings_from_result(fa).flash_attn_cross_entropy
    assert not settings_from_result(no_fa).flash_attn_cross_entropy


def test_since_the_fit_the_update_is_predicted_within_five_percent() -> None:
    r = read_result(CELL / "result.json")
    now = {row.phase: row for row in phase_rows([("x", r)])}
    assert now["actor_update"].predicted_gib == 75.08 and round(now["actor_update"].error * 100, 1) == 4.6
    (row,) = validate_results([("cell", r)])
    assert row.predicted_fits and round(row.error * 100, 1) == 4.5  # whole run: 75.08 against NVML's 71.83
    assert not row.false_oom
    assert round(row.torch_error * 100, 1) == 0.7  # torch's allocated peak 67.2, predicted 67.7 (was 71.2)
    # the stack without flash-attn keeps the CPU-measured copies: its cell is predicted as before
    (no_fa,) = validate_results([("cell", read_result(NO_FA / "result.json"))])
    (no_fa_then,) = validate_results([("cell", read_result(NO_FA / "result.json"))], BEFORE_FA_FIT)
    assert no_fa.predicted_gib == no_fa_then.predicted_gib == pytest.approx(78.85, abs=0.005)


def test_promoted_with_four_measured_steps_and_the_report_reads_it_against_the_recipe() -> None:
    r = read_result(CELL / "result.json")
    assert len(plan_promotions([(CELL / "result.json", r)], allow_failed=False, min_samples=4)) == 1
    (stored,) = read_baseline(BASELINE).results
    assert stored.steps == r.steps and stored.nvml_timeline == r.nvml_timeline
    assert flatten(read_baseline(BASELINE).results).peak_phase == "actor_update"
    best = best_cells_row((ROOT / "reports" / "index.md").read_text(), "h100-1gpu-7b-fa-mb5")
    assert best["fastest cell that fits"] == ID
    assert (best["tokens/s/GPU"], best["vs ref"], best["NVML peak (GiB)"]) == ("3922", "x1.29", "71.8 (pred 78.8)")
    assert best["host peak (GiB)"] == "54.1 (pred 53.8)"


def test_start_up_on_a_fresh_host_with_vllms_compile_cache() -> None:
    b = read_result(CELL / "result.json").startup_breakdown_s
    assert round(b["first_step"]) == 362
    d = startup.phase_durations(b)
    assert round(d["vllm_compiled"]) == 7 and round(d["data_loaded"]) == 52 and round(d["first_step"]) == 123
    first = json.loads((CELL / "metrics.jsonl").read_text().splitlines()[0])["data"]
    assert round(first["timing_s/old_log_prob"], 1) == 39.4  # the trainer's kernels compiled cold in step 1
    session = (HERE / "session.log").read_text()
    assert "125 GiB RAM, 124 GiB available" in session and "=== 02:10:30 done" in session


def test_readme_tables_are_generated_from_the_files() -> None:
    assert_readme_tables(HERE)
    readme = (HERE / "README.md").read_text()
    assert "(3041 tokens/s/GPU, 82.8 s/step): x1.290**" in readme
    assert_readme_phase_rows(HERE, [CELL], BEFORE_FA_FIT)
