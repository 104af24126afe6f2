"""The eighteenth heavy run (1x H100, 2026-12-07): the fastest 7B cell with a bf16 actor and suite/run/rope_fp32.py
loaded in verl's workers, 1 warm-up + 2 measured steps: the RoPE fix measured on a GPU against the fp32 twin on the
same card. Read back from the committed files and the README's claims recomputed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evidence_helpers import (
    EVIDENCE,
    assert_prediction_committed,
    assert_readme_phase_rows,
    assert_readme_tables,
    committed_plan_rows,
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
from suite.memory.phase_validate import phase_rows
from suite.memory.settings import settings_from_result
from suite.memory.validate import validate_results
from suite.plan.cell import EXTERNAL_MODULES_KEY, ROPE_FP32_MODULE
from suite.results.io import read_result
from suite.results.phases import held_phases, phase_peaks
from suite.results.provenance import run_stack, version_differences
from suite.results.sentinels import mismatch_series, rope_cast_unfixed
from suite.telemetry import classify, startup

ROOT = Path(__file__).resolve().parents[1]
HERE = EVIDENCE / "2026-12-07-h100-heavy-3"
ID = "lora32-off_none-tp1-rb45-gmu0.4-attnflex-rmpad-mnbt8192-mb5-nogc-mdbf16"
CELL = HERE / "h100-1gpu-7b-bf16" / ID
PREDICTIONS = EVIDENCE / "predictions" / "h100-1gpu-7b-bf16.txt"
# the same command with verl's default fp32 actor, on the same card and stack
FP32 = (
    EVIDENCE
    / "2026-12-07-h100-heavy"
    / "h100-1gpu-7b-fa-mb5"
    / "lora32-off_none-tp1-rb45-gmu0.4-attnflex-rmpad-mnbt8192-mb5-nogc"
)
# the 14B bf16 actor without the fix
UNFIXED = (
    EVIDENCE
    / "2026-12-07-h100-heavy-2"
    / "h100-1gpu-14b-bf16"
    / "lora32-off_none-tp1-rb45-gmu0.55-attnflex-rmpad-mnbt8192-mb3-nogc-mdbf16"
)
CPU = EVIDENCE / "2026-12-07-cpu-standin-numerics" / "standin-numerics.json"
DTYPE = "actor_rollout_ref.actor.fsdp_config.model_dtype"


def test_the_cell_is_ok_on_the_fp32_twins_card_and_stack() -> None:
    r = result_matching_metrics(CELL)
    assert r.status == "ok" and r.exit_code == 0 and r.reason is None
    assert (r.matrix, r.profile, r.gpu, r.n_gpus, r.model) == (
        "h100-1gpu-7b-bf16",
        "short",
        "h100",
        1,
        "synthetic:qwen2.5-7b",
    )
    assert [s.step for s in r.steps] == [1, 2, 3] and len(r.measured_steps()) == 2
    p = r.provenance
    assert p.git_commit == "48aee5019664044b81ffd15a8a10b8ed05ab6a6d"
    assert (p.gpu_name, p.driver, p.cuda) == ("NVIDIA H100 80GB HBM3", "580.159.04", "13.0")
    assert p.versions["flash-attn"] == "2.8.3" and p.env["FLASH_ATTENTION_TRITON_AMD_ENABLE"] == "TRUE"
    assert version_differences([run_stack(p), run_stack(read_result(FP32 / "result.json").provenance)]) is None
    assert classify.find_oom(log_lines(CELL)) is None
    assert r.lora_adapter_syncs == 4
    assert all(s.response_length_mean == 1024 for s in r.steps)
    assert (r.nvml_sample_hz, r.nvml_samples, round(r.wall_s)) == (19.91, 11465, 576)


def test_the_command_is_the_fp32_twins_but_for_the_dtype_and_the_fix() -> None:
    r = read_result(CELL / "result.json")
    argv = r.provenance.argv
    assert f"{DTYPE}=bf16" in argv and f"+{EXTERNAL_MODULES_KEY}={ROPE_FP32_MODULE}" in argv
    assert settings_from_result(r).model_dtype == "bf16"
    assert rope_cast_unfixed(r) is None and rope_cast_unfixed(read_result(UNFIXED / "result.json")) == "bf16"
    twin = read_result(FP32 / "result.json").provenance.argv
    assert verl_settings(argv) - verl_settings(twin) == {f"{DTYPE}=bf16"}  # the fix travels in ray_kwargs
    assert verl_settings(twin) - verl_settings(argv) == set()
    # verl's resolved config shows the module reached the Ray runtime env
    assert any(f"'VERL_USE_EXTERNAL_MODULES': '{ROPE_FP32_MODULE}'" in ln for ln in log_lines(CELL))


def test_the_fix_on_the_gpu_reads_the_rollout_as_the_fp32_actor_does() -> None:
    r = read_result(CELL / "result.json")
    series = mismatch_series(r)
    assert [round(m.pearson, 4) for m in series] == [0.9969, 0.9970, 0.9969]
    assert all(1.46e-06 < m.probs_diff_mean < 1.49e-06 for m in series)
    twin = mismatch_series(read_result(FP32 / "result.json"))
    assert [round(m.pearson, 4) for m in twin] == [0.9970, 0.9967, 0.9970, 0.9968, 0.9971]
    assert max(abs(a.pearson - b.pearson) for a, b in zip(series, twin, strict=False)) < 0.0005
    step2 = r.steps[1].extra
    assert (round(step2["rollout_corr/training_log_ppl"], 3), round(step2["rollout_corr/rollout_log_ppl"], 3)) == (
        11.218,
        11.214,
    )
    assert round(step2["rollout_corr/kl"], 3) == 0.004
    # without the fix: the 14B bf16 actor on this card, and the CPU's prediction for this 7B cell
    assert round(mismatch_series(read_result(UNFIXED / "result.json"))[0].pearson, 2) == 0.56
    models = {m["model"].split(":")[1]: m["final"] for m in json.loads(CPU.read_text())["models"]}
    cpu = models["qwen2.5-7b"]
    assert round(cpu["bf16|bf16-flex-rope16"]["pearson"], 3) == 0.750  # what this cell would read without the fix
    assert abs(cpu["bf16|bf16-flex"]["pearson"] - series[0].pearson) < 0.002  # the CPU's fp32-frequency pair


def test_the_gate_passes_its_sentinel_and_refuses_it_only_for_its_two_measured_steps(capsys) -> None:
    r = read_result(CELL / "result.json")
    t = load_config().for_cell(r.id).sentinel
    out = sentinel_outcome([r], None, t)
    assert not out.failed and out.problems == []
    assert rope_note([r]) is None
    assert (
        len(plan_promotions([(CELL / "result.json", r)], allow_failed=False, min_samples=2, sentinel=lambda _: t)) == 1
    )
    with pytest.raises(InputError, match="2 measured step"):
        plan_promotions([(CELL / "result.json", r)], allow_failed=False, min_samples=4, sentinel=lambda _: t)
    assert main(["baseline", "promote", str(CELL / "result.json"), "--baselines", "/nonexistent/store"]) == 2
    err = capsys.readouterr().err
    assert "the gate needs at least 4" in err and "sentinel" not in err


def test_speed_is_the_fp32_actors() -> None:
    r = read_result(CELL / "result.json")
    assert [round(s.throughput) for s in r.steps] == [1857, 3955, 3945]
    assert [round(s.time_per_step, 1) for s in r.steps] == [135.4, 63.3, 64.1]
    tps = median_measured(CELL, "throughput")
    assert round(tps) == 3950 and round(median_measured(CELL, "time_per_step"), 1) == 63.7
    assert round(tps / median_measured(FP32, "throughput"), 3) == 1.007
    keys = ("gen", "old_log_prob", "ref", "update_actor")
    assert {k: round(median_phase(CELL, k), 1) for k in keys} == {
        "gen": 18.4,
        "old_log_prob": 10.8,
        "ref": 8.1,
        "update_actor": 24.2,
    }
    assert [round(s.mfu, 2) for s in r.measured_steps()] == [0.49, 0.49]


def test_memory_a_bf16_actor_frees_the_base_weights_half() -> None:
    r, twin = read_result(CELL / "result.json"), read_result(FP32 / "result.json")
    assert (max(r.peak_memory_gb), max(twin.peak_memory_gb)) == (56.379, 71.831)
    assert round(max(twin.peak_memory_gb) - max(r.peak_memory_gb), 1) == 15.5
    assert r.torch_memory is not None and twin.torch_memory is not None
    freed = twin.torch_memory.max_memory_allocated_gb - r.torch_memory.max_memory_allocated_gb
    assert round(freed, 1) == 15.0
    base = 7_614_699_008 * 2 / 2**30  # the stand-in's parameters (setup's build) at 2 bytes fewer each
    assert freed == pytest.approx(base, rel=0.06)
    lines = log_lines(CELL)
    assert any("GPU KV cache size: 298,080 tokens" in ln for ln in lines)
    assert any("Available KV cache memory: 15.92 GiB" in ln for ln in lines)
    tokens = [s.total_num_tokens for s in r.steps]
    assert max(tokens) < 298_080  # one wave of generation


def test_memory_against_the_plan_committed_before_the_run() -> None:
    r = read_result(CELL / "result.json")
    rows, summary = committed_plan_rows(PREDICTIONS, "h100-1gpu-7b-bf16")
    assert summary == "2 ok / 2 cells" and set(rows) == {ID, ID.replace("-mdbf16", "-mdfp32")}
    assert_prediction_committed(r, PREDICTIONS, ID)
    assert (r.predicted_memory_gb, r.predicted_host_memory_gb) == (60.29, 52.38)
    assert [round(e, 3) for e in memory_errors(r)] == [0.069, -0.021]
    (row,) = validate_results([("cell", r)], default_calibration())
    assert row.measured and row.predicted_fits and not row.false_oom


def test_memory_by_phase() -> None:
    r = read_result(CELL / "result.json")
    peaks = {k: round(v, 1) for k, v in phase_peaks(r).items()}
    assert peaks["gen"] == 49.5 and peaks["update_actor"] == 56.4 and peaks["old_log_prob"] == 53.9
    assert held_phases(r) == {"ref"}
    rows = {row.phase: row for row in phase_rows([("x", r)])}
    errors = {k: round(v.error * 100, 1) for k, v in rows.items() if not v.held}
    assert errors == {"rollout": 0.3, "old_log_prob": 3.6, "actor_update": 6.9, "startup": -1.0, "steady": -2.1}


def test_start_up_on_a_fresh_host_without_a_compile_cache() -> None:
    b = read_result(CELL / "result.json").startup_breakdown_s
    assert round(b["first_step"]) == 440
    d = startup.phase_durations(b)
    got = {k: round(d[k]) for k in ("data_loaded", "actor_initialized", "vllm_weights_loaded", "vllm_compiled")}
    assert got == {"data_loaded": 65, "actor_initialized": 33, "vllm_weights_loaded": 88, "vllm_compiled": 29}
    assert round(d["first_step"]) == 138
    assert round(read_result(CELL / "result.json").steps[0].timing_s["old_log_prob"], 1) == 47.1
    assert round(read_result(FP32 / "result.json").startup_breakdown_s["first_step"]) == 362  # on a carried cache
    session = (HERE / "session.log").read_text()
    assert "125 GiB RAM, 124 GiB available; disk: 252G total, 49G free" in session and "=== 12:30:17 done" in session


def test_readme_tables_are_generated_from_the_files() -> None:
    assert_readme_tables(HERE)
    readme = (HERE / "README.md").read_text()
    assert "**The fix works on the GPU: Pearson 0.9969 / 0.9970 / 0.9969**" in readme and "x1.007" in readme
    assert "**Memory: 15.5 GiB less.**" in readme
    assert_readme_phase_rows(HERE, [CELL], default_calibration())
