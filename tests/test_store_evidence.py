"""`baselines/evidence/` (raw files of GPU runs) sits beside the baseline store and is never read as part of it:
not by `baseline list`/the gate, the report, or `memory validate` over the store."""

import json
import shutil
from pathlib import Path

import pytest
from gate_data import base_results, write_baseline

from suite.cli import main
from suite.gate.store import in_evidence, list_baselines
from suite.report.load import load_results

ROOT = Path(__file__).resolve().parents[1]


def make_store(tmp_path: Path) -> Path:
    store = tmp_path / "baselines"
    write_baseline(base_results()[0], store)
    ev = store / "evidence" / "session" / "h100" / "cell"
    ev.mkdir(parents=True)
    (ev / "cell.json").write_text(json.dumps({"argv": ["python3"], "id": "x"}))  # neither result nor baseline
    (ev / "result.json").write_text(base_results()[0][0].to_json())  # a real result, but evidence
    return store


def test_in_evidence():
    root = Path("/b")
    assert in_evidence(Path("/b/evidence/s/x.json"), root)
    assert not in_evidence(Path("/b/h100/m/evidence.json"), root)
    assert not in_evidence(Path("/elsewhere/evidence/x.json"), root)
    assert not in_evidence(Path("/b/evidence/s/x.json"), Path("/b/evidence/s"))  # named explicitly: read


def test_store_listing_skips_evidence(tmp_path):
    store = make_store(tmp_path)
    found = list_baselines(store)
    assert len(found) == 1 and "evidence" not in str(found[0][0])


def test_baseline_list_and_report_over_a_store_with_evidence(tmp_path, capsys):
    store = make_store(tmp_path)
    assert main(["baseline", "list", "--baselines", str(store)]) == 0
    assert base_results()[0][0].id in capsys.readouterr().out
    loaded = load_results([store])
    assert len(loaded) == 1 and "evidence" not in loaded[0][0]
    # the evidence folder itself, named explicitly, is read
    assert len(load_results([store / "evidence" / "session" / "h100" / "cell" / "result.json"])) == 1


def test_memory_validate_reads_baseline_files_and_skips_evidence(tmp_path, capsys):
    store = make_store(tmp_path)
    main(["memory", "validate", str(store), "--format", "json"])
    captured = capsys.readouterr()
    sources = [row["source"] for row in json.loads(captured.out)["rows"]]
    assert len(sources) == len(base_results()[0]) and all("evidence" not in src for src in sources)
    assert "warning" not in captured.err  # the evidence folder is left out, not skipped as unreadable


def test_the_committed_store_has_evidence_and_reads_cleanly(tmp_path):
    assert (ROOT / "baselines" / "evidence").is_dir()
    ids = {b.id for _, b in list_baselines(ROOT / "baselines")}
    files = [p for p in (ROOT / "baselines").rglob("*.json") if "evidence" not in p.parts]
    assert ids == {json.loads(p.read_text())["id"] for p in files}
    assert {r[0].id for r in base_results()} <= ids  # the gate's test data is part of the store
    gens = {p.relative_to(ROOT / "baselines").parts[0] for p in files}
    assert {"h100", "h200"} <= gens  # each result filed under the generation it ran on
    for _, b in list_baselines(ROOT / "baselines"):
        assert all(r.gpu == b.gpu for r in b.results)
    shutil.copytree(ROOT / "baselines", tmp_path / "b")
    assert {r.id for _, r in load_results([tmp_path / "b"])} == ids


def test_a_real_h200_run_filed_as_h100_contradicts_itself_and_is_refused():
    # Written on the lent 2x H200 host by `grpo-suite run` from an h100 plan before the generation came from
    # the hardware: the raw file says h100, its provenance says H200. One rule for `gpu` (the card it ran on):
    # the reader refuses it, naming both fields, instead of rewriting it (issue 19). Its promoted copy in
    # baselines/h200/ was written under the rule and reads.
    from suite.errors import InputError
    from suite.results.io import read_result

    f = (
        ROOT
        / "baselines"
        / "evidence"
        / "2026-11-28-h200x2"
        / "host-b"
        / "h100"
        / "qwen2.5-1.5b"
        / "h100x1"
        / "fsdp"
        / "lora8-off_none-tp1-rb16"
        / "result.json"
    )
    raw = json.loads(f.read_text())
    assert raw["gpu"] == "h100" and raw["provenance"]["gpu_name"] == "NVIDIA H200"
    with pytest.raises(
        InputError, match=r"fields contradict each other: gpu 'h100' vs provenance.gpu_name 'NVIDIA H200'"
    ):
        read_result(f)
    stored = (
        ROOT
        / "baselines"
        / "h200"
        / "h100-1gpu-1.5b"
        / "qwen2.5-1.5b"
        / "h100x1"
        / "fsdp"
        / "lora8-off_none-tp1-rb16.json"
    )
    (r,) = [r for _, r in load_results([stored])]
    assert r.gpu == "h200" and r.provenance.extra["planned_gpu"] == "h100"
    assert [s.throughput for s in r.steps] == [s["throughput"] for s in raw["steps"]]  # the same run
