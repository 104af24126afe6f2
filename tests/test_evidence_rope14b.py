"""The 14B bf16 actor with suite/run/rope_fp32.py on one H100 (2026-12-08): the RoPE fix at 14B, against the same
command without it on the same card and stack (2026-12-07). Read back from the committed files and every number the
README states recomputed."""

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

from suite.cli import main
from suite.errors import InputError
from suite.gate.config import load_config
from suite.gate.sentinel import rope_note, sentinel_outcome
from suite.gate.store import plan_promotions
from suite.memory.calibration import default_calibration
from suite.memory.validate import validate_results
from suite.plan.cell import EXTERNAL_MODULES_KEY, ROPE_FP32_MODULE
from suite.results.io import read_result
from suite.results.provenance import run_stack, version_differences
from suite.results.schema import Result
from suite.results.sentinels import mismatch_series, rope_cast_unfixed
from suite.telemetry import classify, startup

HERE = EVIDENCE / "2026-12-08-h100-14b-rope"
ID = "lora32-off_none-tp1-rb45-gmu0.55-attnflex-rmpad-mnbt8192-mb3-nogc-mdbf16"
CELL = HERE / "h100-1gpu-14b-bf16" / ID
UNFIXED = EVIDENCE / "2026-12-07-h100-heavy-2" / "h100-1gpu-14b-bf16" / ID
PREDICTIONS = EVIDENCE / "predictions" / "h100-1gpu-14b-bf16.txt"
CPU = EVIDENCE / "2026-12-07-cpu-standin-numerics" / "standin-numerics.json"
README = (HERE / "README.md").read_text()


@pytest.fixture(scope="module")
def run() -> Result:
    return result_matching_metrics(CELL)


@pytest.fixture(scope="module")
def unfixed() -> Result:
    return read_result(UNFIXED / "result.json")


def test_the_cell_timed_out_after_one_measured_step_on_the_unfixed_runs_card_and_stack(
    run: Result, unfixed: Result
) -> None:
    assert (run.status, run.reason, run.oom_kind) == ("timeout", "timed out after 860 s (last step: 2)", None)
    assert (run.matrix, run.profile, run.gpu, run.n_gpus, run.model) == (
        "h100-1gpu-14b-bf16",
        "short",
        "h100",
        1,
        "synthetic:qwen2.5-14b",
    )
    assert [s.step for s in run.steps] == [1, 2] and len(run.measured_steps()) == 1
    p = run.provenance
    assert p.git_commit == "caf4aeba06dbbfe8aeab41c2f6ee41b993f0e503"
    assert (p.gpu_name, p.driver, p.cuda) == ("NVIDIA H100 80GB HBM3", "580.159.04", "13.0")
    assert p.versions["flash-attn"] == "2.8.3" and p.env["FLASH_ATTENTION_TRITON_AMD_ENABLE"] == "TRUE"
    assert version_differences([run_stack(p), run_stack(unfixed.provenance)]) is None
    assert classify.find_oom(log_lines(CELL)) is None
    assert all(s.response_length_mean == 1024 for s in run.steps)
    assert (run.nvml_sample_hz, run.nvml_samples, round(run.wall_s)) == (19.93, 17291, 867)
    session = (HERE / "session.log").read_text()
    assert "125 GiB RAM, 124 GiB available; disk: 252G total, 35G free" in session and "=== 00:21:00 done" in session
    assert "timeout 860 s" in (HERE / "lane0.log").read_text()


def test_the_command_is_the_unfixed_runs_but_for_the_fix(run: Result, unfixed: Result) -> None:
    argv, before = run.provenance.argv, unfixed.provenance.argv
    fix = f"+{EXTERNAL_MODULES_KEY}={ROPE_FP32_MODULE}"
    assert fix in argv and fix not in before
    assert verl_settings(argv) == verl_settings(before)  # the fix travels in ray_kwargs, the profile in trainer.
    assert rope_cast_unfixed(run) is None and rope_cast_unfixed(unfixed) == "bf16"
    assert any(f"'VERL_USE_EXTERNAL_MODULES': '{ROPE_FP32_MODULE}'" in ln for ln in log_lines(CELL))


