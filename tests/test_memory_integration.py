"""The memory planner's inputs and outputs: verl commands -> settings, cells -> annotated cells, shipped
matrices -> predictions, results -> validation table, calibration file checks."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from fakes.cells import with_argv

from suite.errors import InputError
from suite.memory.calibration import DEFAULT_PATH, default_calibration, load_calibration, parse_calibration
from suite.memory.predict import annotate_cells, predict_cell, predict_settings
from suite.memory.settings import overrides_from_argv, settings_from_argv
from suite.memory.validate import MemoryRow, markdown, summarize, validate_results
from suite.plan.cell import Cell
from suite.plan.hydra import parse_value
from suite.results.io import read_result
from suite.results.schema import Provenance, Result

ROOT = Path(__file__).resolve().parents[1]
MATRICES = sorted((ROOT / "suite" / "matrices").glob("*.toml"))
AR = "actor_rollout_ref"


def test_parse_value_reads_what_plan_writes():
    assert parse_value("True") is True and parse_value("False") is False and parse_value("null") is None
    assert parse_value("15") == 15 and parse_value("3e-05") == pytest.approx(3e-5) and parse_value("0.3") == 0.3
    assert parse_value('"all-linear"') == "all-linear" and parse_value("fsdp2") == "fsdp2"
    assert parse_value("[console,file]") == ["console", "file"]


def test_settings_from_argv_reads_verl_keys_and_defaults():
    argv = ["python3", "-m", "verl.trainer.main_ppo", f"{AR}.model.lora_rank=32",
            f"{AR}.actor.fsdp_config.param_offload=True", f"+{AR}.actor.fsdp_config.model_dtype=bf16",
            f"{AR}.rollout.tensor_model_parallel_size=4", "data.train_batch_size=180",
            f"{AR}.actor.ppo_micro_batch_size_per_gpu=15"]  # fmt: skip
    s = settings_from_argv(argv, model="Qwen/Qwen2.5-32B-Instruct", gpu="h100", n_gpus=4)
    assert (s.lora_rank, s.param_offload, s.optimizer_offload, s.rollout_tp) == (32, True, False, 4)
    assert s.model_dtype == "bf16" and s.train_batch_size == 180 and s.ppo_micro_batch_size_per_gpu == 15
    assert s.gpu_memory_utilization == 0.5  # verl's default when the command leaves it out
    assert s.notes  # log-prob micro batch unset: the assumption is recorded
    assert overrides_from_argv(["--flag", "a=1"]) == {"a": 1}


def test_unknown_model_is_an_input_error():
    with pytest.raises(InputError, match="architecture"):
        settings_from_argv([], model="/some/local/model", gpu="h100", n_gpus=1)


def test_predict_settings_accepts_a_plain_dict():
    p = predict_settings({"model": "synthetic:qwen2.5-0.5b", "gpu": "h100", "n_gpus": 1,
                          f"{AR}.rollout.gpu_memory_utilization": 0.3, f"{AR}.model.lora_rank": 8})  # fmt: skip
    assert p.fits and p.peak_gib > 0.3 * 79.2
    with pytest.raises(InputError):
        predict_settings({"gpu": "h100"})


def _cell(argv: list[str], status: str = "ok", **kw) -> Cell:
    base = dict(id="x", matrix="m", gpu="h100", gpus_per_node=4, nnodes=1, model="Qwen/Qwen2.5-32B-Instruct",
                backend="fsdp", profile="bench", axes={}, status=status, reason=None,
                command=[])  # fmt: skip
    return with_argv(Cell(**{**base, **kw}), ["python3", "-m", "verl.trainer.main_ppo", *argv])


def test_annotate_cells_marks_predicted_oom_with_a_reason():
    fits = _cell([f"{AR}.model.lora_rank=32", f"{AR}.rollout.tensor_model_parallel_size=4",
                  f"{AR}.rollout.gpu_memory_utilization=0.3", f"{AR}.actor.ppo_micro_batch_size_per_gpu=4",
                  f"{AR}.rollout.log_prob_micro_batch_size_per_gpu=4", f"{AR}.rollout.max_model_len=1536"])  # fmt: skip
    full = _cell([f"{AR}.rollout.tensor_model_parallel_size=4", f"{AR}.rollout.gpu_memory_utilization=0.3"])
    invalid = replace(full, status="invalid", reason="bad key")
    local = _cell([], model="/nowhere/model")
    a, b, c, d = annotate_cells([fits, full, invalid, local])
    assert a.status == "ok" and a.predicted_memory_gb and a.memory_breakdown
    assert a.predicted_memory_gb == pytest.approx(predict_cell(fits).peak_gib, abs=0.01)
    assert b.status == "predicted-oom" and b.reason.startswith("memory: predicted peak")
    assert "actor_update" in b.reason and b.memory_breakdown["actor_optimizer"] > 0
    assert c.status == "invalid" and c.reason == "bad key" and c.predicted_memory_gb  # keeps its own reason
    assert d == local  # no architecture: left as is


@pytest.mark.parametrize("path", MATRICES, ids=lambda p: p.stem)
def test_every_shipped_matrix_cell_gets_a_prediction(path):
    from suite.memory.cli import predicted_cells

    cells = predicted_cells(str(path), "bench")
    assert cells
    for c in cells:
        assert c.predicted_memory_gb is not None and c.predicted_memory_gb > 0, c.id
        if c.status != "invalid":  # an invalid cell keeps its own reason, fit or not
            assert (c.status == "predicted-oom") == (not predict_cell(c).fits), c.id


@pytest.mark.parametrize("path", MATRICES, ids=lambda p: p.stem)
def test_every_shipped_matrix_cell_gets_a_host_prediction(path):
    from suite.memory.cli import predicted_cells
    from suite.memory.predict import predict_cell_host

    for c in predicted_cells(str(path), "bench"):
        assert c.predicted_host_memory_gb and c.host_memory_breakdown and c.host_memory_gb, c.id
        host = predict_cell_host(c)
        assert c.predicted_host_memory_gb == round(host.peak_gib, 2)
        # host OOM is only ever the status of a valid cell whose GPUs fit
        if c.status != "invalid":
            assert (c.status == "predicted-host-oom") == (predict_cell(c).fits and not host.fits(c.host_memory_gb))


def test_seed_cell_of_the_shipped_h100_matrix():
    from suite.memory.cli import predicted_cells

    cells = {c.id: c for c in predicted_cells(str(ROOT / "suite/matrices/h100.toml"), "bench")}
    seed = cells["lora32-off_param+optimizer-tp4-rb180"]
    assert seed.status == "ok" and seed.predicted_memory_gb < 79.2
    # Rollout TP 1 or 2 cannot hold the 32B bf16 shard in a 0.3 x 80 GB vLLM pool.
    for cid in ("lora32-off_param+optimizer-tp1-rb180", "lora32-off_param+optimizer-tp2-rb180"):
        assert cells[cid].status == "predicted-oom" and "vLLM pool" in cells[cid].reason


def _result(status: str, peak: float | None, argv: list[str]) -> Result:
    return Result(
        id="lora8-off_none-tp1-rb16", matrix="h100-1gpu", profile="bench", gpu="h100", n_gpus=1,
        model="synthetic:qwen2.5-0.5b", backend="fsdp", axes={"lora_rank": 8, "offload": "none", "tp": 1,
        "rollout_batch": 16}, status=status, peak_memory_gb=[] if peak is None else [peak],
        provenance=Provenance(argv=argv),
    )  # fmt: skip


def test_validation_rows_summary_and_markdown():
    argv = ["python3", "-m", "verl.trainer.main_ppo", f"{AR}.model.lora_rank=8", "data.max_prompt_length=128",
            "data.max_response_length=128", f"{AR}.rollout.gpu_memory_utilization=0.3", f"{AR}.rollout.n=4",
            "data.train_batch_size=16", f"{AR}.actor.ppo_mini_batch_size=16",
            f"{AR}.actor.ppo_micro_batch_size_per_gpu=4", f"{AR}.rollout.log_prob_micro_batch_size_per_gpu=8"]  # fmt: skip
    rows = validate_results([("a.json", _result("ok", 28.6, argv)), ("b.json", _result("oom", 79.0, argv)),
                             ("c.json", _result("ok", None, []))])  # fmt: skip
    ok, oom, nopeak = rows
    assert ok.error is not None and abs(ok.error) < 0.10 and ok.measured
    assert oom.missed_oom  # predicted to fit but OOMed: the gate the issue asks for
    assert not nopeak.measured and "no command recorded" in nopeak.note
    s = summarize(rows)
    assert (s.measured, s.within, s.missed_ooms) == (1, 1, 1) and not s.goal_met
    md = markdown(rows, s)
    assert "| cell | status | measured GiB |" in md and "OOM missed" in md and "not met" in md
    assert summarize([r for r in rows if r is not oom]).goal_met
    assert all(isinstance(r, MemoryRow) for r in rows)


def test_a_predicted_oom_cell_that_ran_is_counted_and_named():
    def row(cell: str, status: str, fits: bool, steps: int) -> MemoryRow:
        return MemoryRow(cell, f"{cell}.json", status, 71.8, 78.8, "actor_update", fits, steps=steps)

    ran = row("edge", "ok", False, 5)
    stopped_early = row("late", "timeout", False, 0)  # stopped before a step: no peak to say it fit
    stopped_later = row("later", "timeout", False, 2)
    fit = row("fit", "ok", True, 5)
    assert ran.false_oom and stopped_later.false_oom and not stopped_early.false_oom and not fit.false_oom
    s = summarize([ran, stopped_early, stopped_later, fit])
    assert s.false_oom_cells == ("edge", "later") and s.missed_ooms == 0 and s.goal_met
    md = markdown([ran, fit], summarize([ran, fit]))
    assert "+9.7 % **(ran; predicted OOM)**" in md
    assert md.splitlines()[-3] == "predicted-oom cells that ran: 1 (the planner would have pruned them): edge"
    assert "predicted-oom cells that ran" not in markdown([fit], summarize([fit]))


def test_validate_cli_on_result_files(tmp_path, capsys):
    from suite.cli import main

    r = _result("ok", 28.6, ["python3", "-m", "verl.trainer.main_ppo", f"{AR}.model.lora_rank=8",
                             f"{AR}.rollout.gpu_memory_utilization=0.3"])  # fmt: skip
    (tmp_path / "h100").mkdir()
    (tmp_path / "h100" / "result.json").write_text(r.to_json())
    (tmp_path / "h100" / "other.json").write_text(json.dumps({"not": "a result"}))
    assert main(["memory", "validate", str(tmp_path), "--format", "json", "--fit"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["measured"] == 1 and out["summary"]["goal_met"] is True
    assert isinstance(out["suggested_runtime_gib"], float)
    assert main(["memory", "validate", str(tmp_path / "missing")]) == 2


def test_validate_cli_skips_an_unreadable_file_in_a_folder_and_says_so(tmp_path, capsys):
    """A file found in a folder that does not read (a cut-off result) is left out, with a warning on stderr
    naming it and why; the same file named on the command line is an input error (exit 2)."""
    from suite.cli import main

    r = _result("ok", 28.6, ["python3", "-m", "verl.trainer.main_ppo", f"{AR}.model.lora_rank=8",
                             f"{AR}.rollout.gpu_memory_utilization=0.3"])  # fmt: skip
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "result.json").write_text(r.to_json())
    cut = tmp_path / "cut" / "result.json"
    cut.parent.mkdir()
    cut.write_text(r.to_json()[:200])
    assert main(["memory", "validate", str(tmp_path), "--format", "json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert [row["source"] for row in out["rows"]] == [str(tmp_path / "good" / "result.json")]
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: skipped {cut}: truncated JSON")
    assert main(["memory", "validate", str(cut)]) == 2
    assert f"{cut}: truncated JSON" in capsys.readouterr().err


def test_calibration_file_is_complete_and_strict(tmp_path):
    cal = load_calibration(DEFAULT_PATH)
    assert cal == default_calibration() and cal.overhead.runtime_gib > 0
    text = DEFAULT_PATH.read_text()
    assert "measured" in text and "estimate" in text  # provenance stays beside the numbers
    import tomllib

    data = tomllib.loads(text)
    data["overhead"]["typo_gib"] = 1.0
    with pytest.raises(InputError, match="unknown keys"):
        parse_calibration(data)
    del data["overhead"]["typo_gib"], data["logits"]
    with pytest.raises(InputError, match="missing table"):
        parse_calibration(data)
    assert cal.with_values("overhead", runtime_gib=3.0).overhead.runtime_gib == 3.0


def test_validate_reads_a_store_of_two_matrices_and_an_older_layout_file(tmp_path, capsys):
    """`memory validate baselines/` over baselines/<gen>/<matrix>/<full id>.json (two matrices sharing one cell
    id) and a file at the older layout baselines/<gen>/<full id>.json: every run is read, labelled by matrix."""
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from gate_data import base_results, write_baseline

    from suite.cli import main
    from suite.gate.store import Baseline, promote

    runs = base_results()[0]
    store = tmp_path / "baselines"
    promote([(tmp_path / "a.json", r) for r in runs], store, allow_failed=False, min_samples=5)
    write_baseline([r.model_copy(update={"matrix": "h100-1gpu"}) for r in runs], store)
    legacy = store / "h100" / (runs[0].id + ".json")
    oom = [r.model_copy(update={"matrix": "h100-1gpu-oom"}) for r in runs]
    legacy.parent.mkdir(parents=True)
    legacy.write_text(Baseline(id=runs[0].id, gpu="h100", results=oom).to_json())
    main(["memory", "validate", str(store), "--format", "json"])
    rows = json.loads(capsys.readouterr().out)["rows"]
    got = sorted((r["cell"], Path(r["source"]).relative_to(store).as_posix()) for r in rows)
    matrices = ("h100-1gpu", runs[0].matrix, "h100-1gpu-oom")
    paths = (f"h100/h100-1gpu/{runs[0].id}.json", f"h100/{runs[0].matrix}/{runs[0].id}.json", f"h100/{runs[0].id}.json")
    assert got == sorted((f"h100 {m}: {runs[0].id}", p) for m, p in zip(matrices, paths, strict=True) for _ in runs)


def test_a_run_stopped_after_whole_steps_is_measured_a_crash_is_not():
    # the committed 7B evidence: timeouts after 1-2 measured steps saw whole steps; the bypass crash stopped in
    # its first update and the interrupted cell ended no step
    heavy = sorted((ROOT / "baselines" / "evidence").glob("2026-12-03-h200-heavy*/h200-*/*/result.json"))
    rows = validate_results((str(p), read_result(p)) for p in heavy)
    by = {r.cell.rsplit("/", 1)[-1]: r for r in rows}
    assert by["lora32-off_param+optimizer-tp1-rb45-gmu0.3-mnbt1536-graphs-mb15-gc"].status == "timeout"
    assert by["lora32-off_param+optimizer-tp1-rb45-gmu0.3-mnbt1536-graphs-mb15-gc"].measured
    crash = by["lora32-off_none-tp1-rb45-mnbt8192-mb5-nogc-bm-lpmb15"]
    assert crash.status == "crash" and crash.measured_gib and not crash.measured and not crash.host_measured
    interrupted = by["lora32-off_none-tp1-rb45-gmu0.3-mnbt8192-graphs-mb25-gc"]
    assert interrupted.status == "interrupted" and interrupted.steps == 1 and interrupted.measured_gib is None
    assert not interrupted.measured
    s = summarize(rows)
    # before the measured activation and logits terms: recipe -3.6 %, no checkpointing +11.9 % (twice), remove-padding
    # +5.1 %; after: -4.4 %, +4.7 % and +4.8 %, +1.1 %; since the GPU fit of the old log-prob pass the recipe +0.1 %
    assert (s.measured, s.within) == (4, 4)
    assert sorted(round(r.error, 3) for r in rows if r.measured) == [0.001, 0.011, 0.047, 0.048]
    assert (s.host_measured, s.host_within) == (4, 4)
    stopped_early = MemoryRow("c", "s", "timeout", 50.0, 51.0, "actor_update", True, steps=0)
    assert not stopped_early.measured  # stopped before its first step ended: below its peak
