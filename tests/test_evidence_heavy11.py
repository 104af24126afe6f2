"""The twelfth heavy run (1x H200, 2026-12-06): the 7B recipe with flash-attn's Triton cross entropy, 1 warm-up + 2
measured steps. Read back from the committed files (parser fixtures) and the README's claims recomputed against
the same recipe measured without flash-attn."""

from __future__ import annotations

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
    verl_settings,
)

from suite.gate.store import plan_promotions
from suite.memory.validate import summarize, validate_results
from suite.results.io import read_result
from suite.results.provenance import run_stack, version_differences
from suite.telemetry import classify, startup

ROOT = Path(__file__).resolve().parents[1]
HERE = EVIDENCE / "2026-12-06-h200-heavy"
CELL_ID = "lora32-off_param+optimizer-tp1-rb45-attnsdpa-normpad-mnbt1536-mb15-gc"
CELL = HERE / "h200-1gpu-7b-fa" / CELL_ID
# the same verl command measured without flash-attn (tests/test_matrix_fa.py)
NOFA = (
    EVIDENCE
    / "2026-12-04-h200-heavy-2"
    / "h200-1gpu-7b-nokl"
    / "lora32-off_param+optimizer-tp1-rb45-mnbt1536-mb15-gc-nobm-klloss"
)
FLEX = (
    EVIDENCE
    / "2026-12-04-h200-heavy-4"
    / "h200-1gpu-7b-flex"
    / "lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb5-nogc"
)
LATER = (
    EVIDENCE / "2026-12-05-h200-heavy" / "h200-1gpu-7b-nokl" / "lora32-off_none-tp1-rb45-mnbt8192-mb5-nogc-nobm-klloss"
)
PREDICTIONS = EVIDENCE / "predictions" / "h200-1gpu-7b-fa.txt"
PASSES = ("old_log_prob", "ref", "update_actor")


def test_the_cell_is_ok_with_the_recipe_s_settings_and_flash_attn_recorded() -> None:
    r = result_matching_metrics(CELL)
    assert r.status == "ok" and r.exit_code == 0 and r.reason is None
    assert (r.matrix, r.profile, r.reference) == ("h200-1gpu-7b-fa", "short", CELL_ID)
    assert [s.step for s in r.steps] == [1, 2, 3] and r.warmup_steps == 1 and len(r.measured_steps()) == 2
    p = r.provenance
    assert p.git_commit == "3bb5d823beb4821d9a1e1c89c8f8f1335cbfceab"
    assert (p.start_time, p.end_time) == ("2026-12-06T02:05:32+00:00", "2026-12-06T02:16:08+00:00")
    assert (p.gpu_name, p.driver, p.cuda) == ("NVIDIA H200", "580.159.04", "13.0")
    assert p.versions["flash-attn"] == "2.8.3" and p.versions["torch"] == "2.11.0"
    assert p.env["FLASH_ATTENTION_TRITON_AMD_ENABLE"] == "TRUE"
    assert p.env["PYTHONPATH"].startswith("/tmp/fa-site:")
    argv = set(p.argv)
    assert {
        "actor_rollout_ref.actor.fsdp_config.param_offload=True",
        "actor_rollout_ref.actor.fsdp_config.optimizer_offload=True",
        "actor_rollout_ref.ref.fsdp_config.param_offload=True",
        "actor_rollout_ref.rollout.max_num_batched_tokens=1536",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=15",
        "actor_rollout_ref.model.enable_gradient_checkpointing=True",
        "actor_rollout_ref.actor.use_kl_loss=True",
        "trainer.total_training_steps=3",
    } <= argv
    assert classify.find_oom(log_lines(CELL)) is None
    assert "(False, '')" in (HERE / "session.log").read_text()
    assert "cells run with flash-attn's Triton cross entropy (/tmp/fa-site)" in (HERE / "session.log").read_text()


