"""The seventeenth heavy run (1x H100, 2026-12-07): Qwen2.5-14B at the seed's shape on one 80 GB card with a bf16
actor, 1 warm-up + 4 measured steps: the first 14B measurement, and the planner's first cell of that size, predicted
before it ran. Read back from the committed files and the README's claims recomputed."""

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
from suite.gate.objective import command_objective, objective_differences
from suite.gate.sentinel import sentinel_outcome
from suite.gate.store import plan_promotions
from suite.matrix.load import load_matrix
from suite.memory.calibration import default_calibration
from suite.memory.phase_validate import phase_rows
from suite.memory.settings import settings_from_result
from suite.memory.validate import summarize, validate_results
from suite.results.io import read_result
from suite.results.phases import held_phases, phase_peaks
from suite.results.provenance import run_stack, version_differences
from suite.results.sentinels import mismatch_series
from suite.telemetry import classify, startup

ROOT = Path(__file__).resolve().parents[1]
HERE = EVIDENCE / "2026-12-07-h100-heavy-2"
ID = "lora32-off_none-tp1-rb45-gmu0.55-attnflex-rmpad-mnbt8192-mb3-nogc-mdbf16"
CELL = HERE / "h100-1gpu-14b-bf16" / ID
MATRIX = ROOT / "suite" / "matrices" / "h100-1gpu-14b-bf16.toml"
PREDICTIONS = EVIDENCE / "predictions" / "h100-1gpu-14b-bf16.txt"
BASELINE = ROOT / "baselines" / "h100" / "h100-1gpu-14b-bf16" / "qwen2.5-14b" / "h100x1" / "fsdp" / f"{ID}.json"
# the fastest 7B cell on the same card and stack
SEVEN_B = (
    EVIDENCE
    / "2026-12-07-h100-heavy"
    / "h100-1gpu-7b-fa-mb5"
    / "lora32-off_none-tp1-rb45-gmu0.4-attnflex-rmpad-mnbt8192-mb5-nogc"
)
RECIPE_7B = (
    EVIDENCE
    / "2026-12-06-h100-heavy-2"
    / "h100-1gpu-7b-fa"
    / "lora32-off_param+optimizer-tp1-rb45-attnsdpa-normpad-mnbt1536-mb15-gc"
)
DTYPE = "actor_rollout_ref.actor.fsdp_config.model_dtype"


def test_the_cell_is_ok_at_14b_on_the_7b_cells_stack() -> None:
    r = result_matching_metrics(CELL)
    assert r.status == "ok" and r.exit_code == 0 and r.reason is None
    assert (r.matrix, r.profile, r.gpu, r.n_gpus, r.model) == (
        "h100-1gpu-14b-bf16",
        "bench",
        "h100",
        1,
        "synthetic:qwen2.5-14b",
    )
    assert r.reference is None  # the recipe does not fit this card
    assert [s.step for s in r.steps] == [1, 2, 3, 4, 5] and len(r.measured_steps()) == 4
    p = r.provenance
    assert p.git_commit == "20a5b6196a09fad6265b64b33551906cc5040d4b"
    assert (p.gpu_name, p.driver, p.cuda) == ("NVIDIA H100 80GB HBM3", "580.159.04", "13.0")
    assert p.versions["flash-attn"] == "2.8.3" and p.env["FLASH_ATTENTION_TRITON_AMD_ENABLE"] == "TRUE"
    assert version_differences([run_stack(p), run_stack(read_result(SEVEN_B / "result.json").provenance)]) is None
    assert classify.find_oom(log_lines(CELL)) is None
    assert r.lora_adapter_syncs == 6
    assert all(s.response_length_mean == 1024 for s in r.steps)
    assert (r.nvml_sample_hz, r.nvml_samples, round(r.wall_s)) == (19.95, 23295, 1168)


def test_the_command_trains_a_bf16_actor_and_the_objective_differs_from_the_recipes() -> None:
    r = read_result(CELL / "result.json")
    assert f"{DTYPE}=bf16" in r.provenance.argv
    assert settings_from_result(r).model_dtype == "bf16"
    recipe = read_result(RECIPE_7B / "result.json")
    diff = objective_differences(command_objective(r.provenance.argv), command_objective(recipe.provenance.argv))
    assert diff == (DTYPE,)  # the same loss, samples and adapters; only the trained weights' precision
    # against the 7B's fastest cell the command differs only where the model, the pool, the micro batch and dtype do
    seven = read_result(SEVEN_B / "result.json").provenance.argv
    drop = ("actor_rollout_ref.model.path", "actor_rollout_ref.rollout.gpu_memory_utilization")
    mb = "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"
    assert verl_settings(r.provenance.argv, *drop) - verl_settings(seven, *drop) == {f"{mb}=3", f"{DTYPE}=bf16"}
    assert verl_settings(seven, *drop) - verl_settings(r.provenance.argv, *drop) == {f"{mb}=5"}


