"""The thirteenth heavy run (1x H100, 2026-12-06): the fastest 7B recipe-objective cell that fits 80 GB, on the
flash-attn stack, 1 warm-up + 4 measured steps. Read back from the committed files (parser fixtures) and the
README's claims recomputed, against the recipe measured on the same stack on an H200."""

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
    verl_settings,
)

from suite.gate.store import plan_promotions
from suite.memory.predict import predict_cell
from suite.memory.validate import summarize, validate_results
from suite.results.baseline import read_baseline
from suite.results.io import read_result
from suite.results.provenance import run_stack, version_differences
from suite.run.cellio import cell_from_dict
from suite.telemetry import classify, startup

ROOT = Path(__file__).resolve().parents[1]
HERE = EVIDENCE / "2026-12-06-h100-heavy"
CELL_ID = "lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb3-nogc"
CELL = HERE / "h100-1gpu-7b-fa" / CELL_ID
RECIPE_ID = "lora32-off_param+optimizer-tp1-rb45-attnsdpa-normpad-mnbt1536-mb15-gc"
RECIPE_H200 = EVIDENCE / "2026-12-06-h200-heavy" / "h200-1gpu-7b-fa" / RECIPE_ID
RECIPE_NOFA = (
    EVIDENCE
    / "2026-12-04-h200-heavy-2"
    / "h200-1gpu-7b-nokl"
    / "lora32-off_param+optimizer-tp1-rb45-mnbt1536-mb15-gc-nobm-klloss"
)
FLEX_MB5 = (
    EVIDENCE
    / "2026-12-04-h200-heavy-4"
    / "h200-1gpu-7b-flex"
    / "lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb5-nogc"
)
PREDICTIONS = EVIDENCE / "predictions" / "h100-1gpu-7b-fa.txt"
BASELINE = ROOT / "baselines" / "h100" / "h100-1gpu-7b-fa" / "qwen2.5-7b" / "h100x1" / "fsdp" / f"{CELL_ID}.json"


def test_the_cell_is_ok_with_its_settings_and_flash_attn_recorded() -> None:
    r = read_result(CELL / "result.json")
    assert r.status == "ok" and r.exit_code == 0 and r.reason is None
    assert (r.matrix, r.profile, r.reference, r.gpu, r.n_gpus) == ("h100-1gpu-7b-fa", "bench", RECIPE_ID, "h100", 1)
    assert [s.step for s in r.steps] == [1, 2, 3, 4, 5] and r.warmup_steps == 1 and len(r.measured_steps()) == 4
    p = r.provenance
    assert p.git_commit == "a54243e0dcfb38a1c849de616dea84c3e5ccfadf"
    assert (p.start_time, p.end_time) == ("2026-12-06T02:55:34+00:00", "2026-12-06T03:06:23+00:00")
    assert (p.gpu_name, p.driver, p.cuda) == ("NVIDIA H100 80GB HBM3", "580.159.04", "13.0")
    assert p.versions["flash-attn"] == "2.8.3" and p.env["FLASH_ATTENTION_TRITON_AMD_ENABLE"] == "TRUE"
    assert {
        "actor_rollout_ref.actor.fsdp_config.param_offload=False",
        "actor_rollout_ref.actor.fsdp_config.optimizer_offload=False",
        "+actor_rollout_ref.model.override_config.attn_implementation=flex_attention",
        "actor_rollout_ref.model.use_remove_padding=True",
        "actor_rollout_ref.model.enable_gradient_checkpointing=False",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=3",
        "actor_rollout_ref.rollout.max_num_batched_tokens=8192",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.3",
        "actor_rollout_ref.actor.use_kl_loss=True",
        "actor_rollout_ref.rollout.ignore_eos=True",
        "trainer.total_training_steps=5",
    } <= set(p.argv)
    assert classify.find_oom(log_lines(CELL)) is None
    assert "cells run with flash-attn's Triton cross entropy (/tmp/fa-site)" in (HERE / "session.log").read_text()


