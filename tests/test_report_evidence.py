"""The report's "Measured, not baselines" section: runs kept as raw GPU files beside the store whose cell has no
baseline, with what each measured and why the gate would not take it (the promotion's own refusals); the
committed evidence read as `nox -s report` reads it; the planned section no longer calling a measured matrix
unmeasured."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from evidence_helpers import EVIDENCE
from synthetic_results import make_result

from suite.cli import main
from suite.errors import InputError
from suite.gate.config import load_config
from suite.gate.store import plan_promotions, refusals
from suite.report.columns import evidence_table
from suite.report.evidence import evidence_runs
from suite.report.model import build
from suite.report.planned import PlannedMatrix
from suite.report.table import flatten_all
from suite.results.collect import load_results
from suite.results.io import write_result

ROOT = Path(__file__).resolve().parents[1]
ROPE = EVIDENCE / "2026-12-08-h100-14b-rope"
CONFIG = load_config()


def test_refusals_are_the_promotions_reasons_as_data() -> None:
    ok = make_result(steps=10, warmup=2)
    assert refusals([ok], allow_failed=False, min_samples=5, sentinel=None) == []
    few = make_result(steps=4, warmup=2)
    (why,) = refusals([few], allow_failed=False, min_samples=5, sentinel=None)
    assert (why.kind, why.short()) == ("steps", "2 measured step(s) over 1 run(s); the gate needs at least 5")
    cut = make_result(status="timeout", reason="timed out after 860 s (last step: 2)")
    (why,) = refusals([ok, cut], allow_failed=False, min_samples=5, sentinel=None)
    assert (why.kind, why.run, why.short()) == ("status", 1, "status 'timeout' (timed out after 860 s (last step: 2))")
    assert refusals([cut], allow_failed=True, min_samples=5, sentinel=None) == []  # and no step count then
    # the promotion's messages are written from them, unchanged
    with pytest.raises(InputError) as err:
        plan_promotions([(Path("a.json"), few)], allow_failed=False, min_samples=5)
    assert "2 measured step(s) over 1 run(s); the gate needs at least 5 (run more steps or more runs)" in str(err.value)
    with pytest.raises(InputError) as err:
        plan_promotions([(Path("b.json"), cut)], allow_failed=False, min_samples=5)
    assert "b.json: status 'timeout' (timed out after 860 s (last step: 2)); only ok results are promoted" in str(
        err.value
    )


def _store_and_evidence(tmp_path: Path) -> tuple[Path, Path]:
    """A baseline cell (rb16) and, beside the store, raw runs: one of the baseline cell (its own raw files), a
    cut-off run of another cell, a too-short ok run and a crash."""
    ev = tmp_path / "baselines" / "evidence"
    runs = {
        "2026-12-01-h100/base/result.json": make_result(rollout_batch=16),
        "2026-12-02-h100/cut/result.json": make_result(rollout_batch=32, status="timeout", reason="timed out"),
        "2026-12-03-h100/short/result.json": make_result(rollout_batch=64, steps=3, warmup=1),
        "2026-12-03-h100/crash/result.json": make_result(rollout_batch=128, status="crash", reason="RuntimeError: x"),
    }
    for rel, r in runs.items():
        write_result(ev / rel, r)
        (ev / rel).with_name("cell.json").write_text(json.dumps({"id": r.id, "not": "a result"}))
    return ev, tmp_path / "baselines"


def test_evidence_runs_leave_out_cells_with_a_baseline_and_say_why_not(tmp_path: Path) -> None:
    ev, _ = _store_and_evidence(tmp_path)
    found = load_results([ev])
    assert len(found) == 4  # cell.json files are other JSON, skipped
    base = make_result(rollout_batch=16)
    runs = evidence_runs(found, ev, {(base.gpu, base.matrix, base.id)}, CONFIG)
    assert [(e.id.rsplit("/", 1)[1], e.folder, e.status, e.measured_steps) for e in runs] == [
        ("lora8-off_none-tp1-rb128", "2026-12-03-h100", "crash", 0),
        ("lora8-off_none-tp1-rb32", "2026-12-02-h100", "timeout", 0),
        ("lora8-off_none-tp1-rb64", "2026-12-03-h100", "ok", 2),
    ]
    crash, cut, short = runs
    assert crash.why_not == ("status 'crash' (RuntimeError: x)",) and crash.tokens_per_s is None
    assert cut.why_not == ("status 'timeout' (timed out)",)
    assert short.why_not == ("2 measured step(s) over 1 run(s); the gate needs at least 5",)
    r = next(r for _, r in found if r.id == short.id)
    assert short.tokens_per_s == statistics.median(s.throughput for s in r.measured_steps())
    assert short.nvml_gib == max(r.peak_memory_gb) and short.predicted_gib == r.predicted_memory_gb
    t = evidence_table(runs)
    assert t.headers[-2:] == ["why not a baseline", "evidence"] and len(t.rows) == 3
    assert t.rows[2][-2] == "2 measured step(s) over 1 run(s); the gate needs at least 5"
    assert t.rows[0][7] == "—" and t.rows[2][6] == "2"


def test_a_run_that_meets_the_bar_reads_none(tmp_path: Path) -> None:
    r = make_result(rollout_batch=256)
    write_result(tmp_path / "ev" / "2026-12-04-h200" / "result.json", r)
    (run,) = evidence_runs(load_results([tmp_path / "ev"]), tmp_path / "ev", set(), CONFIG)
    assert run.why_not == () and evidence_table([run]).rows[0][-2] == "none"


def test_the_planned_section_leaves_out_matrices_with_evidence() -> None:
    rows = flatten_all([("x", make_result())])
    planned = [
        PlannedMatrix("smoke", "h100", 1, "m", "fsdp", None, (("ok", 1),), None, None, None),
        PlannedMatrix("other", "h100", 1, "m", "fsdp", None, (("ok", 1),), None, None, None),
        PlannedMatrix("measured-raw", "h100", 1, "m", "fsdp", None, (("ok", 1),), None, None, None),
    ]
    raw = make_result(rollout_batch=32, status="timeout")
    raw = raw.model_copy(update={"matrix": "measured-raw"})
    runs = evidence_runs([(Path("ev/d/result.json"), raw)], Path("ev"), set(), CONFIG)
    report = build(rows, planned=planned, evidence=runs)
    assert [p.matrix for p in report.planned] == ["other"]
    assert [e.matrix for e in report.evidence] == ["measured-raw"]


def test_cli_report_with_evidence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ev, store = _store_and_evidence(tmp_path)
    assert main(["baseline", "promote", str(ev / "2026-12-01-h100/base/result.json"), "--baselines", str(store)]) == 0
    bad = ev / "2026-12-05-h100" / "result.json"
    bad.parent.mkdir()
    bad.write_text('{"schema": 1, "id": "x"')  # cut off mid-write
    out = tmp_path / "rep"
    assert main(["report", "--baselines", str(store), "--out", str(out), "--evidence", str(ev)]) == 0
    capsys.readouterr()
    md = (out / "index.md").read_text()
    section = md.split("## Measured, not baselines", 1)[1]
    assert section.count("| h100 ") == 3 and "lora8-off_none-tp1-rb16" not in section  # the baseline's own run
    assert "status 'timeout' (timed out)" in section and "2026-12-02-h100" in section
    assert "1 evidence file(s) left out" in section and "2026-12-05-h100/result.json" in section
    html = (out / "index.html").read_text()
    assert '<h2 id="evidence">Measured, not baselines</h2>' in html and 'href="#evidence"' in html
    exported = json.loads((out / "results.json").read_text())
    assert len(exported) == 1  # evidence never reaches the exports
    assert main(["report", "--baselines", str(store), "--out", str(out), "--evidence", str(tmp_path / "no")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_the_committed_evidence_as_nox_reads_it() -> None:
    skipped: list[str] = []
    found = load_results([EVIDENCE], on_error="skip", skipped=skipped)
    assert len(skipped) == 3 and all("fields contradict each other" in s for s in skipped)
    baselines = load_results([EVIDENCE.parent], baselines=True, skip_evidence=True)
    keys = {(r.gpu, r.matrix, r.id) for _, r in baselines}
    runs = evidence_runs(found, EVIDENCE, keys, CONFIG)
    by = {(e.folder, e.id.rsplit("/", 1)[1]): e for e in runs}
    cell = "lora32-off_none-tp1-rb45-gmu0.55-attnflex-rmpad-mnbt8192-mb3-nogc-mdbf16"
    # the 14B bf16 cell has a baseline since 2026-12-08: its two earlier runs (the sentinel's refusal, the timeout)
    # leave the list with it
    assert ("h100", "h100-1gpu-14b-bf16", f"qwen2.5-14b/h100x1/fsdp/{cell}") in keys
    assert ("2026-12-07-h100-heavy-2", cell) not in by and (ROPE.name, cell) not in by
    registered = next(e for e in runs if e.matrix == "h100-1gpu-7b-registered")
    assert registered.why_not == ("2 measured step(s) over 1 run(s); the gate needs at least 4",)
    assert not any(e.key in keys for e in runs) and len(runs) == 16
    committed = (ROOT / "reports" / "index.md").read_text()
    assert "## Measured, not baselines" in committed and "2026-12-08-h100-14b-rope" not in committed
    planned = committed.split("## Planned, not yet measured", 1)[1].split("\n## ", 1)[0]
    for matrix in ("h100-1gpu-14b-bf16", "h100-1gpu-7b-registered", "h200-1gpu-14b-pageable"):
        assert f"| {matrix} " not in planned, matrix  # measured, as evidence: listed above instead
    assert "| h200-1gpu-14b-registered " in planned  # not yet run