def test_the_fix_at_14b_reads_the_rollout_as_the_actor_does(run: Result, unfixed: Result) -> None:
    series = mismatch_series(run)
    assert [round(m.pearson, 4) for m in series] == [0.9906, 0.9902]
    assert [round(s.extra["rollout_corr/kl"], 3) for s in run.steps] == [0.011, 0.011]
    assert all(5.4e-06 < m.probs_diff_mean < 5.6e-06 for m in series)
    before = mismatch_series(unfixed)
    assert (round(min(m.pearson for m in before), 3), round(max(m.pearson for m in before), 3)) == (0.560, 0.587)
    kl = [s.extra["rollout_corr/kl"] for s in unfixed.steps]
    assert (round(min(kl), 3), round(max(kl), 3)) == (0.598, 0.606)
    assert all(3.3e-05 <= round(m.probs_diff_mean, 6) <= 3.4e-05 for m in before)
    models = {m["model"].split(":")[1]: m["final"] for m in json.loads(CPU.read_text())["models"]}
    cpu = models["qwen2.5-14b"]
    assert (cpu["bf16|bf16-flex"]["pearson"], cpu["bf16|bf16-flex-rope16"]["pearson"]) == (0.99415, 0.51911)
    assert abs(cpu["bf16|bf16-flex"]["pearson"] - series[0].pearson) < 0.004
    assert abs(cpu["bf16|bf16-flex-rope16"]["pearson"] - before[0].pearson) < 0.05
    assert "at 0.9941 and one with\n  bf16 frequencies at 0.5191" in README
    assert "**The fix works at 14B: Pearson 0.9906 / 0.9902**" in README and "against 0.560-0.587" in README
    assert "`rollout_corr/kl` is 0.011 (0.598-0.606 without)" in README
    assert "`training/rollout_probs_diff_mean` 5.5e-06 (3.3e-05 without)" in README


def test_the_gate_passes_its_sentinel_and_refuses_it_for_its_status(run: Result, unfixed: Result, capsys) -> None:
    t = load_config().for_cell(run.id).sentinel
    out = sentinel_outcome([run], None, t)
    assert out is not None and not out.failed and out.problems == []
    assert rope_note([run]) is None
    before = sentinel_outcome([unfixed], None, t)
    assert before is not None and before.failed and rope_note([unfixed]) is not None
    with pytest.raises(InputError, match="status 'timeout'"):
        plan_promotions([(CELL / "result.json", run)], allow_failed=False, min_samples=1, sentinel=lambda _: t)
    assert main(["baseline", "promote", str(CELL / "result.json"), "--baselines", "/nonexistent/store"]) == 2
    assert "only ok results are promoted" in capsys.readouterr().err


def test_speed_is_the_unfixed_runs(run: Result) -> None:
    assert [round(s.throughput) for s in run.steps] == [1064, 1722]
    assert [round(s.time_per_step, 1) for s in run.steps] == [236.3, 145.4]
    ratio = median_measured(CELL, "throughput") / median_measured(UNFIXED, "throughput")
    assert (round(median_measured(UNFIXED, "throughput")), round(median_measured(UNFIXED, "time_per_step"), 1)) == (
        1738,
        144.7,
    )
    assert round((ratio - 1) * 100, 1) == -0.9
    for phase in ("gen", "old_log_prob", "ref", "update_actor"):
        assert abs(median_phase(CELL, phase) - median_phase(UNFIXED, phase)) < 0.65, phase
    assert "(-0.9 %)" in README and "step 2 took 145.4 s, 1722 tokens/s/GPU" in README


def test_memory_is_the_unfixed_runs_and_the_plans(run: Result, unfixed: Result) -> None:
    assert (max(run.peak_memory_gb), run.host_peak_memory_gb, run.host_system_peak_memory_gb) == (76.178, 76.52, 69.61)
    assert round(max(unfixed.peak_memory_gb), 1) == 76.2 and round(unfixed.host_peak_memory_gb, 1) == 76.6
    assert_prediction_committed(run, PREDICTIONS, ID)
    assert (run.predicted_memory_gb, run.predicted_host_memory_gb) == (75.14, 74.74)
    assert [round(e * 100, 1) for e in memory_errors(run)] == [-1.4, -2.3]
    (row,) = validate_results([("cell", run)], default_calibration())
    assert row.measured and row.predicted_fits and not row.false_oom
    lines = log_lines(CELL)
    assert any("GPU KV cache size: 76,192 tokens" in ln for ln in lines)


def test_start_up_where_the_carried_cache_missed_this_shape(run: Result, unfixed: Result) -> None:
    b = run.startup_breakdown_s
    assert round(b["first_step"]) == 655 and round(unfixed.startup_breakdown_s["first_step"]) == 580
    d = startup.phase_durations(b)
    assert {k: round(d[k]) for k in ("data_loaded", "vllm_compiled", "first_step")} == {
        "data_loaded": 93,
        "vllm_compiled": 58,
        "first_step": 241,
    }
    assert round(startup.phase_durations(unfixed.startup_breakdown_s)["data_loaded"]) == 71
    lines = log_lines(CELL)
    assert any("torch_compile_cache/61dda8241a/rank_0_0/backbone" in ln for ln in lines)
    assert any("saved AOT compiled function" in ln for ln in lines)  # compiled here, not loaded
    assert any("It took 31.440631 seconds to fall asleep" in ln for ln in lines)
    assert [round(s.timing_s["old_log_prob"], 1) for s in run.steps] == [51.3, 18.9]
    assert "**Start-up: 655 s to the end of step 1**, against 580 s" in README


def test_readme_tables_are_generated_from_the_files() -> None:
    assert_readme_tables(HERE)
    assert_readme_phase_rows(HERE, [CELL], default_calibration())
