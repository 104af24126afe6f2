"""The fifteenth heavy run (1x H100, 2026-12-06): the fastest cell that fits with the whole rollout in vLLM's KV
cache (gpu_memory_utilization 0.4 and 0.5), on the recipe's card and stack, 1 warm-up + 4 measured steps each.
Read back from the committed files and the README's claims recomputed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evidence_helpers import (
    BEFORE_GPU_FIT,
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

from suite.gate.store import plan_promotions
from suite.memory.phase_validate import phase_rows
from suite.report.table import flatten
from suite.results.baseline import read_baseline
from suite.results.io import read_result
from suite.results.phases import held_phases, phase_peaks
from suite.results.provenance import run_stack, version_differences
from suite.telemetry import classify, startup

ROOT = Path(__file__).resolve().parents[1]
HERE = EVIDENCE / "2026-12-06-h100-heavy-3"
ID = "lora32-off_none-tp1-rb45-gmu{}-attnflex-rmpad-mnbt8192-mb3-nogc"
CELLS = {g: HERE / "h100-1gpu-7b-fa-kv" / ID.format(g) for g in ("0.4", "0.5")}
RECIPE_ID = "lora32-off_param+optimizer-tp1-rb45-attnsdpa-normpad-mnbt1536-mb15-gc"
RECIPE = EVIDENCE / "2026-12-06-h100-heavy-2" / "h100-1gpu-7b-fa" / RECIPE_ID
FLEX = (
    EVIDENCE / "2026-12-06-h100-heavy" / "h100-1gpu-7b-fa" / "lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb3-nogc"
)
PREDICTIONS = EVIDENCE / "predictions" / "h100-1gpu-7b-fa-kv.txt"
BASELINES = ROOT / "baselines" / "h100" / "h100-1gpu-7b-fa-kv" / "qwen2.5-7b" / "h100x1" / "fsdp"


@pytest.mark.parametrize("gmu", ["0.4", "0.5"])
def test_both_cells_are_ok_on_the_recipes_stack(gmu: str) -> None:
    cell = CELLS[gmu]
    r = result_matching_metrics(cell)
    assert r.status == "ok" and r.exit_code == 0 and r.reason is None
    assert (r.matrix, r.profile, r.gpu, r.n_gpus) == ("h100-1gpu-7b-fa-kv", "bench", "h100", 1)
    assert (r.reference, r.reference_matrix) == (RECIPE_ID, "h100-1gpu-7b-fa")
    assert [s.step for s in r.steps] == [1, 2, 3, 4, 5] and len(r.measured_steps()) == 4
    p = r.provenance
    assert p.git_commit == "e9558e3b1101f889a22ba8f71e0c52c57f3136df"
    assert (p.gpu_name, p.driver, p.cuda) == ("NVIDIA H100 80GB HBM3", "580.159.04", "13.0")
    assert p.versions["flash-attn"] == "2.8.3" and p.env["FLASH_ATTENTION_TRITON_AMD_ENABLE"] == "TRUE"
    recipe = read_result(RECIPE / "result.json")
    assert p.gpu_name == recipe.provenance.gpu_name
    assert version_differences([run_stack(p), run_stack(recipe.provenance)]) is None
    assert f"actor_rollout_ref.rollout.gpu_memory_utilization={gmu}" in p.argv
    assert classify.find_oom(log_lines(cell)) is None
    assert r.lora_adapter_syncs == 6
    assert all(s.response_length_mean == 1024 for s in r.steps)


def test_the_two_cells_differ_only_in_the_kv_pool_from_the_first_flex_cell() -> None:
    flex = read_result(FLEX / "result.json").provenance.argv
    for cell in CELLS.values():
        mine = read_result(cell / "result.json").provenance.argv
        differ = {a.split("=", 1)[0] for a in verl_settings(mine) ^ verl_settings(flex)}
        assert differ == {"actor_rollout_ref.rollout.gpu_memory_utilization"}


def test_speed_and_the_ratio_to_the_recipe() -> None:
    r4, r5 = (read_result(CELLS[g] / "result.json") for g in ("0.4", "0.5"))
    assert [round(s.throughput) for s in r4.steps] == [2630, 3785, 3828, 3779, 3797]
    assert [round(s.throughput) for s in r5.steps] == [2075, 3806, 3782, 3796, 3776]
    assert [round(s.time_per_step, 1) for s in r4.steps[1:]] == [66.2, 65.8, 67.0, 66.3]
    assert median_measured(CELLS["0.4"], "throughput") == pytest.approx(3791, abs=0.5)
    assert median_measured(CELLS["0.5"], "throughput") == pytest.approx(3789, abs=0.5)
    assert median_measured(CELLS["0.4"], "time_per_step") == pytest.approx(66.2, abs=0.05)
    assert median_measured(CELLS["0.5"], "time_per_step") == pytest.approx(66.6, abs=0.05)
    ratio = median_measured(CELLS["0.4"], "throughput") / median_measured(RECIPE, "throughput")
    # just short of the goal; printed x1.25 at the report's two decimals
    assert ratio == pytest.approx(1.247, abs=0.0005) and ratio < 1.25 and f"{ratio:.2f}" == "1.25"
    step_ratio = median_measured(RECIPE, "time_per_step") / median_measured(CELLS["0.4"], "time_per_step")
    assert round(step_ratio, 2) == 1.25


def test_generation_is_where_the_gain_over_the_first_flex_cell_is() -> None:
    keys = ("gen", "old_log_prob", "ref", "update_actor", "update_weights")
    mine = {k: round(median_phase(CELLS["0.4"], k), 1) for k in keys}
    assert mine == {"gen": 18.3, "old_log_prob": 10.3, "ref": 8.0, "update_actor": 28.0, "update_weights": 1.2}
    assert round(median_phase(CELLS["0.5"], "gen"), 1) == 18.3
    assert round(median_phase(FLEX, "gen"), 1) == 22.3
    for k in ("old_log_prob", "ref", "update_actor"):
        assert abs(median_phase(FLEX, k) - mine[k]) < 0.2
    recipe = {k: round(median_phase(RECIPE, k), 1) for k in keys}
    assert recipe == {"gen": 22.4, "old_log_prob": 12.9, "ref": 10.9, "update_actor": 33.7, "update_weights": 2.5}
    assert median_phase(CELLS["0.4"], "update_actor") / median_measured(CELLS["0.4"], "time_per_step") == (
        pytest.approx(0.42, abs=0.005)
    )


def test_the_whole_rollout_fits_the_kv_cache_from_gmu_04() -> None:
    pools = {"0.4": ("299,200", "194.79x"), "0.5": ("446,336", "290.58x")}
    for gmu, (tokens, conc) in pools.items():
        lines = log_lines(CELLS[gmu])
        assert any(f"GPU KV cache size: {tokens} tokens" in ln for ln in lines)
        assert any(f"Maximum concurrency for 1,536 tokens per request: {conc}" in ln for ln in lines)
    assert any("GPU KV cache size: 149,808 tokens" in ln for ln in log_lines(FLEX))
    rollout = []
    for line in (CELLS["0.4"] / "metrics.jsonl").read_text().splitlines():
        rollout.append(json.loads(line)["data"]["global_seqlen/mean"])
    assert (min(rollout), max(rollout)) == (250445.0, 253140.0)
    assert min(rollout) > 149_808 and max(rollout) < 299_200


def test_memory_out_of_sample() -> None:
    r4, r5 = (read_result(CELLS[g] / "result.json") for g in ("0.4", "0.5"))
    assert (max(r4.peak_memory_gb), r4.predicted_memory_gb) == (70.235, 64.25)
    assert (max(r5.peak_memory_gb), r5.predicted_memory_gb) == (72.387, 72.17)
    assert [round(e, 3) for e in memory_errors(r4)] == [-0.085, -0.004]
    assert [round(e, 3) for e in memory_errors(r5)] == [-0.003, -0.007]
    for gmu, r in (("0.4", r4), ("0.5", r5)):
        assert_prediction_committed(r, PREDICTIONS, ID.format(gmu))


def test_memory_by_phase_and_the_held_passes() -> None:
    r4, r5 = (read_result(CELLS[g] / "result.json") for g in ("0.4", "0.5"))
    assert phase_peaks(r4) == {"gen": 64.764, "old_log_prob": 69.87, "ref": 69.87, "update_actor": 70.235}
    assert phase_peaks(r5) == {"gen": 72.387, "old_log_prob": 70.243, "ref": 70.243, "update_actor": 70.608}
    assert held_phases(r4) == held_phases(r5) == {"ref", "update_actor"}
    assert held_phases(read_result(RECIPE / "result.json")) == frozenset()  # offload releases between the passes
    for r in (r4, r5):
        # the planner the cells were predicted by (before the GPU fit these cells are two of the three fitted to)
        rows = {row.phase: row for row in phase_rows([("x", r)], BEFORE_GPU_FIT)}
        assert abs(rows["rollout"].error) < 0.01
        assert rows["old_log_prob"].predicted_gib == 56.9
        # 13.0-13.3 GiB under: 2.5-2.6 copies of the pass's logits (18165 tokens x 152064 x bf16)
        miss = (rows["old_log_prob"].measured_gib - rows["old_log_prob"].predicted_gib) / (18165 * 152064 * 2 / 2**30)
        assert 2.5 <= round(miss, 2) <= 2.6
        assert rows["ref_log_prob"].held and rows["actor_update"].held and not rows["old_log_prob"].held
    # since the fit: old log-prob 70.5 predicted for both (+0.9 %, +0.3 %), the gmu 0.4 cell's worst phase
    for r in (r4, r5):
        now = {row.phase: row for row in phase_rows([("x", r)])}
        assert now["old_log_prob"].predicted_gib == 70.48 and abs(now["old_log_prob"].error) < 0.01
    assert flatten(read_baseline(BASELINES / f"{ID.format('0.4')}.json").results).peak_phase == "old_log_prob"
    assert flatten(read_baseline(BASELINES / f"{ID.format('0.5')}.json").results).peak_phase == "rollout"


def test_promoted_with_four_measured_steps() -> None:
    for gmu, cell in CELLS.items():
        r = read_result(cell / "result.json")
        assert len(plan_promotions([(cell / "result.json", r)], allow_failed=False, min_samples=4)) == 1
        (stored,) = read_baseline(BASELINES / f"{ID.format(gmu)}.json").results
        assert stored.steps == r.steps and stored.nvml_timeline == r.nvml_timeline


def test_start_up_on_a_fresh_and_on_a_warm_host() -> None:
    first, second = (read_result(CELLS[g] / "result.json").startup_breakdown_s for g in ("0.5", "0.4"))
    assert (round(first["first_step"]), round(second["first_step"])) == (359, 301)
    d1, d2 = startup.phase_durations(first), startup.phase_durations(second)
    assert (round(d1["vllm_compiled"]), round(d2["vllm_compiled"])) == (24, 6)  # the first cell's compile cache
    assert (round(d1["first_step"]), round(d2["first_step"])) == (124, 98)
    assert round(d2["actor_initialized"]) == 32 and round(d2["data_loaded"]) == 45 and round(d1["data_loaded"]) == 44


def test_readme_tables_are_generated_from_the_files() -> None:
    assert_readme_tables(HERE)
    readme = (HERE / "README.md").read_text()
    assert (
        "**The fastest cell that fits: 3791 tokens/s/GPU, 66.2 s/step** (gmu 0.4; 3785 / 3828 / 3779 / 3797" in readme
    )
    assert "(3041 tokens/s/GPU, 82.8 s/step): x1.247**" in readme
    assert_readme_phase_rows(HERE, list(CELLS.values()), BEFORE_GPU_FIT)


def test_step_one_pays_the_trainers_flex_attention_compile_once_per_host() -> None:
    """The first cell on the host compiled the trainer's flex-attention kernels in step 1's training passes; the
    second found inductor's and Triton's caches of the first (why `grpo-suite cache export` carries them)."""
    first, second = (
        json.loads((CELLS[g] / "metrics.jsonl").read_text().splitlines()[0])["data"] for g in ("0.5", "0.4")
    )
    assert round(first["timing_s/gen"], 1) == round(second["timing_s/gen"], 1) == 20.4
    assert (round(first["timing_s/old_log_prob"], 1), round(second["timing_s/old_log_prob"], 1)) == (37.5, 18.5)
    assert (round(first["timing_s/update_actor"], 1), round(second["timing_s/update_actor"], 1)) == (37.0, 31.1)
    assert "old log-prob 37.5 vs 18.5 s, update\n  37.0 vs 31.1" in (HERE / "README.md").read_text()
