"""The first heavy cell (Qwen2.5-7B, the 32B LoRA recipe per GPU, 1x H200, 2026-12-03) as parser fixtures:
the committed files read back to the numbers the run wrote, and the planner still predicts what it predicted
before the run (its first out-of-sample check at realistic size)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from evidence_helpers import BEFORE_GPU_FIT, assert_readme_tables, log_lines

from suite.memory.calibration import default_calibration
from suite.memory.host import predict_host
from suite.memory.predict import predict_cell
from suite.memory.settings import settings_from_result
from suite.results.io import read_result
from suite.telemetry import classify, startup
from suite.telemetry.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
EVIDENCE = ROOT / "baselines" / "evidence" / "2026-12-03-h200-heavy"
REF = EVIDENCE / "h200-1gpu-7b" / "lora32-off_param+optimizer-tp1-rb45-gmu0.3-mnbt1536-graphs-mb15-gc"
CAND = EVIDENCE / "h200-1gpu-7b" / "lora32-off_none-tp1-rb45-gmu0.3-mnbt8192-graphs-mb25-gc"


def test_metrics_read_back_to_the_result_the_run_wrote() -> None:
    result = read_result(REF / "result.json")
    metrics = read_metrics(REF / "metrics.jsonl")
    assert [s.step for s in metrics.steps] == [1, 2, 3] == [s.step for s in result.steps]
    for parsed, recorded in zip(metrics.steps, result.steps, strict=True):
        assert parsed.throughput == pytest.approx(recorded.throughput)
        assert parsed.time_per_step == pytest.approx(recorded.time_per_step)
        assert parsed.timing_s == pytest.approx(recorded.timing_s)
    # fixed-length rollouts at the seed's shape: 225 responses of exactly 1024 tokens
    assert all(s.response_length_mean == 1024.0 for s in metrics.steps)
    # prompts differ per batch: 225 x 1024 response tokens plus 45 prompts' tokens x 5
    assert all(225 * 1024 < (s.total_num_tokens or 0) < 225 * (1024 + 512) for s in metrics.steps)
    measured = result.measured_steps()
    assert [s.step for s in measured] == [2, 3]  # warm-up 1
    assert statistics.median(s.throughput for s in measured) == pytest.approx(1742, abs=1)
    assert 140 < statistics.median(s.time_per_step for s in measured) < 150
    # the update is half the step; generation is the smallest of the four phases
    s2 = metrics.steps[1].timing_s
    assert s2["update_actor"] > 0.45 * s2["step"] and s2["gen"] < min(s2["old_log_prob"], s2["ref"])


def test_rollout_vs_actor_probabilities_are_kept_per_step() -> None:
    """verl 0.9.1 logs the rollout/actor probability mismatch every step: what a correctness sentinel reads."""
    for s in read_metrics(REF / "metrics.jsonl").steps:
        assert s.extra["training/rollout_probs_diff_valid"] == 1.0
        assert 0 < s.extra["training/rollout_probs_diff_max"] < 1e-2
        assert s.extra["training/rollout_probs_diff_mean"] < 1e-4
        assert s.extra["training/rollout_actor_probs_pearson_corr"] > 0.99


def test_result_records_both_memories_and_the_timeout() -> None:
    r = read_result(REF / "result.json")
    assert r.status == "timeout" and "last step: 3" in (r.reason or "")
    assert r.gpu == "h200" and r.provenance.gpu_name == "NVIDIA H200"
    assert r.provenance.versions["vllm"] == "0.25.1" and r.provenance.versions["verl"] == "0.9.1"
    assert r.reference == r.id.rsplit("/", 1)[-1]  # the reference cell itself
    assert r.peak_memory_gb == [pytest.approx(70.06, abs=0.01)]
    assert r.host_peak_memory_gb == pytest.approx(109.49) and r.host_system_peak_memory_gb == pytest.approx(103.34)
    assert r.host_memory_total_gb == pytest.approx(125.85)
    assert r.host_system_peak_memory_gb < 0.95 * r.host_memory_total_gb  # Ray's memory monitor did not fire


def test_startup_milestones_survive_trimming() -> None:
    lines = log_lines(REF)
    seen = startup.milestones_in(lines)
    recorded = read_result(REF / "result.json").startup_breakdown_s
    expected = {
        "imports_done",
        "ray_started",
        "data_loaded",
        "actor_initialized",
        "vllm_weights_loaded",
        "vllm_compiled",
        "vllm_graphs_captured",
        "vllm_engine_ready",
        "ready_to_fit",
    }
    assert expected <= set(seen) and expected <= set(recorded)
    # the bench subset: verl saw 270 train rows, (1 warm-up + 4 steps + 1 spare) x 45 prompts
    assert any("dataset len: 270" in line for line in lines)
    phases = startup.phase_durations(recorded)
    assert phases["first_step"] == pytest.approx(recorded["first_step"] - recorded["ready_to_fit"])


def test_interrupted_candidate_log_is_not_a_crash() -> None:
    """The candidate's host went away in step 1: its log has no traceback, so ingest kept `interrupted`."""
    lines = log_lines(CAND)
    assert classify.find_oom(lines) is None
    assert read_result(CAND / "result.json").status == "interrupted"
    assert "KV cache size: 490,352 tokens" in "\n".join(lines)