def test_the_fallback_defect_is_on_record() -> None:
    lane = (HERE / "lane0.log").read_text()
    assert f"[1/1] qwen2.5-7b/h100x1/fsdp/{CELL_ID}: ok" in lane
    assert f"{CELL_ID} ended 'no result' with flash-attn's files: again without them (timeout 810 s)" in lane
    # the result's steps are whole although the rerun deleted metrics.jsonl: the result had parsed all five
    assert not (CELL / "metrics.jsonl").exists()
    script = (ROOT / "tools" / "gpu" / "session-heavy.sh").read_text()
    assert '-name "$cell"' in script and "-nofa" not in script


def test_speed() -> None:
    r = read_result(CELL / "result.json")
    assert [round(s.throughput) for s in r.steps] == [2007, 3572, 3562, 3599, 3555]
    assert [round(s.time_per_step, 1) for s in r.steps] == [125.4, 70.1, 70.7, 70.3, 70.8]
    assert median_measured(CELL, "throughput") == pytest.approx(3567, abs=0.5)
    assert median_measured(CELL, "time_per_step") == pytest.approx(70.5, abs=0.05)
    assert all(s.response_length_mean == 1024 for s in r.steps)


def test_against_the_recipe_on_another_card() -> None:
    fa_h200 = read_result(RECIPE_H200 / "result.json")
    assert fa_h200.provenance.gpu_name == "NVIDIA H200"
    mine = read_result(CELL / "result.json")
    # the two runs' stacks are the same: the ratio's caveat is the card, not the software
    assert version_differences([run_stack(mine.provenance), run_stack(fa_h200.provenance)]) is None
    ratio = median_measured(CELL, "throughput") / median_measured(RECIPE_H200, "throughput")
    assert ratio == pytest.approx(1.09, abs=0.005)
    here = {
        k: round(median_phase(CELL, k), 2) for k in ("gen", "old_log_prob", "ref", "update_actor", "update_weights")
    }
    there = {k: round(median_phase(RECIPE_H200, k), 1) for k in ("gen", "old_log_prob", "ref", "update_actor")}
    assert here == pytest.approx(
        {"gen": 22.34, "old_log_prob": 10.45, "ref": 8.1, "update_actor": 27.94, "update_weights": 1.25}, abs=0.01
    )
    assert there == {"gen": 19.4, "old_log_prob": 12.1, "ref": 11.1, "update_actor": 31.2}
    # the same objective and shape: the recipe's and this cell's verl settings differ only in the swept axes
    differ = {a.split("=", 1)[0] for a in verl_settings(mine.provenance.argv) ^ verl_settings(fa_h200.provenance.argv)}
    assert differ == {
        "actor_rollout_ref.actor.fsdp_config.param_offload",
        "actor_rollout_ref.actor.fsdp_config.optimizer_offload",
        "actor_rollout_ref.ref.fsdp_config.param_offload",
        "+actor_rollout_ref.model.override_config.attn_implementation",
        "actor_rollout_ref.model.use_remove_padding",
        "actor_rollout_ref.model.enable_gradient_checkpointing",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
        "actor_rollout_ref.rollout.max_num_batched_tokens",
        # the H200 run's short profile: sampled lengths and verl's max_num_seqs (tests/test_evidence_heavy11.py)
        "actor_rollout_ref.rollout.ignore_eos",
        "actor_rollout_ref.rollout.max_num_seqs",
    }