def test_speed_and_where_the_step_goes() -> None:
    r = read_result(CELL / "result.json")
    assert [round(s.throughput) for s in r.steps] == [1166, 1730, 1746, 1735, 1740]
    assert [round(s.time_per_step, 1) for s in r.steps[1:]] == [144.8, 144.2, 145.9, 144.7]
    tps = median_measured(CELL, "throughput")
    assert round(tps) == 1738 and median_measured(CELL, "time_per_step") == pytest.approx(144.7, abs=0.05)
    assert round(tps / median_measured(SEVEN_B, "throughput"), 3) == 0.443
    keys = ("gen", "old_log_prob", "ref", "update_actor")
    assert {k: round(median_phase(CELL, k), 1) for k in keys} == {
        "gen": 56.7,
        "old_log_prob": 19.3,
        "ref": 15.9,
        "update_actor": 49.9,
    }
    assert round(median_phase(CELL, "gen") / median_measured(CELL, "time_per_step"), 2) == 0.39
    assert [round(s.mfu, 2) for s in r.measured_steps()] == [0.46, 0.47, 0.46, 0.46]
    lines = log_lines(CELL)
    assert any("GPU KV cache size: 76,192 tokens" in ln for ln in lines)
    assert any("Available KV cache memory: 13.95 GiB" in ln for ln in lines)
    tokens = [s.total_num_tokens for s in r.steps]
    assert (min(tokens), max(tokens)) == (250445, 253140)
    assert [round(t / 76192, 1) for t in (min(tokens), max(tokens))] == [3.3, 3.3]  # waves of generation


def test_the_matrix_plans_what_was_committed_before_the_run() -> None:
    mx = load_matrix(MATRIX)
    assert mx.matrix.reference is None and mx.matrix.flash_attn is True
    rows, summary = committed_plan_rows(PREDICTIONS, "h100-1gpu-14b-bf16")
    assert summary == "12 ok / 48 cells" and len(rows) == 48
    ok = {k for k, row in rows.items() if row.split()[-1] == "ok"}
    fits = {
        f"lora32-off_none-tp1-rb45-gmu{g}-attnflex-rmpad-mnbt8192-{m}-mdbf16"
        for g in ("0.4", "0.5", "0.55")
        for m in ("mb3-gc", "mb3-nogc", "mb5-gc", "mb15-gc")
    }
    assert ok == fits  # without checkpointing only micro batch 3 fits; gmu 0.6 over the card in the rollout
    assert all("predicted-host-oom" in row or "predicted-oom" in row for k, row in rows.items() if "-off_param-" in k)
    assert "122.5" in rows[ID.replace("-off_none-", "-off_param-")]


def test_memory_out_of_sample_at_14b() -> None:
    r = read_result(CELL / "result.json")
    assert (max(r.peak_memory_gb), r.predicted_memory_gb) == (76.151, 75.14)
    assert (r.host_peak_memory_gb, r.predicted_host_memory_gb) == (76.61, 74.74)
    assert [round(e, 3) for e in memory_errors(r)] == [-0.013, -0.024]
    assert_prediction_committed(r, PREDICTIONS, ID)
    (row,) = validate_results([("cell", r)], default_calibration())
    assert row.measured and row.predicted_fits and not row.false_oom
    assert round(row.error * 100, 1) == -1.3
    assert (round(row.torch_measured_gib, 1), round(row.torch_predicted_gib, 1)) == (65.4, 65.8)
    assert summarize([row]).missed_ooms == 0


def test_memory_by_phase() -> None:
    r = read_result(CELL / "result.json")
    peaks = {k: round(v, 1) for k, v in phase_peaks(r).items()}
    assert peaks == {"gen": 76.2, "old_log_prob": 68.7, "ref": 68.7, "update_actor": 71.1}
    assert held_phases(r) == {"ref"}
    rows = {row.phase: row for row in phase_rows([("x", r)])}
    errors = {k: round(v.error * 100, 1) for k, v in rows.items() if not v.held}
    assert errors == {"rollout": -1.3, "old_log_prob": 2.4, "actor_update": 2.7, "startup": -0.6, "steady": -2.4}