def test_planner_predictions_committed_before_the_run_still_hold() -> None:
    """The result carries the predictions committed before the run (`predicted-*.txt`: GPU 67.5, -3.6 %); the
    planner since the measured activation and logits terms (docs/memory.md) says 67.0 GiB (-4.4 %), and since the
    GPU fit of the old log-prob pass 70.1 (+0.1 %); the host: 104.2 committed (-4.9 % against the tree's RSS), 107.6
    (-1.8 %) with the TransferQueue actors counted."""
    r = read_result(REF / "result.json")
    s = settings_from_result(r)
    cell = type(
        "C",
        (),
        {"argv": r.provenance.argv, "model": r.model, "gpu": r.gpu, "n_gpus": r.n_gpus, "backend": r.backend},
    )()
    gpu = predict_cell(cell, BEFORE_GPU_FIT)
    now = predict_cell(cell)
    assert now.peak_gib == pytest.approx(70.10, abs=0.01) and now.phase == "old_log_prob"
    assert (now.peak_gib - max(r.peak_memory_gb)) / max(r.peak_memory_gb) == pytest.approx(0.001, abs=0.002)
    host = predict_host(s, default_calibration())
    assert r.predicted_memory_gb == pytest.approx(67.54, abs=0.01)
    assert (r.predicted_memory_gb - max(r.peak_memory_gb)) / max(r.peak_memory_gb) == pytest.approx(-0.036, abs=0.002)
    assert gpu.peak_gib == pytest.approx(66.99, abs=0.01)
    assert (gpu.peak_gib - max(r.peak_memory_gb)) / max(r.peak_memory_gb) == pytest.approx(-0.044, abs=0.002)
    assert r.predicted_host_memory_gb == pytest.approx(104.16, abs=0.01)
    assert (r.predicted_host_memory_gb - r.host_peak_memory_gb) / r.host_peak_memory_gb == pytest.approx(
        -0.049, abs=0.002
    )
    assert host.peak_gib == pytest.approx(107.64, abs=0.01)
    assert (host.peak_gib - r.host_peak_memory_gb) / r.host_peak_memory_gb == pytest.approx(-0.018, abs=0.002)
    committed = (EVIDENCE / "predicted-h200-1gpu-7b.txt").read_text()
    ref_row = next(line for line in committed.splitlines() if "(ref)" in line)
    assert f"{r.predicted_memory_gb:.1f}" in ref_row and f"{r.predicted_host_memory_gb:.1f}" in ref_row


def test_readme_tables_are_generated_from_the_files() -> None:
    assert_readme_tables(EVIDENCE)
    assert json.loads((REF / "cell.json").read_text())["id"] == REF.name