def test_the_two_stacks_differ_only_in_flash_attn() -> None:
    fa, nofa = read_result(CELL / "result.json"), read_result(NOFA / "result.json")
    # the recipe's run without flash-attn predates the suite's looking up flash-attn: it says nothing of it ...
    assert nofa.provenance.packages_checked is None and "flash-attn" not in nofa.provenance.versions
    assert version_differences([run_stack(fa.provenance), run_stack(nofa.provenance)]) is None
    # ... the next run on those hosts (2026-12-05) looked and found none: the stacks differ in flash-attn alone
    later = read_result(LATER / "result.json")
    assert "flash-attn" in (later.provenance.packages_checked or ())
    assert version_differences([run_stack(fa.provenance), run_stack(later.provenance)]) == "flash-attn: 2.8.3, none"
    # the same verl settings (no bypass set = verl's default False; the cell's own paths and names apart)
    mine, theirs = (
        verl_settings(r.provenance.argv, "data.", "algorithm.rollout_correction.bypass_mode") for r in (fa, nofa)
    )
    # the profile `short` did not carry bench's rollout settings in this run: sampled response lengths (ignore_eos
    # False) and verl's max_num_seqs (256, not 225); the rest is the same command
    assert mine - theirs == {"actor_rollout_ref.rollout.ignore_eos=False"}
    assert theirs - mine == {"actor_rollout_ref.rollout.ignore_eos=True", "actor_rollout_ref.rollout.max_num_seqs=225"}
    assert len(mine) > 40


def test_speed_against_the_recipe_without_flash_attn() -> None:
    r = read_result(CELL / "result.json")
    assert [round(s.throughput) for s in r.steps] == [2490, 3341, 3197]
    assert [round(s.time_per_step, 1) for s in r.steps] == [100.9, 74.8, 78.5]
    assert median_measured(CELL, "throughput") == pytest.approx(3269, abs=0.5)
    assert median_measured(CELL, "time_per_step") == pytest.approx(76.6, abs=0.05)
    assert median_measured(NOFA, "throughput") == pytest.approx(1767, abs=0.5)
    ratio = median_measured(CELL, "throughput") / median_measured(NOFA, "throughput")
    assert ratio == pytest.approx(1.85, abs=0.005)
    saved = median_measured(NOFA, "time_per_step") - median_measured(CELL, "time_per_step")
    assert saved == pytest.approx(65.8, abs=0.05)


def test_the_time_left_the_training_passes_as_the_probe_said() -> None:
    fa = {k: median_phase(CELL, k) for k in (*PASSES, "gen", "update_weights")}
    nofa = {k: median_phase(NOFA, k) for k in (*PASSES, "gen", "update_weights")}
    assert fa == pytest.approx(
        {"old_log_prob": 12.1, "ref": 11.1, "update_actor": 31.2, "gen": 19.4, "update_weights": 2.5}, abs=0.05
    )
    assert nofa == pytest.approx(
        {"old_log_prob": 25.5, "ref": 22.9, "update_actor": 71.6, "gen": 17.4, "update_weights": 2.2}, abs=0.05
    )
    assert round(sum(nofa[k] - fa[k] for k in PASSES), 1) == 65.6
    # the probe (2026-12-05): verl's loop 62.7 s a step of this shape, flash-attn's Triton cross entropy 0.14 s
    assert round(62.7 - 0.14, 1) == 62.6
    assert round(median_measured(NOFA, "time_per_step") - 62.56) == 80  # the step it predicted
    # the training passes' share of the step, with and without flash-attn
    share = lambda d, cell: sum(d[k] for k in PASSES) / median_measured(cell, "time_per_step")  # noqa: E731
    assert (round(share(fa, CELL), 2), round(share(nofa, NOFA), 2)) == (0.71, 0.84)
    # the flex cell by the same arithmetic: ~67 s a step, x1.14 this recipe (not measured)
    flex = median_measured(FLEX, "time_per_step") - 62.56
    assert round(flex) == 67 and median_measured(CELL, "time_per_step") / flex == pytest.approx(1.14, abs=0.005)


