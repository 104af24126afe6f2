"""The first 14B baseline (2026-12-08, 1x H100): the bf16 actor with the RoPE fix, 4 measured steps, promoted.
Read back from the committed files, and every number its README states recomputed."""

from __future__ import annotations

import json

import pytest
from evidence_helpers import (
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

from suite.gate.config import load_config
from suite.gate.sentinel import rope_note, sentinel_outcome
from suite.gate.store import plan_promotions
from suite.memory.calibration import default_calibration
from suite.memory.validate import validate_results
from suite.results.io import read_result
from suite.results.provenance import run_stack, version_differences
from suite.results.schema import Result
from suite.results.sentinels import mismatch_series
from suite.speed.fit import fit, measured_samples
from suite.speed.model import predict_work
from suite.telemetry import classify, startup

ROOT = EVIDENCE.parent
HERE = EVIDENCE / "2026-12-08-h100-14b-baseline"
ID = "lora32-off_none-tp1-rb45-gmu0.55-attnflex-rmpad-mnbt8192-mb3-nogc-mdbf16"
CELL = HERE / "h100-1gpu-14b-bf16" / ID
ROPE = EVIDENCE / "2026-12-08-h100-14b-rope" / "h100-1gpu-14b-bf16" / ID
UNFIXED = EVIDENCE / "2026-12-07-h100-heavy-2" / "h100-1gpu-14b-bf16" / ID
STORED = ROOT / "h100" / "h100-1gpu-14b-bf16" / "qwen2.5-14b" / "h100x1" / "fsdp" / f"{ID}.json"
PREDICTIONS = EVIDENCE / "predictions" / "h100-1gpu-14b-bf16.txt"
README = (HERE / "README.md").read_text()


@pytest.fixture(scope="module")
def run() -> Result:
    return result_matching_metrics(CELL)


def test_the_cell_ran_its_bench_profile_on_the_rope_runs_card_and_stack(run: Result) -> None:
    assert (run.status, run.reason, run.matrix, run.profile, run.gpu, run.n_gpus, run.model) == (
        "ok",
        None,
        "h100-1gpu-14b-bf16",
        "bench",
        "h100",
        1,
        "synthetic:qwen2.5-14b",
    )
    assert [s.step for s in run.steps] == [1, 2, 3, 4, 5] and run.warmup_steps == 1 and len(run.measured_steps()) == 4
    p = run.provenance
    assert p.git_commit == "2a96076f10c966a07aff99953d732260a4ba7794"
    assert (p.gpu_name, p.driver, p.cuda) == ("NVIDIA H100 80GB HBM3", "580.159.04", "13.0")
    assert p.versions["flash-attn"] == "2.8.3" and p.env["FLASH_ATTENTION_TRITON_AMD_ENABLE"] == "TRUE"
    rope = read_result(ROPE / "result.json")
    assert version_differences([run_stack(p), run_stack(rope.provenance)]) is None
    # the same verl command as the RoPE run but for the profile's step count
    assert verl_settings(p.argv, "trainer.total_training_steps") == verl_settings(
        rope.provenance.argv, "trainer.total_training_steps"
    )
    assert classify.find_oom(log_lines(CELL)) is None
    assert all(s.response_length_mean == 1024 for s in run.steps)
    assert (run.nvml_sample_hz, run.nvml_samples, round(run.wall_s)) == (20.0, 22648, 1132)
    session = (HERE / "session.log").read_text()
    assert "125 GiB RAM, 124 GiB available; disk: 252G total, 35G free" in session and "=== 04:53:50 done" in session
    assert "timeout 1440 s" in (HERE / "lane0.log").read_text()


def test_speed_and_the_earlier_runs_of_the_command(run: Result) -> None:
    assert [round(s.throughput) for s in run.steps] == [1173, 1751, 1696, 1751, 1739]
    assert (round(median_measured(CELL, "throughput")), round(median_measured(CELL, "time_per_step"), 1)) == (
        1745,
        144.7,
    )
    earlier = [round(median_measured(c, "throughput")) for c in (UNFIXED, ROPE)]
    assert earlier == [1738, 1722]
    gain = [round((median_measured(CELL, "throughput") / e - 1) * 100, 1) for e in earlier]
    assert gain == [0.4, 1.3]
    assert [round(median_phase(CELL, p), 1) for p in ("gen", "old_log_prob", "ref", "update_actor")] == [
        54.7,
        18.9,
        15.8,
        52.3,
    ]
    mfu = [s.mfu for s in run.measured_steps()]
    assert (round(min(mfu), 2), round(max(mfu), 2)) == (0.42, 0.45)
    assert "**The first 14B baseline: 1745 tokens/s/GPU, 144.7 s/step** (steps 1751 / 1696 / 1751 / 1739)" in README


def test_the_sentinel_passes_and_the_run_is_the_stores_baseline(run: Result) -> None:
    series = mismatch_series(run)
    assert (round(min(m.pearson for m in series), 4), round(max(m.pearson for m in series), 4)) == (0.989, 0.9904)
    assert all(5.4e-06 < m.probs_diff_mean < 5.6e-06 for m in series)
    t = load_config().for_cell(run.id).sentinel
    out = sentinel_outcome([run], None, t)
    assert out is not None and not out.failed and rope_note([run]) is None
    plan_promotions([(CELL / "result.json", run)], allow_failed=False, min_samples=4, sentinel=lambda _: t)
    stored = json.loads(STORED.read_text())
    assert (stored["id"], stored["gpu"], len(stored["results"])) == (run.id, "h100", 1)
    assert stored["results"][0]["provenance"]["start_time"] == run.provenance.start_time


def test_memory_against_the_plan_committed_before_the_cell_first_ran(run: Result) -> None:
    assert (max(run.peak_memory_gb), run.host_peak_memory_gb, run.host_system_peak_memory_gb) == (77.034, 76.51, 69.71)
    assert_prediction_committed(run, PREDICTIONS, ID)
    assert (run.predicted_memory_gb, run.predicted_host_memory_gb) == (75.14, 74.74)
    assert [round(e * 100, 1) for e in memory_errors(run)] == [-2.5, -2.3]
    (row,) = validate_results([("cell", run)], default_calibration())
    assert row.measured and row.predicted_fits and not row.false_oom
    assert any("GPU KV cache size: 80,048 tokens" in ln for ln in log_lines(CELL))
    assert any("GPU KV cache size: 76,192 tokens" in ln for ln in log_lines(ROPE))


def test_the_speed_planners_prediction(run: Result) -> None:
    """Made with the constants committed before this run: those fitted on every other committed run."""
    everything = measured_samples([ROOT])
    (new,) = [s for s in everything if s.key.endswith(f"{ID}@2026-12-08T04:34:55+00:00")]
    before = fit([s for s in everything if s.key != new.key])
    assert len(before.fitted_on) == 29
    pred = predict_work(new.work, new.settings, before)
    assert round(pred.step_s, 1) == 146.7 and round(new.step_s, 1) == 144.7
    assert round((pred.step_s / new.step_s - 1) * 100, 1) == 1.4
    assert (
        round(pred.run_s(new.total_steps)) == 1071
        and round((pred.run_s(new.total_steps) / run.wall_s - 1) * 100, 1) == -5.4
    )
    assert "146.7 s/step predicted against 144.7 (+1.4 %)" in README and "1071 s against 1132 (-5.4 %)" in README


def test_start_up_with_the_compile_cache_hit_and_the_model_info_missed(run: Result) -> None:
    b = run.startup_breakdown_s
    assert round(b["first_step"]) == 546
    d = startup.phase_durations(b)
    assert {k: round(d[k]) for k in ("data_loaded", "vllm_compiled", "first_step")} == {
        "data_loaded": 73,
        "vllm_compiled": 15,
        "first_step": 219,
    }
    lines = log_lines(CELL)
    assert any("Directly load the compiled graph(s) for compile range (1, 8192) from the cache" in ln for ln in lines)
    assert any("torch.compile took 12.77 s in total" in ln for ln in lines)
    assert any("It took 29.474483 seconds to fall asleep" in ln for ln in lines)
    assert [round(s.timing_s["old_log_prob"], 1) for s in run.steps][:2] == [50.6, 18.7]
    assert "**Start-up: 546 s to the end of step 1**" in README and "vLLM's model-class inspection 21 s" in README


def test_readme_tables_are_generated_from_the_files() -> None:
    assert_readme_tables(HERE)
    assert_readme_phase_rows(HERE, [CELL], default_calibration())