def test_memory_out_of_sample() -> None:
    r = read_result(CELL / "result.json")
    assert (max(r.peak_memory_gb), r.predicted_memory_gb) == (70.29, 61.9)
    assert (r.host_peak_memory_gb, r.predicted_host_memory_gb) == (54.15, 53.83)
    assert [round(e, 3) for e in memory_errors(r)] == [-0.119, -0.006]
    assert_prediction_committed(r, PREDICTIONS, CELL_ID)
    (then,) = validate_results([("cell", r)], BEFORE_GPU_FIT)
    assert then.measured and not summarize([then]).goal_met
    assert (then.torch_measured_gib, then.torch_predicted_gib) == (
        pytest.approx(63.4, abs=0.05),
        pytest.approx(55.7, abs=0.05),
    )
    # the GPU fit of the old log-prob pass (three other cells' phases) brings this cell to +0.3 %, tensors 63.5
    (row,) = validate_results([("cell", r)])
    assert summarize([row]).goal_met and round(row.error, 3) == 0.003
    assert row.torch_predicted_gib == pytest.approx(63.5, abs=0.05) and row.phase == "old_log_prob"


def test_the_log_prob_pass_pattern_the_readme_points_to() -> None:
    """Three cells whose log-prob passes run micro batch 15 peak within 0.9 GiB of torch tensors, whatever their
    update; the planner's log-prob pass for them is ~53-54 GiB, its worst phase the update."""
    torch_peaks = {}
    for cell in (CELL, RECIPE_H200, RECIPE_NOFA):
        r = read_result(cell / "result.json")
        assert "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=3" in r.provenance.argv or (
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=15" in r.provenance.argv
        )
        assert "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=15" in r.provenance.argv
        torch_peaks[cell.name] = r.torch_memory.max_memory_allocated_gb
    assert max(torch_peaks.values()) - min(torch_peaks.values()) < 0.9
    # the planner of the README's day, before the GPU fit of the old log-prob pass
    prediction = predict_cell(cell_from_dict(json.loads((CELL / "cell.json").read_text())), BEFORE_GPU_FIT)
    assert prediction.phase == "actor_update"
    (old,) = [p for p in prediction.phases if p.name == "old_log_prob"]
    tensors = sum(v for k, v in old.components.items() if k not in ("vllm_asleep", "runtime_overhead"))
    assert tensors == pytest.approx(53.4, abs=0.1)
    # ... ~10 GiB under the measured peak: about two bf16 copies of the pass's logits
    assert 9 < torch_peaks[CELL_ID] - tensors < 11
    # the flex cell at micro batch 5 (no flash-attn) peaks in its update, above any log-prob pass: consistent
    flex = read_result(FLEX_MB5 / "result.json")
    assert flex.torch_memory.max_memory_allocated_gb > max(torch_peaks.values()) + 4


def test_promoted_with_four_measured_steps() -> None:
    r = read_result(CELL / "result.json")
    assert len(plan_promotions([(CELL / "result.json", r)], allow_failed=False, min_samples=4)) == 1
    (stored,) = read_baseline(BASELINE).results
    assert stored.steps == r.steps and stored.provenance.git_commit == r.provenance.git_commit


def test_start_up() -> None:
    r = read_result(CELL / "result.json")
    b = r.startup_breakdown_s
    assert (round(b["ready_to_fit"]), round(b["first_step"])) == (233, 361)
    d = startup.phase_durations(b)
    assert {k: round(d[k]) for k in ("data_loaded", "actor_initialized", "vllm_compiled")} == {
        "data_loaded": 44,
        "actor_initialized": 33,
        "vllm_compiled": 24,
    }
    recipe = read_result(RECIPE_H200 / "result.json").startup_breakdown_s
    assert round(startup.phase_durations(recipe)["actor_initialized"]) == 77
    # bench reads a train file of only the prompts its steps consume
    assert "/inputs/train.parquet" in next(a for a in r.provenance.argv if a.startswith("data.train_files="))


def test_readme_tables_are_generated_from_the_files() -> None:
    assert_readme_tables(HERE)
    readme = (HERE / "README.md").read_text()
    assert "**3567 tokens/s/GPU, 70.5 s/step** over 4 measured steps (3572 / 3562 / 3599 / 3555" in readme
    assert "That makes this cell x1.09 across cards" in readme
    assert "NVML 70.3 GiB against 61.9 predicted (-11.9 %)" in readme