def test_numerics_as_the_recipe() -> None:
    for cell in (CELL, NOFA):
        r = read_result(cell / "result.json")
        for s in r.steps:
            assert s.extra["actor/entropy"] == pytest.approx(11.2144, abs=5e-5)
            assert 146 <= round(s.extra["training/rollout_probs_diff_mean"] * 1e8) <= 150
    r = read_result(CELL / "result.json")
    assert [round(s.response_length_mean) for s in r.steps] == [1021, 1015, 1014]
    assert all(s.response_length_mean == 1024 for s in read_result(NOFA / "result.json").steps)


def test_the_short_profile_now_carries_bench_s_rollout_settings(tmp_path: Path) -> None:
    from suite.matrix.load import load_matrix
    from suite.plan.planner import plan_matrix

    matrix = load_matrix(ROOT / "suite" / "matrices" / "h200-1gpu-7b-fa.toml")
    (short,) = [c for c in plan_matrix(matrix, "short", out_dir=tmp_path, validate_with_verl=False) if c.id == CELL_ID]
    (bench,) = [
        c for c in plan_matrix(matrix, "bench", out_dir=tmp_path / "b", validate_with_verl=False) if c.id == CELL_ID
    ]
    for key in ("actor_rollout_ref.rollout.ignore_eos", "actor_rollout_ref.rollout.max_num_seqs"):
        assert short.setting(key) == bench.setting(key) == {"actor_rollout_ref.rollout.ignore_eos": True}.get(key, 225)
    assert "inputs/train.parquet" in str(short.setting("data.train_files"))
    assert (short.total_steps, bench.total_steps) == (3, 5)


def test_memory_out_of_sample() -> None:
    r = read_result(CELL / "result.json")
    assert (max(r.peak_memory_gb), r.predicted_memory_gb) == (pytest.approx(70.4, abs=0.05), 66.99)
    assert (r.host_peak_memory_gb, r.predicted_host_memory_gb) == (109.48, 107.64)
    assert [round(e, 3) for e in memory_errors(r)] == [-0.049, -0.017]
    assert_prediction_committed(r, PREDICTIONS, CELL_ID)
    (row,) = validate_results([("cell", r)])
    assert row.measured and summarize([row]).goal_met
    # the trainer's tensors: 60.4 predicted before the GPU fit of the old log-prob pass, 63.1 since
    assert (row.torch_measured_gib, row.torch_predicted_gib) == (
        pytest.approx(64.3, abs=0.05),
        pytest.approx(63.1, abs=0.05),
    )
    # flash-attn's cross entropy moved the GPU peak by under 0.4 GiB
    assert abs(max(r.peak_memory_gb) - max(read_result(NOFA / "result.json").peak_memory_gb)) < 0.4


def test_start_up_against_the_recipe_without_flash_attn() -> None:
    fa, nofa = read_result(CELL / "result.json"), read_result(NOFA / "result.json")
    assert (round(fa.startup_breakdown_s["ready_to_fit"]), round(nofa.startup_breakdown_s["ready_to_fit"])) == (
        368,
        379,
    )
    assert (round(fa.startup_breakdown_s["first_step"]), round(nofa.startup_breakdown_s["first_step"])) == (473, 552)
    assert round(startup.phase_durations(fa.startup_breakdown_s)["vllm_compiled"]) == 34


def test_two_measured_steps_are_not_a_baseline() -> None:
    r = read_result(CELL / "result.json")
    with pytest.raises(Exception, match="2 measured step\\(s\\) over 1 run\\(s\\); the gate needs at least 4"):
        plan_promotions([(CELL / "result.json", r)], allow_failed=False, min_samples=4)


def test_readme_tables_are_generated_from_the_files() -> None:
    assert_readme_tables(HERE)
    readme = (HERE / "README.md").read_text()
    assert "3269 tokens/s/GPU, 76.6 s/step: x1.85 the same recipe without flash-attn" in readme
    assert "Measured steps 3341 / 3197 (74.8 / 78.5 s)" in readme
    assert "the training passes are 71 % of the recipe's step" in readme
