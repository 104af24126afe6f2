"""Correctness sentinels (issue 21, item 4): the rollout-vs-actor mismatch verl logs every step, on the committed
real results and on copies altered to drift (in a tmp folder); a drifting cell fails whatever its speed. And
what can be said about a LoRA adapter reaching vLLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gate_data import base_results, drifted, scaled, write_baseline, write_results

from suite.cli import main
from suite.results.baseline import read_baseline
from suite.results.build import CellInfo, Observation, build_result
from suite.results.schema import Provenance, Result
from suite.results.sentinels import (
    PEARSON,
    SYNC_LINE,
    adapter_evidence,
    count_adapter_syncs,
    mismatch_series,
    probs_diff_median,
)

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "baselines"


def committed() -> list[Result]:
    return [r for p in sorted(STORE.glob("h*/**/*.json")) for r in read_baseline(p).results if r.status == "ok"]


def test_every_committed_ok_result_records_the_mismatch_every_step() -> None:
    everything = committed()
    # under old log-prob bypass verl computes no rollout/actor mismatch: the pass that would is skipped
    bypass = [r for r in everything if r.axes.get("algorithm.rollout_correction.bypass_mode")]
    assert [r.model for r in bypass] == ["synthetic:qwen2.5-7b"] and mismatch_series(bypass[0]) == []
    runs = [r for r in everything if r not in bypass]
    # nine 0.5B-1.5B/SmolLM2 runs (2026-11-28), then the heavy 7B ones (2026-12-04 on): every later promotion adds one
    assert len(runs) >= 13
    for r in runs:
        series = mismatch_series(r)
        assert [m.step for m in series] == [s.step for s in r.steps], r.id
        # the 14B bf16 actor (RoPE kept fp32) reads 0.989-0.990, the fp32 actors above 0.99; the limit is 0.95
        floor = 0.985 if r.id.startswith("qwen2.5-14b/") else 0.99
        assert all(m.pearson is not None and m.pearson > floor for m in series), r.id
    medians: dict[str, list[float]] = {}
    for r in runs:
        medians.setdefault(r.id.split("/")[0], []).append(probs_diff_median(r))
    # measured: 0.5B ~8.5e-8, 1.5B ~2.5e-7, 7B ~1.5e-6, SmolLM2-135M (dequantised GGUF) ~7e-3; all far below the limit 0.05
    assert medians["qwen2.5-0.5b"] == pytest.approx([8.5e-8] * len(medians["qwen2.5-0.5b"]), rel=0.05)
    assert medians["smollm2-135m-instruct"] == pytest.approx([7.0e-3], rel=0.05)
    # every 7B run at the seed's shape, whatever its attention, packing, micro batch, card or cross entropy: the
    # actor's log-probs match vLLM's as closely as the padded sdpa recipe's do (flex on packed sequences to 1 %)
    assert len(medians["qwen2.5-7b"]) >= 4
    assert medians["qwen2.5-14b"] == pytest.approx([5.47e-6], rel=0.02)  # the bf16 actor: ~4x the 7B fp32's
    assert medians["qwen2.5-7b"] == pytest.approx([1.48e-6] * len(medians["qwen2.5-7b"]), rel=0.02)
    (flex,) = [r for r in runs if r.matrix == "h200-1gpu-7b-flex"]
    (recipe,) = [r for r in runs if r.matrix == "h200-1gpu-7b-nokl" and r.axes.get("offload") != "none"]
    assert probs_diff_median(flex) == pytest.approx(probs_diff_median(recipe), rel=0.01)
    assert max(max(m.probs_diff_mean for m in mismatch_series(r)) for r in runs) < 0.01


def gate(capsys, *argv: str) -> tuple[int, dict]:
    rc = main(["gate", *argv, "--format", "json"])
    return rc, json.loads(capsys.readouterr().out)


def test_the_committed_runs_against_their_own_baselines_pass_the_sentinel(tmp_path, capsys) -> None:
    runs = committed()
    write_results(runs, tmp_path / "cur")
    rc, doc = gate(capsys, str(tmp_path / "cur"), "--baselines", str(STORE))
    assert rc == 0
    assert not [r for r in doc["rows"] if r["metric"].startswith("sentinel")]
    # a bypass run records no mismatch (no old log-prob pass), so the sentinel has nothing to score in it
    cells = len({(r.gpu, r.matrix, r.id) for r in runs if mismatch_series(r)})
    assert doc["sentinel_notes"][0].startswith(
        f"sentinel:logprob: {cells} cell(s) within limits against their baselines"
    )


@pytest.mark.parametrize("speed", [1.0, 1.2])  # as fast, and 20 % faster: a broken rollout can look like a win
def test_a_drifting_rollout_fails_whatever_its_speed(tmp_path, capsys, speed) -> None:
    (run,) = base_results()[1]
    write_baseline([run], tmp_path / "b")
    write_results([scaled(drifted(run, 3.0), speed)], tmp_path / "cur")
    rc, doc = gate(capsys, str(tmp_path / "cur"), "--baselines", str(tmp_path / "b"))
    got = {r["metric"]: r for r in doc["rows"]}
    assert rc == 1
    assert got["throughput"]["verdict"] == ("unchanged" if speed == 1.0 else "improved")
    s = got["sentinel:logprob"]
    assert (s["verdict"], s["regression"], s["change"]) == ("failed", True, "x3.00")
    assert "median probs_diff_mean grew x3.00 over the baseline (> x2 and by more than 1e-07)" in s["detail"]


def test_absolute_limits_fail_without_a_baseline(tmp_path, capsys) -> None:
    (run,) = base_results()[1]
    (tmp_path / "b").mkdir()
    write_results([drifted(run, 1.0, value=0.2)], tmp_path / "cur")
    rc, doc = gate(capsys, str(tmp_path / "cur"), "--baselines", str(tmp_path / "b"))
    assert rc == 1
    row = next(r for r in doc["rows"] if r["metric"] == "sentinel:logprob")
    assert "probs_diff_mean 0.2 > 0.05" in row["detail"]
    write_results([drifted(run, 1.0, key=PEARSON, value=0.9)], tmp_path / "cur2")
    rc, doc = gate(capsys, str(tmp_path / "cur2"), "--baselines", str(tmp_path / "b"))
    assert (
        rc == 1 and "pearson 0.9000 < 0.95" in next(r for r in doc["rows"] if r["metric"].startswith("sent"))["detail"]
    )


def test_thresholds_are_configurable_and_small_noise_passes(tmp_path, capsys) -> None:
    (run,) = base_results()[1]
    write_baseline([run], tmp_path / "b")
    write_results([drifted(run, 1.8)], tmp_path / "cur")  # x1.8 < x2
    assert gate(capsys, str(tmp_path / "cur"), "--baselines", str(tmp_path / "b"))[0] == 0
    cfg = tmp_path / "s.toml"
    cfg.write_text("[sentinel]\nmax_growth = 1.5\ngrowth_floor = 0\n")
    assert gate(capsys, str(tmp_path / "cur"), "--baselines", str(tmp_path / "b"), "--config", str(cfg))[0] == 1


def test_a_result_without_the_mismatch_is_noted_not_failed(tmp_path, capsys) -> None:
    (run,) = base_results()[1]
    bare = run.model_copy(
        update={
            "steps": [
                s.model_copy(
                    update={"extra": {k: v for k, v in s.extra.items() if not k.startswith("training/rollout")}}
                )
                for s in run.steps
            ]
        }
    )
    write_baseline([run], tmp_path / "b")
    write_results([bare], tmp_path / "cur")
    rc, doc = gate(capsys, str(tmp_path / "cur"), "--baselines", str(tmp_path / "b"))
    assert rc == 0
    assert any("no rollout/actor mismatch recorded" in n and "not checked" in n for n in doc["notes"])


def test_lora_adapter_evidence_on_the_committed_runs_is_not_measurable() -> None:
    lora = [r for r in committed() if r.axes.get("lora_rank", 0)]
    # the small cells ran without VERL_LOGGING_LEVEL=INFO: their syncs are not logged
    logged = [r for r in lora if r.lora_adapter_syncs is not None]
    # the 7B cells ran with VERL_LOGGING_LEVEL=INFO (the no-KL bypass cell, the recipe, the flex cell): 6 syncs each
    assert len(logged) >= 5  # and every 7B cell promoted since (the H100 flash-attn cells, 2026-12-06 on)
    syncs = {(r.model, r.lora_adapter_syncs) for r in logged}
    # 6 syncs in each 5-step run: the 7B cells and the 14B baseline alike
    assert syncs == {("synthetic:qwen2.5-7b", 6), ("synthetic:qwen2.5-14b", 6)}
    assert all(adapter_evidence(r).kind == "logged" for r in logged)
    lora = [r for r in lora if r not in logged]
    assert len(lora) == 4
    for r in lora:
        ev = adapter_evidence(r)
        assert ev.kind == "unmeasurable", r.id
        assert "actor/grad_norm is 0 in all 10 steps" in ev.text


def test_lora_adapter_evidence_once_the_adapter_changed() -> None:
    # the real SmolLM2 train run (grad_norm > 0 from step 1), read as if it were a LoRA cell
    train = next(r for r in committed() if r.profile == "train")
    as_lora = train.model_copy(update={"axes": {**train.axes, "lora_rank": 8}})
    ev = adapter_evidence(as_lora)
    assert (ev.kind, ev.updates, ev.checked) == ("consistent", 16, 15)
    assert count_adapter_syncs(["x", f"(WorkerDict pid=1) INFO utils.py:284] {SYNC_LINE}", SYNC_LINE]) == 2
    assert count_adapter_syncs(["nothing"]) is None
    logged = as_lora.model_copy(update={"lora_adapter_syncs": 15})
    assert adapter_evidence(logged).kind == "logged"


def test_build_result_records_the_adapter_syncs_verl_logged(tmp_path) -> None:
    log = tmp_path / "log.txt"
    log.write_text("\n".join(["start", f"INFO {SYNC_LINE}", f"INFO {SYNC_LINE}", "done"]) + "\n")
    info = CellInfo(
        id="m/h100x1/fsdp/lora8",
        matrix="m",
        profile="bench",
        gpu="h100",
        n_gpus=1,
        model="m",
        backend="fsdp",
        axes={"lora_rank": 8},
    )
    assert build_result(info, Observation(log_path=log, exit_code=0), Provenance()).lora_adapter_syncs == 2
    log.write_text("start\n")
    assert build_result(info, Observation(log_path=log, exit_code=0), Provenance()).lora_adapter_syncs is None


# --- a 16-bit actor without the RoPE fix -------------------------------------------------------------------------
BF16_RUN = (
    ROOT / "baselines/evidence/2026-12-07-h100-heavy-2/h100-1gpu-14b-bf16"
    / "lora32-off_none-tp1-rb45-gmu0.55-attnflex-rmpad-mnbt8192-mb3-nogc-mdbf16/result.json"
)  # fmt: skip
ROPE_KEY = "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES"


def _with_argv(r: Result, argv: list[str]) -> Result:
    return r.model_copy(update={"provenance": r.provenance.model_copy(update={"argv": argv})})


def test_a_bf16_actor_without_the_rope_fix_is_named_as_the_likely_cause(tmp_path, capsys) -> None:
    from suite.results.io import read_result
    from suite.results.sentinels import rope_cast_unfixed

    run = read_result(BF16_RUN)
    assert rope_cast_unfixed(run) == "bf16"
    (tmp_path / "b").mkdir()
    write_results([run], tmp_path / "cur")
    rc, doc = gate(capsys, str(tmp_path / "cur"), "--baselines", str(tmp_path / "b"))
    assert rc == 1 and any(r["metric"] == "sentinel:logprob" and r["regression"] for r in doc["rows"])
    (note,) = [n for n in doc["sentinel_notes"] if "rope_fp32" in n]
    assert "actor stored in bf16 without suite.run.rope_fp32" in note and "keep_rope_fp32" in note
    # the same command with the fix loaded (after a module of the matrix's own), or an fp32 actor: no such note
    fixed = _with_argv(run, [*run.provenance.argv, f"{ROPE_KEY}=mine,suite.run.rope_fp32"])
    fp32 = _with_argv(run, [a.replace("model_dtype=bf16", "model_dtype=fp32") for a in run.provenance.argv])
    assert rope_cast_unfixed(fixed) is None and rope_cast_unfixed(fp32) is None
    assert rope_cast_unfixed(_with_argv(run, [])) is None  # nothing recorded: nothing said


def test_promotion_names_the_rope_cast_with_the_refusal(tmp_path, capsys) -> None:
    rc = main(["baseline", "promote", str(BF16_RUN), "--baselines", str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert rc == 2 and "the rollout/actor log-prob sentinel fails (step 1: pearson 0.5601 < 0.95)" in err
    assert "actor stored in bf16 without suite.run.rope_fp32" in err
