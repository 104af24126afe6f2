"""Every class of bad input to `grpo-suite gate` exits 2 with a message naming file, field and value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gate_data import base_results, scaled, with_runs, write_baseline, write_results

from suite.cli import main
from suite.results.schema import Result


@pytest.fixture(scope="module")
def runs() -> list[Result]:
    return with_runs(base_results()[0])


@pytest.fixture
def store(tmp_path: Path, runs: list[Result]) -> Path:
    write_baseline(runs, tmp_path / "baselines")
    return tmp_path / "baselines"


def gate_err(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    rc = main(["gate", *args])
    captured = capsys.readouterr()
    assert rc == 2, captured.out
    assert captured.out == ""  # no half report on bad input
    return captured.err


def result_file(tmp_path: Path, run: Result, name: str = "result.json") -> Path:
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run.to_json())
    return path


def test_nonexistent_and_empty_input(tmp_path, capsys, store) -> None:
    assert "no such file or directory" in gate_err(capsys, str(tmp_path / "nope.json"), "--baselines", str(store))
    (tmp_path / "empty").mkdir()
    assert "no result files found" in gate_err(capsys, str(tmp_path / "empty"), "--baselines", str(store))


def test_unreadable_bytes(tmp_path, capsys, store) -> None:
    bad = tmp_path / "bin.json"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    assert f"{bad}: cannot read" in gate_err(capsys, str(bad), "--baselines", str(store))


def test_truncated_json(tmp_path, capsys, store, runs) -> None:
    path = result_file(tmp_path, runs[0])
    path.write_text(path.read_text()[: len(path.read_text()) // 2])
    err = gate_err(capsys, str(tmp_path / "in"), "--baselines", str(store))
    assert f"{path}: truncated JSON" in err


def test_invalid_json_and_all_errors_reported_together(tmp_path, capsys, store, runs) -> None:
    a = result_file(tmp_path, runs[0], "a/result.json")
    a.write_text('{"schema": 1, "id": oops}')
    b = result_file(tmp_path, runs[1], "b/result.json")
    b.write_text("")
    err = gate_err(capsys, str(tmp_path / "in"), "--baselines", str(store))
    assert f"{a}: invalid JSON at line 1 column 21" in err
    assert f"{b}: empty file" in err


def test_wrong_schema_version(tmp_path, capsys, store, runs) -> None:
    doc = json.loads(runs[0].to_json())
    doc["schema"] = 2
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    err = gate_err(capsys, str(path), "--baselines", str(store))
    assert f"{path}: schema: schema version 2 is not supported; this grpo-suite reads schema 1" in err


@pytest.mark.parametrize(
    ("where", "value"),
    [("throughput", "NaN"), ("throughput", "Infinity"), ("peak", "NaN"), ("time_per_step", "-Infinity")],
)
def test_nan_and_inf_samples(tmp_path, capsys, store, runs, where, value) -> None:
    text = runs[0].to_json()
    doc = json.loads(text)
    if where == "peak":
        doc["peak_memory_gb"][0] = "__BAD__"
        field = "peak_memory_gb[0]"
    else:
        doc["steps"][4][where] = "__BAD__"
        field = f"steps.4.{where}"
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc).replace('"__BAD__"', value))  # JSON as Python writes NaN/inf
    err = gate_err(capsys, str(path), "--baselines", str(store))
    assert field in err
    assert "NaN/inf" in err


def test_non_positive_throughput(tmp_path, capsys, store, runs) -> None:
    steps = [s.model_copy(update={"throughput": 0.0}) if s.step == 5 else s for s in runs[0].steps]
    path = result_file(tmp_path, runs[0].model_copy(update={"steps": steps}))
    assert "steps[4].throughput: throughput 0.0 must be > 0" in gate_err(capsys, str(path), "--baselines", str(store))


def test_too_few_samples_says_how_many_are_needed(tmp_path, capsys, store, runs) -> None:
    short = runs[0].model_copy(update={"steps": runs[0].steps[: runs[0].warmup_steps + 3]})
    path = result_file(tmp_path, short)
    err = gate_err(capsys, str(path), "--baselines", str(store))
    assert "too few throughput samples in the result: 3 measured step(s)" in err
    assert "needs at least 5" in err
    # The same holds for a thin baseline.
    thin = tmp_path / "thin"
    write_baseline([short], thin)
    ok = result_file(tmp_path, runs[0], "full.json")
    assert "too few throughput samples in the baseline" in gate_err(capsys, str(ok), "--baselines", str(thin))


@pytest.mark.parametrize(
    ("field", "value"), [("gpu", "h200"), ("n_gpus", 2), ("model", "synthetic:other"), ("profile", "train")]
)
def test_mismatch_refused_unless_allowed(tmp_path, capsys, runs, field, value) -> None:
    # A baseline whose content disagrees with the result of the same cell id.
    other = [r.model_copy(update={field: value}) for r in runs]
    if field == "gpu":  # the generation is the hardware's: gpu and gpu_name must agree
        other = [
            r.model_copy(update={"provenance": r.provenance.model_copy(update={"gpu_name": "NVIDIA H200"})})
            for r in other
        ]
    root = tmp_path / "baselines"
    path = root / "h100" / (runs[0].id + ".json")
    write_baseline(other, tmp_path / "tmpstore")
    src = next((tmp_path / "tmpstore").rglob("*.json"))
    path.parent.mkdir(parents=True)
    src.rename(path)
    res = tmp_path / "runs"
    write_results(runs, res)
    err = gate_err(capsys, str(res), "--baselines", str(root))
    if field == "n_gpus":
        # the id says h100x1: a baseline claiming 2 GPUs contradicts itself, and the reader refuses it (issue 19)
        assert f"{path}: fields contradict each other: results[0].n_gpus 2 vs id {runs[0].id!r}" in err
        return
    assert f"{field} {getattr(runs[0], field)!r} in the result vs {value!r} in the baseline {path}" in err
    assert "--allow-mismatch" in err
    rc = main(["gate", str(res), "--baselines", str(root), "--allow-mismatch", "--format", "markdown"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "**Mismatched comparison** (`--allow-mismatch`)" in out


def test_a_baseline_of_another_matrix_is_never_compared(tmp_path, capsys, runs) -> None:
    """Matrices with other [base] settings share cell ids; a result is paired with its own matrix's baseline
    only, so one of another matrix leaves it `new` (named in the detail), with or without --allow-mismatch."""
    root = tmp_path / "baselines"
    write_baseline([r.model_copy(update={"matrix": "h100-1gpu-oom"}) for r in runs], root)
    res = tmp_path / "runs"
    write_results([scaled(r, 0.5) for r in runs], res)
    for extra in ([], ["--allow-mismatch"]):
        assert main(["gate", str(res), "--baselines", str(root), "--format", "json", *extra]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert [(r["cell"], r["matrix"], r["metric"], r["verdict"]) for r in doc["rows"]] == [
            (runs[0].id, runs[0].matrix, "all", "new")
        ]
        assert "matrix h100-1gpu-oom has one, not compared" in doc["rows"][0]["detail"]
        assert doc["mismatches"] == []


def test_runs_of_one_cell_must_agree(tmp_path, capsys, store, runs) -> None:
    res = tmp_path / "runs"
    write_results([runs[0], runs[1].model_copy(update={"profile": "train"})], res)
    assert "profile 'train' in the result vs 'bench' in the other runs" in gate_err(
        capsys, str(res), "--baselines", str(store)
    )


def test_missing_baseline_folder(tmp_path, capsys, runs) -> None:
    path = result_file(tmp_path, runs[0])
    assert "baseline folder" in gate_err(capsys, str(path), "--baselines", str(tmp_path / "typo"))


def test_corrupt_baseline(tmp_path, capsys, store, runs) -> None:
    path = next(store.rglob("*.json"))
    path.write_text(path.read_text()[:100])
    res = result_file(tmp_path, runs[0])
    assert f"{path}: truncated JSON" in gate_err(capsys, str(res), "--baselines", str(store))


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[throughput]\nalfa = 0.01\n", "unknown key 'throughput.alfa'"),
        ("[throughput]\nalpha = 2\n", "throughput.alpha = 2"),
        ('[throughput]\neffect_rule = "median"\n', "'interval' or 'estimate'"),
        ("[latency]\nx = 1\n", "unknown table(s) ['latency']"),
        ("[[override]]\ncells = '*'\nmemory = { rel_tol = 1 }\n", "override[0]"),
        ("[throughput\n", "not valid TOML"),
    ],
)
def test_bad_config(tmp_path, capsys, store, runs, toml, message) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    res = result_file(tmp_path, runs[0])
    err = gate_err(capsys, str(res), "--baselines", str(store), "--config", str(cfg))
    assert str(cfg) in err
    assert message in err


def test_other_json_in_a_run_folder_is_skipped(tmp_path, capsys, store, runs) -> None:
    res = tmp_path / "runs"
    write_results([scaled(r, 1.0) for r in runs], res)
    (res / "plan.json").write_text('{"cells": []}')
    assert main(["gate", str(res), "--baselines", str(store)]) == 0
