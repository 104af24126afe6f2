"""The fourteenth heavy run (1x H100, 2026-12-06): the 7B recipe on the flash-attn stack, on the card the fastest
cell that fits ran on, 1 warm-up + 4 measured steps, with the NVML timeline that gives GPU memory by phase, and the
activation probe on CUDA. Read back from the committed files and the README's claims recomputed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evidence_helpers import (
    BEFORE_GPU_FIT,
    EVIDENCE,
    assert_prediction_committed,
    assert_readme_tables,
    log_lines,
    median_measured,
    median_phase,
    memory_errors,
    result_matching_metrics,
    verl_settings,
)

from suite.gate.store import plan_promotions
from suite.memory.phase_validate import phase_rows
from suite.results.baseline import read_baseline
from suite.results.io import read_result
from suite.results.phases import phase_peaks, step_phase_peaks
from suite.results.provenance import run_stack, version_differences
from suite.telemetry import classify, startup

ROOT = Path(__file__).resolve().parents[1]
HERE = EVIDENCE / "2026-12-06-h100-heavy-2"
CELL_ID = "lora32-off_param+optimizer-tp1-rb45-attnsdpa-normpad-mnbt1536-mb15-gc"
CELL = HERE / "h100-1gpu-7b-fa" / CELL_ID
FLEX_ID = "lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb3-nogc"
FLEX = EVIDENCE / "2026-12-06-h100-heavy" / "h100-1gpu-7b-fa" / FLEX_ID
RECIPE_H200 = EVIDENCE / "2026-12-06-h200-heavy" / "h200-1gpu-7b-fa" / CELL_ID
PREDICTIONS = EVIDENCE / "predictions" / "h100-1gpu-7b-fa.txt"
BASELINE = ROOT / "baselines" / "h100" / "h100-1gpu-7b-fa" / "qwen2.5-7b" / "h100x1" / "fsdp" / f"{CELL_ID}.json"


def test_the_recipe_is_ok_on_the_flash_attn_stack() -> None:
    r = result_matching_metrics(CELL)
    assert r.status == "ok" and r.exit_code == 0 and r.reason is None
    assert (r.matrix, r.profile, r.reference, r.gpu, r.n_gpus) == ("h100-1gpu-7b-fa", "bench", CELL_ID, "h100", 1)
    assert [s.step for s in r.steps] == [1, 2, 3, 4, 5] and len(r.measured_steps()) == 4
    p = r.provenance
    assert p.git_commit == "93ec718814c78c452f9308d8b955da7b6b68440a"
    assert (p.start_time, p.end_time) == ("2026-12-06T19:36:42+00:00", "2026-12-06T19:50:02+00:00")
    assert (p.gpu_name, p.driver, p.cuda) == ("NVIDIA H100 80GB HBM3", "580.159.04", "13.0")
    assert p.versions["flash-attn"] == "2.8.3" and p.env["FLASH_ATTENTION_TRITON_AMD_ENABLE"] == "TRUE"
    assert classify.find_oom(log_lines(CELL)) is None
    assert r.lora_adapter_syncs == 6


def test_speed_and_the_same_card_ratio() -> None:
    r = read_result(CELL / "result.json")
    assert [round(s.throughput) for s in r.steps] == [2242, 3039, 3072, 3043, 2941]
    assert [round(s.time_per_step, 1) for s in r.steps] == [112.2, 82.4, 82.0, 83.2, 85.6]
    assert median_measured(CELL, "throughput") == pytest.approx(3041, abs=0.5)
    assert median_measured(CELL, "time_per_step") == pytest.approx(82.8, abs=0.05)
    flex = read_result(FLEX / "result.json")
    # one card, one stack: the ratio the goal asks about
    assert flex.provenance.gpu_name == r.provenance.gpu_name
    assert version_differences([run_stack(r.provenance), run_stack(flex.provenance)]) is None
    ratio = median_measured(FLEX, "throughput") / median_measured(CELL, "throughput")
    assert ratio == pytest.approx(1.17, abs=0.005) and ratio < 1.25
    mine = {
        k: round(median_phase(CELL, k), 1) for k in ("gen", "old_log_prob", "ref", "update_actor", "update_weights")
    }
    assert mine == {"gen": 22.4, "old_log_prob": 12.9, "ref": 10.9, "update_actor": 33.7, "update_weights": 2.5}
    assert abs(median_phase(FLEX, "gen") - mine["gen"]) < 0.2  # generation untouched by the flex cell's levers
    # against the recipe on an H200, same stack: 8 % slower a step
    assert median_measured(CELL, "time_per_step") / median_measured(RECIPE_H200, "time_per_step") == pytest.approx(
        1.08, abs=0.005
    )


def test_the_recipe_command_is_the_h200_one() -> None:
    r, there = read_result(CELL / "result.json"), read_result(RECIPE_H200 / "result.json")
    differ = {a.split("=", 1)[0] for a in verl_settings(r.provenance.argv) ^ verl_settings(there.provenance.argv)}
    # the H200 run's short profile: sampled lengths and verl's max_num_seqs (tests/test_evidence_heavy11.py)
    assert differ == {"actor_rollout_ref.rollout.ignore_eos", "actor_rollout_ref.rollout.max_num_seqs"}
    assert all(s.response_length_mean == 1024 for s in r.steps)


def test_memory_out_of_sample() -> None:
    r = read_result(CELL / "result.json")
    assert (max(r.peak_memory_gb), r.predicted_memory_gb) == (69.936, 66.99)
    assert (r.host_peak_memory_gb, r.predicted_host_memory_gb) == (109.36, 107.64)
    assert [round(e, 3) for e in memory_errors(r)] == [-0.042, -0.016]
    assert r.host_system_peak_memory_gb == pytest.approx(103.15, abs=0.01)
    assert_prediction_committed(r, PREDICTIONS, CELL_ID)


def test_memory_by_phase() -> None:
    r = read_result(CELL / "result.json")
    tl = r.nvml_timeline
    assert tl is not None and tl.interval_s == 1.0 and len(tl.used_gb) == 800
    assert [s.seen_s for s in r.steps] == [453.65, 536.18, 618.71, 701.74, 787.77]
    # each step's line is seen about its own duration after the one before
    for a, b in zip(r.steps, r.steps[1:], strict=False):
        assert b.seen_s - a.seen_s == pytest.approx(b.time_per_step, abs=1.0)
    assert phase_peaks(r) == {"gen": 26.946, "old_log_prob": 69.936, "ref": 44.661, "update_actor": 54.932}
    # the run's peak is the old log-prob pass's, in every step, warm-up included
    assert all(max(p, key=p.get) == "old_log_prob" for p in step_phase_peaks(r).values())
    assert max(phase_peaks(r).values()) == max(r.peak_memory_gb)
    # the planner the cell was predicted by, before the GPU fit of the old log-prob pass (which this cell is one of
    # the three fitted cells of: +0.2 % since)
    rows = {row.phase: row for row in phase_rows([("x", r)], BEFORE_GPU_FIT)}
    assert {k: round(v.error * 100, 1) for k, v in rows.items()} == {
        "rollout": 0.4,
        "old_log_prob": -19.2,
        "ref_log_prob": 13.9,
        "actor_update": 22.0,
    }
    now = {row.phase: round(row.error * 100, 1) for row in phase_rows([("x", r)])}
    # and of the update where flash-attn is installed (2026-12-07), which this cell is one of two fitted cells of
    assert now == {**{k: round(v.error * 100, 1) for k, v in rows.items()}, "old_log_prob": 0.2, "actor_update": 1.4}
    # the planner's worst phase is the update; the measured one is old log-prob, ~13.4 GiB over its prediction,
    # 2.6 copies of the pass's logits (18165 tokens x 152064 x bf16)
    unit = 18165 * 152064 * 2 / 2**30
    assert (rows["old_log_prob"].measured_gib - rows["old_log_prob"].predicted_gib) / unit == pytest.approx(
        2.6, abs=0.05
    )


def test_activation_probe_on_cuda() -> None:
    for t in (4096, 18165):
        doc = json.loads((HERE / "activation-probe" / f"t{t}.json").read_text())
        assert doc["gpu"] == "NVIDIA H100 80GB HBM3" and doc["tokens"] == t and doc["autocast"] == "bf16"
        rows = {(x["mode"], x["layout"], x["cross_entropy"], x["entropy_fn"]): x for x in doc["logits"]}
        assert len(rows) == 20
        for ce in ("flash_attn", "verl"):
            assert rows[("old_log_prob", "packed", ce, "eager")]["peak_units"] == pytest.approx(7.0, abs=0.03)
            assert rows[("old_log_prob", "packed", ce, "compiled")]["peak_units"] == pytest.approx(1.0, abs=0.01)
            assert rows[("ref_log_prob", "packed", ce, None)]["peak_units"] == pytest.approx(1.0, abs=0.01)
            assert rows[("update_entropy", "packed", ce, "eager")]["peak_units"] == pytest.approx(14.0, abs=0.01)
        assert rows[("update", "packed", "flash_attn", None)]["peak_units"] == pytest.approx(2.0, abs=0.03)
        assert rows[("update", "packed", "verl", None)]["peak_units"] == pytest.approx(3.0, abs=0.01)
        padded = [x for k, x in rows.items() if k[1] == "padded"]
        if t == 4096:
            assert rows[("old_log_prob", "padded", "verl", "eager")]["peak_units"] == pytest.approx(7.0, abs=0.01)
            assert all("error" not in x for x in padded)
        else:  # the probe's own padded layout failed there (fixed since: tests/test_activation_probe_cuda.py)
            assert all((x.get("error") and "peak_units" not in x) or x.get("peak_units") is None for x in padded)


def test_promoted_with_four_measured_steps() -> None:
    r = read_result(CELL / "result.json")
    assert len(plan_promotions([(CELL / "result.json", r)], allow_failed=False, min_samples=4)) == 1
    (stored,) = read_baseline(BASELINE).results
    assert stored.steps == r.steps and stored.nvml_timeline == r.nvml_timeline


def test_start_up() -> None:
    b = read_result(CELL / "result.json").startup_breakdown_s
    assert (round(b["ready_to_fit"]), round(b["first_step"])) == (337, 454)
    d = startup.phase_durations(b)
    assert {k: round(d[k]) for k in ("data_loaded", "actor_initialized", "vllm_compiled")} == {
        "data_loaded": 63,
        "actor_initialized": 65,
        "vllm_compiled": 34,
    }


def test_readme_tables_are_generated_from_the_files() -> None:
    assert_readme_tables(HERE)
    readme = (HERE / "README.md").read_text()
    assert "**The recipe: 3041 tokens/s/GPU, 82.8 s/step** over 4 measured steps (3039 / 3072 / 3043 / 2941" in readme
    assert "**Same card, same stack: the fastest cell that fits is x1.17 the recipe**" in readme
    for row in phase_rows([("x", read_result(CELL / "result.json"))], BEFORE_GPU_FIT):
        assert (
            f"| {CELL_ID} | {row.phase} ({row.verl_phase}) | {row.measured_gib:.1f} | {row.predicted_gib:.1f} |"
            in readme
        )


def test_the_kv_cache_holds_under_half_the_rollout() -> None:
    """What h100-1gpu-7b-fa-kv is for: at gpu_memory_utilization 0.3 vLLM's KV cache holds ~98 of the 225
    responses of a step at once, in the recipe and in the flex cell alike (vLLM's own log lines)."""
    for cell, tokens, conc in ((CELL, "151,456", "98.60x"), (FLEX, "149,808", "97.53x")):
        lines = log_lines(cell)
        assert any(f"GPU KV cache size: {tokens} tokens" in ln for ln in lines)
        assert any(f"Maximum concurrency for 1,536 tokens per request: {conc}" in ln for ln in lines)
    assert "actor_rollout_ref.rollout.gpu_memory_utilization=0.3" in read_result(CELL / "result.json").provenance.argv
