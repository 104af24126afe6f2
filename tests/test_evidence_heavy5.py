"""The fifth heavy run (Qwen2.5-7B at the seed's shape, 1x H200, 2026-12-03): no KL loss and old log-prob bypass,
the first heavy cell to finish its 4 measured steps. Read back from the committed files (parser fixtures) and
the README's claims recomputed: speed against the recipe and the cell with both passes, what the step is made
of, the planner's errors, the promoted baseline, and the gate's heavy-cell thresholds that let it be one."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest
from evidence_helpers import (
    EVIDENCE,
    assert_prediction_committed,
    assert_readme_tables,
    median_measured,
    median_phase,
    memory_errors,
    result_matching_metrics,
)

from suite.gate.compare import required_samples
from suite.gate.config import load_config
from suite.results.baseline import read_baseline
from suite.results.io import read_result
from suite.telemetry import classify, startup

ROOT = Path(__file__).resolve().parents[1]
FIRST = EVIDENCE / "2026-12-03-h200-heavy"
HERE = EVIDENCE / "2026-12-03-h200-heavy-5"
NOKL = HERE / "h200-1gpu-7b-nokl" / "lora32-off_none-tp1-rb45-mnbt8192-mb5-nogc-bm-noklloss"
REF = FIRST / "h200-1gpu-7b" / "lora32-off_param+optimizer-tp1-rb45-gmu0.3-mnbt1536-graphs-mb15-gc"
BOTH = (
    EVIDENCE / "2026-12-03-h200-heavy-2" / "h200-1gpu-7b" / "lora32-off_none-tp1-rb45-gmu0.3-mnbt8192-graphs-mb5-nogc"
)
BASELINE = ROOT / "baselines" / "h200" / "h200-1gpu-7b-nokl" / "qwen2.5-7b" / "h200x1" / "fsdp" / (NOKL.name + ".json")


def test_result_is_ok_with_four_measured_steps_and_matches_its_metrics() -> None:
    r = result_matching_metrics(NOKL)
    assert r.status == "ok" and r.exit_code == 0 and r.warmup_steps == 1
    assert [s.step for s in r.steps] == [1, 2, 3, 4, 5]
    assert len(r.measured_steps()) == 4
    argv = set(r.provenance.argv)
    assert {"actor_rollout_ref.actor.use_kl_loss=False", "algorithm.use_kl_in_reward=False"} <= argv
    assert "algorithm.rollout_correction.bypass_mode=True" in argv
    assert r.axes["use_kl_loss"] is False and r.provenance.git_commit.startswith("8c67997")


def test_speed_against_the_recipe_and_the_cell_with_both_passes() -> None:
    tput = median_measured(NOKL, "throughput")
    assert tput == pytest.approx(2699, abs=1) and median_measured(NOKL, "time_per_step") == pytest.approx(
        93.4, abs=0.05
    )
    assert tput / median_measured(REF, "throughput") == pytest.approx(1.55, abs=0.005)
    assert tput / median_measured(BOTH, "throughput") == pytest.approx(1.43, abs=0.005)
    saved = median_measured(BOTH, "time_per_step") - median_measured(NOKL, "time_per_step")
    passes = median_phase(BOTH, "old_log_prob") + median_phase(BOTH, "ref")
    assert saved == pytest.approx(39.3, abs=0.1) and passes - saved == pytest.approx(6.7, abs=0.2)


def test_the_step_is_generation_and_one_update() -> None:
    r = read_result(NOKL / "result.json")
    assert all("ref" not in s.timing_s for s in r.steps)  # no reference pass without the KL loss
    assert all(s.timing_s["old_log_prob"] < 0.1 for s in r.measured_steps())  # bypass copies vLLM's log-probs
    assert median_phase(NOKL, "gen") == pytest.approx(19.4, abs=0.05)
    assert median_phase(NOKL, "update_actor") == pytest.approx(71.3, abs=0.05)
    updates = [s.timing_s["update_actor"] for s in r.measured_steps()]
    assert min(updates) == pytest.approx(64.2, abs=0.05) and max(updates) == pytest.approx(73.3, abs=0.05)
    assert median_phase(NOKL, "update_actor") / median_measured(NOKL, "time_per_step") == pytest.approx(0.76, abs=0.005)


def test_off_policy_metrics_of_bypass() -> None:
    rows = [json.loads(line) for line in (NOKL / "metrics.jsonl").read_text().splitlines() if line.strip()]
    data = [row.get("data", row) for row in rows]
    kl = [d["actor/ppo_kl"] for d in data]
    assert min(kl) >= 0.0039 and max(kl) <= 0.0042
    assert all(d["actor/pg_clipfrac"] == 0.0 for d in data)
    assert not any("actor/entropy" in d or "training/rollout_actor_probs_pearson_corr" in d for d in data)


def test_memory_errors_out_of_sample_and_committed_prediction() -> None:
    r = read_result(NOKL / "result.json")
    gpu_err, host_err = memory_errors(r)
    assert gpu_err == pytest.approx(0.119, abs=0.002) and host_err == pytest.approx(-0.069, abs=0.002)
    assert r.torch_memory.max_memory_allocated_gb == pytest.approx(71.5, abs=0.05)
    assert_prediction_committed(r, EVIDENCE / "predictions" / "h200-1gpu-7b-nokl.txt", NOKL.name)


def test_log_syncs_and_startup() -> None:
    r = read_result(NOKL / "result.json")
    lines = lzma.decompress((NOKL / "log.txt.xz").read_bytes()).decode().splitlines()
    assert r.lora_adapter_syncs == sum("LoRA adapter sync: remove old lora" in line for line in lines) == 6
    assert classify.find_oom(lines) is None
    # the one traceback is the shutdown's: a DataLoader worker killed after the last step, exit code 0
    end = next(i for i, line in enumerate(lines) if "Final validation metrics" in line)
    assert not any("Traceback" in line for line in lines[:end]) and r.exit_code == 0
    assert any("DataLoader worker" in line and "killed by signal" in line for line in lines[end:])
    b = r.startup_breakdown_s
    assert b["ready_to_fit"] == pytest.approx(363.68, abs=0.01) and b["first_step"] == pytest.approx(487.67, abs=0.01)
    phases = startup.phase_durations(b)
    assert phases["vllm_weights_loaded"] == pytest.approx(113, abs=0.5)
    assert phases["vllm_compiled"] == pytest.approx(41.5, abs=0.1) and phases["data_loaded"] == pytest.approx(
        60, abs=0.5
    )


def test_promoted_baseline_is_this_run_under_the_heavy_thresholds() -> None:
    base = read_baseline(BASELINE)
    assert [run.provenance.start_time for run in base.results] == [
        read_result(NOKL / "result.json").provenance.start_time
    ]
    config = load_config(None)
    heavy = config.for_cell(read_result(NOKL / "result.json").id).throughput
    assert heavy.alpha == 0.05 and required_samples(heavy) == 4
    # small models keep the default: 5 samples at alpha 0.01
    assert required_samples(config.for_cell("qwen2.5-0.5b/h200x1/fsdp/full-off_none-tp1-rb16").throughput) == 5


def test_readme_tables_are_generated_from_the_files() -> None:
    assert_readme_tables(HERE)
