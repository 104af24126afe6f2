"""The one result reader (issue 19): every stage reads a result file the same way, contradicting fields are
refused with exit 2 naming them, the writer never writes what the reader refuses, and every committed result
under baselines/ still loads (the three that contradict themselves are named here, not edited)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gate_data import base_results, write_baseline

from suite.cli import main
from suite.errors import InputError
from suite.results.collect import load_results, read_results_file
from suite.results.consistency import contradictions, id_parts
from suite.results.io import read_result, try_read_result, write_result
from suite.results.schema import Result

ROOT = Path(__file__).resolve().parents[1]
# Written on the lent 2x H200 host by `grpo-suite run` from h100 plans before the result's generation came from
# the hardware: `gpu` says h100, `provenance.gpu_name` says NVIDIA H200. Their promoted copies under
# baselines/h200/ were written under the rule and read.
CONTRADICTING = {
    "baselines/evidence/2026-11-28-h200x2/host-a/h100-graphs/qwen2.5-0.5b/h100x1/fsdp/lora32-off_none-tp1-rb16/result.json",
    "baselines/evidence/2026-11-28-h200x2/host-b/h100/qwen2.5-1.5b/h100x1/fsdp/lora8-off_none-tp1-rb16/result.json",
    "baselines/evidence/2026-11-28-h200x2/host-b/h100-graphs/qwen2.5-0.5b/h100x1/fsdp/lora8-off_param+optimizer-tp1-rb16/result.json",
}


@pytest.fixture(scope="module")
def run() -> Result:
    return base_results()[0][0]


def test_every_committed_result_loads_but_the_three_that_contradict_themselves() -> None:
    refused, loaded = set(), 0
    for path in sorted((ROOT / "baselines").rglob("*.json")):
        if path.name == "cell.json":  # the planned cell beside a result, not a result
            continue
        try:
            loaded += len(read_results_file(path, in_folder=True) or [])
        except InputError as exc:
            assert "fields contradict each other: gpu 'h100' vs provenance.gpu_name 'NVIDIA H200'" in str(exc)
            refused.add(str(path.relative_to(ROOT)))
    assert refused == CONTRADICTING
    assert loaded >= 20
    # the store itself (what the gate compares with) is clean
    assert {r.gpu for _, r in load_results([ROOT / "baselines"], baselines=True, skip_evidence=True)} == {
        "h100",
        "h200",
    }


@pytest.mark.parametrize(
    ("update", "named"),
    [
        (
            {"provenance": {"gpu_name": "NVIDIA H200"}},
            "gpu 'h100' vs provenance.gpu_name 'NVIDIA H200' (a card of generation h200)",
        ),
        ({"n_gpus": 2}, "n_gpus 2 vs id"),
        ({"backend": "megatron"}, "backend 'megatron' vs id"),
        ({"provenance": {"extra": {"planned_gpu": "h100"}}}, "gpu 'h100' vs provenance.extra.planned_gpu 'h100'"),
        (
            {"gpu": "h200", "provenance": {"gpu_name": "NVIDIA H200", "extra": {"planned_gpu": "h20"}}},
            "provenance.extra.planned_gpu 'h20' vs id",
        ),
        ({"nnodes": 2}, "n_gpus 1 vs nnodes 2"),
    ],
)
def test_contradicting_fields_are_refused_by_every_stage_naming_them(tmp_path, capsys, run, update, named) -> None:
    data = json.loads(run.to_json())
    for key, value in update.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
        if key == "provenance" and "extra" in value:
            data[key]["extra"] = {**json.loads(run.to_json())["provenance"]["extra"], **value["extra"]}
    path = tmp_path / "in" / "result.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="fields contradict each other") as exc:
        read_result(path)
    assert named in str(exc.value)
    assert try_read_result(path) is None  # run --resume: as if there were no result, so the cell runs again
    store = tmp_path / "baselines"
    write_baseline(base_results()[0], store)
    for argv in (
        ["results", "validate", str(path)],
        ["gate", str(path), "--baselines", str(store)],
        ["baseline", "promote", str(path), "--baselines", str(tmp_path / "new")],
        ["report", str(path), "--out", str(tmp_path / "rep")],
        ["memory", "validate", str(path)],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"{path}: fields contradict each other" in err and named in err, argv


def _folder_with_a_cut_off_result(tmp_path: Path, run: Result) -> tuple[Path, Path, Path]:
    good = tmp_path / "in" / "a" / "result.json"
    cut = tmp_path / "in" / "b" / "result.json"
    for path in (good, cut):
        path.parent.mkdir(parents=True)
    good.write_text(run.to_json())
    cut.write_text(run.to_json()[:200])
    return tmp_path / "in", good, cut


def test_load_results_strict_by_default_names_the_unreadable_file(tmp_path, capsys, run) -> None:
    folder, _, cut = _folder_with_a_cut_off_result(tmp_path, run)
    for kwargs in ({}, {"on_error": "raise"}):
        with pytest.raises(InputError, match="bad result input") as exc:
            load_results([folder], **kwargs)
        assert f"{cut}: truncated JSON" in str(exc.value)
    assert capsys.readouterr().err == ""


def test_load_results_skip_returns_the_rest_and_warns_naming_each_skipped_file(tmp_path, capsys, run) -> None:
    folder, good, cut = _folder_with_a_cut_off_result(tmp_path, run)
    bad = folder / "c" / "result.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"plan": "not a result"}))  # result.json must hold a result
    assert load_results([folder], on_error="skip") == [(good, run)]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].startswith(f"warning: skipped {cut}: truncated JSON")
    assert err[1] == f"warning: skipped {bad}: neither a result (no 'schema'/'id')"
    # other JSON in a folder is not an error under either policy: left out without a warning
    (folder / "plan.json").write_text(json.dumps({"cells": []}))
    bad.unlink()
    assert load_results([folder], on_error="skip") == [(good, run)]
    assert capsys.readouterr().err.count("warning: skipped") == 1


def test_load_results_skip_still_refuses_a_named_path(tmp_path, run) -> None:
    _, good, cut = _folder_with_a_cut_off_result(tmp_path, run)
    with pytest.raises(InputError, match="truncated JSON") as exc:
        load_results([good, cut], on_error="skip")
    assert str(cut) in str(exc.value)
    with pytest.raises(InputError, match="no such file or directory"):
        load_results([tmp_path / "missing"], on_error="skip")
    with pytest.raises(ValueError, match="on_error must be one of raise, skip"):
        load_results([good], on_error="ignore")  # type: ignore[arg-type]


def test_the_writer_refuses_what_the_reader_refuses(tmp_path, run) -> None:
    bad = run.model_copy(update={"n_gpus": 4})
    target = tmp_path / "result.json"
    with pytest.raises(InputError, match=r"n_gpus 4 vs id"):
        write_result(target, bad)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_a_baseline_wrapper_whose_gpu_is_not_its_runs_is_refused(tmp_path, run) -> None:
    path = write_baseline([run], tmp_path / "b")
    doc = json.loads(path.read_text())
    doc["gpu"] = "h200"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"gpu 'h200' vs results\[\]\.gpu \['h100'\]"):
        read_results_file(path, in_folder=False)


def test_ids_of_other_shapes_are_not_parsed(run) -> None:
    assert id_parts("qwen2.5-0.5b/h100x1/fsdp/lora8-off_none-tp1-rb16") == ("h100", 1, "fsdp")
    assert id_parts("my-ingested-run") is None
    assert id_parts("a/b/c/d") is None  # no <gen>x<n> part
    free = run.model_copy(update={"id": "ingested/run-7", "n_gpus": 8})
    assert contradictions(free) == []


def test_ingest_of_a_cell_planned_for_another_card_records_the_plan(tmp_path) -> None:
    metrics = ROOT / "tests" / "fixtures" / "h100-2026-11-28" / "metrics-lora8-off_none-tp1-rb16.jsonl"
    out = tmp_path / "r.json"
    argv = ["ingest", "--metrics", str(metrics), "--id", "qwen2.5-0.5b/h100x1/fsdp/lora8-off_none-tp1-rb16"]
    assert main([*argv, "--gpu", "h200", "--out", str(out)]) == 0
    r = read_result(out)
    assert r.gpu == "h200" and r.provenance.extra["planned_gpu"] == "h100"


def test_the_atomic_writer_keeps_files_readable(tmp_path, run) -> None:
    # mkstemp's 0600 would otherwise survive the rename: a result others sharing the folder cannot read
    path = write_result(tmp_path / "result.json", run)
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o640)
    write_result(path, run)
    assert path.stat().st_mode & 0o777 == 0o640 and read_result(path) == run