def test_not_promoted_the_gates_correctness_sentinel_fails_it(capsys) -> None:
    r = read_result(CELL / "result.json")
    series = mismatch_series(r)
    assert [round(m.pearson, 3) for m in series] == [0.560, 0.565, 0.580, 0.576, 0.587]
    t = load_config().for_cell(r.id).sentinel
    out = sentinel_outcome([r], None, t)
    assert out.failed and out.problems == ["step 1: pearson 0.5601 < 0.95"]
    assert out.worst.probs_diff_mean < t.max_probs_diff_mean  # the absolute limit is far
    with pytest.raises(InputError, match="the rollout/actor log-prob sentinel fails"):
        plan_promotions([(CELL / "result.json", r)], allow_failed=False, min_samples=4, sentinel=lambda _: t)
    # without the sentinel it would have been promotable: 4 measured steps, ok
    assert len(plan_promotions([(CELL / "result.json", r)], allow_failed=False, min_samples=4)) == 1
    assert main(["baseline", "promote", str(CELL / "result.json"), "--baselines", "/nonexistent/store"]) == 2
    assert "pearson 0.5601 < 0.95" in capsys.readouterr().err
    # the store holds the cell's later run, with the RoPE fix (2026-12-08), never this one
    stored = json.loads(BASELINE.read_text())
    assert [x["provenance"]["start_time"] for x in stored["results"]] != [r.provenance.start_time]
    assert all(x["provenance"]["start_time"] != r.provenance.start_time for x in stored["results"])
    # every committed 7B run with the fp32 actor: > 0.99 in every step
    seven = read_result(SEVEN_B / "result.json")
    assert all(m.pearson > 0.99 for m in mismatch_series(seven))
    # a systematic difference of the two engines' distributions, not noise: 0.60 nats a token against 0.004
    step2, step2_7b = r.steps[1].extra, seven.steps[1].extra
    ppl = (round(step2["rollout_corr/training_log_ppl"], 2), round(step2["rollout_corr/rollout_log_ppl"], 2))
    assert ppl == (11.51, 10.91)
    assert round(step2["rollout_corr/kl"], 2) == 0.60 and round(step2_7b["rollout_corr/kl"], 3) == 0.004


def test_the_report_of_the_committed_baselines_shows_it_apart() -> None:
    report = (ROOT / "reports" / "index.md").read_text()
    baselines, rest = report.split("## Measured, not baselines", 1)
    evidence, planned = rest.split("## Planned, not yet measured", 1)
    # the cell's baseline since 2026-12-08 is its run with the RoPE fix (1745 tokens/s/GPU), not this one (1738)
    (line,) = [ln for ln in baselines.splitlines() if "| h100-1gpu-14b-bf16 " in ln and "synthetic:qwen2.5-14b" in ln]
    assert " 1745 |" in line and " 1738 |" not in line
    # a cell with a baseline leaves the runs that are not baselines, this one with it; measured, so not planned
    assert not [ln for ln in evidence.splitlines() if "| h100-1gpu-14b-bf16 " in ln]
    assert "| h100-1gpu-14b-bf16 " not in planned


def test_start_up_on_a_fresh_host() -> None:
    b = read_result(CELL / "result.json").startup_breakdown_s
    assert round(b["first_step"]) == 580
    d = startup.phase_durations(b)
    got = {k: round(d[k]) for k in ("data_loaded", "actor_initialized", "vllm_weights_loaded", "vllm_compiled")}
    assert got == {"data_loaded": 71, "actor_initialized": 43, "vllm_weights_loaded": 106, "vllm_compiled": 61}
    assert round(d["first_step"]) == 219
    first = read_result(CELL / "result.json").steps[0]
    assert round(first.timing_s["old_log_prob"], 1) == 52.3  # the trainer's kernels compiled for 14B's shapes
    session = (HERE / "session.log").read_text()
    assert "125 GiB RAM, 124 GiB available; disk: 252G total, 35G free" in session and "=== 07:16:48 done" in session


def test_numerics_bf16_log_probs_against_vllms() -> None:
    r = read_result(CELL / "result.json")
    diffs = [m.probs_diff_mean for m in mismatch_series(r)]
    assert all(3.3e-05 < x < 3.4e-05 for x in diffs)
    seven = mismatch_series(read_result(SEVEN_B / "result.json"))
    assert round(diffs[1] / seven[1].probs_diff_mean) == 23
    assert round(r.steps[1].extra["actor/entropy"], 4) == 10.9072


def test_readme_tables_are_generated_from_the_files() -> None:
    assert_readme_tables(HERE)
    readme = (HERE / "README.md").read_text()
    assert "**1738 tokens/s/GPU, 144.7 s/step**" in readme and "x0.443" in readme
    assert_readme_phase_rows(HERE, [CELL], default_calibration())
