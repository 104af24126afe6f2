"""The fourth heavy run (Qwen2.5-7B at the seed's shape, 1x H200, 2026-12-03): old log-prob bypass crashes in
the first update. Read back from the committed files (a crash fixture for the parsers) and the README's claims
recomputed: where it crashed, what the flag changed, memory up to the crash, the start-up phases."""

from __future__ import annotations

import pytest
from evidence_helpers import EVIDENCE, assert_prediction_committed, assert_readme_tables, log_lines, memory_errors

from suite.results.io import read_result
from suite.telemetry import classify, startup
from suite.telemetry.metrics import read_metrics

HERE = EVIDENCE / "2026-12-03-h200-heavy-4"
BYPASS = HERE / "h200-1gpu-7b-bypass" / "lora32-off_none-tp1-rb45-mnbt8192-mb5-nogc-bm-lpmb15"
PADDED = (
    EVIDENCE / "2026-12-03-h200-heavy-2" / "h200-1gpu-7b" / "lora32-off_none-tp1-rb45-gmu0.3-mnbt8192-graphs-mb5-nogc"
)


def test_result_is_a_crash_with_no_steps() -> None:
    r = read_result(BYPASS / "result.json")
    assert r.status == "crash" and r.exit_code == 1 and r.steps == []
    assert "grad_dtype 'Float'" in (r.reason or "") and "BFloat16" in (r.reason or "")
    assert read_metrics(BYPASS / "metrics.jsonl").steps == []
    assert r.provenance.git_commit.startswith("dc671e9")
    assert r.reference == "lora32-off_param+optimizer-tp1-rb45-mnbt1536-mb15-gc-nobm-lpmb15"


def test_only_the_bypass_flag_separates_it_from_the_cell_that_ran() -> None:
    bypass, padded = read_result(BYPASS / "result.json"), read_result(PADDED / "result.json")
    assert bypass.axes["algorithm.rollout_correction.bypass_mode"] is True
    assert len(padded.steps) == 2 and padded.status == "timeout"

    def settings(argv: tuple[str, ...] | list[str]) -> set[str]:
        # paths and names carry the matrix and cell ids; everything else is a setting
        return {a for a in argv if "/root/runs/" not in a and "project_name" not in a and "experiment_name" not in a}

    extra = settings(bypass.provenance.argv) - settings(padded.provenance.argv)
    assert extra == {"algorithm.rollout_correction.bypass_mode=True"}, extra
    assert settings(padded.provenance.argv) <= settings(bypass.provenance.argv)


def test_crash_is_in_the_first_update_after_generation() -> None:
    lines = log_lines(BYPASS)
    trace = "\n".join(lines)
    assert "in update_actor" in trace and "foreach_reduce" in trace and "loss.backward()" in trace
    assert classify.find_oom(lines) is None
    # one adapter sync, before step 1: the step never ended
    assert read_result(BYPASS / "result.json").lora_adapter_syncs == 1
    assert sum("LoRA adapter sync: remove old lora" in line for line in lines) == 1
    assert any("Training Progress:   0%|          | 0/5 [01:06" in line for line in lines)


def test_memory_up_to_the_crash_and_committed_prediction() -> None:
    r = read_result(BYPASS / "result.json")
    assert max(r.peak_memory_gb) == pytest.approx(77.05, abs=0.01)
    assert max(r.peak_memory_gb) < r.predicted_memory_gb
    assert memory_errors(r)[1] == pytest.approx(-0.060, abs=0.002)
    assert_prediction_committed(r, EVIDENCE / "predictions" / "h200-1gpu-7b-bypass.txt", BYPASS.name)


def test_startup_phases_and_the_data_phase_is_not_the_dataset() -> None:
    b = read_result(BYPASS / "result.json").startup_breakdown_s
    assert b["ready_to_fit"] == pytest.approx(342.17, abs=0.01) and "first_step" not in b
    phases = startup.phase_durations(b)
    assert phases["data_loaded"] == pytest.approx(67, abs=0.5)
    assert phases["vllm_weights_loaded"] == pytest.approx(99, abs=0.5)
    lines = log_lines(BYPASS)
    assert any("dataset len: 270" in line for line in lines)
    assert any("train and validate dataloader initialized, train dataset size: 270" in line for line in lines)


def test_readme_tables_are_generated_from_the_files() -> None:
    assert_readme_tables(HERE)
