"""Report: ratios to the matrix's reference cell (`[matrix] reference`), in the tables, best cells and exports."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import pytest
from md_tables import column, table_lines
from synthetic_results import make_result, matrix

from suite.report.build import write_report
from suite.report.model import build
from suite.report.table import ReportRow, flatten_all, with_reference
from suite.results.schema import Result

REF = "lora8-off_none-tp1-rb16"


def rows_of(results: list[Result]) -> list[ReportRow]:
    return with_reference(flatten_all((f"r{i}", r) for i, r in enumerate(results)))


def measured_median(r: Result) -> float:
    # computed from the raw steps, not from the report's rows, so the test checks the report's arithmetic
    return statistics.median(s.throughput for s in r.measured_steps())


def test_ratios_are_throughput_and_nvml_peak_over_the_reference_cell():
    results = matrix(gpus=("h100",), reference=REF)
    ref = next(r for r in results if r.id.endswith("/" + REF))
    rows = {r.cell: r for r in rows_of(results)}
    for r in results:
        row = rows[r.id.split("/")[-1]]
        assert row.reference_id == ref.id
        if r.status != "ok":  # the OOM cell: no ratio for either number
            assert row.throughput_vs_reference is None and row.peak_memory_vs_reference is None
            continue
        assert row.throughput_vs_reference == pytest.approx(measured_median(r) / measured_median(ref))
        assert row.peak_memory_vs_reference == pytest.approx(max(r.peak_memory_gb) / max(ref.peak_memory_gb))
    assert rows[REF].is_reference and rows[REF].throughput_vs_reference == 1.0
    assert sum(row.is_reference for row in rows.values()) == 1
    # the synthetic numbers: offload "po" costs 15 % throughput and 10 GiB NVML peak at the same batch
    po = rows["lora8-off_po-tp1-rb16"]
    assert 0.80 < po.throughput_vs_reference < 0.95
    assert po.peak_memory_vs_reference == pytest.approx(38.8 / 48.8, abs=1e-9)


def test_cell_table_shows_x_ratios_and_marks_the_reference_row(tmp_path: Path):
    results = matrix(gpus=("h100",), reference=REF)
    rows = rows_of(results)
    write_report(rows, tmp_path)
    table = table_lines((tmp_path / "index.md").read_text(), "### h100")
    tput, mem = column(table, "tokens/s/GPU vs ref"), column(table, "NVML peak vs ref")
    assert tput[REF] == mem[REF] == "x1.00 (ref)"
    assert tput["lora32-off_none-tp1-rb64"] == mem["lora32-off_none-tp1-rb64"] == "—"  # oom
    for row in rows:
        if row.fits and not row.is_reference:
            # rank 32 against a rank-8 reference trains other parameters: the ratio says so
            assert row.objective_differences == (() if row.axes["lora_rank"] == 8 else ("lora_rank",))
            mark = " (other objective)" if row.objective_differences else ""
            assert tput[row.cell] == f"x{row.throughput_vs_reference:.2f}{mark}"
            assert mem[row.cell] == f"x{row.peak_memory_vs_reference:.2f}{mark}"
    assert mem["lora8-off_po-tp1-rb16"] == "x0.80"  # 38.8 / 48.8 GiB
    assert "vs ref: ratio to the matrix's reference cell" in (tmp_path / "index.md").read_text()


def test_no_ratio_column_without_a_reference_result(tmp_path: Path):
    # one model's matrix names a reference that ran, the other's names none: only the first table has ratios
    with_ref = matrix(gpus=("h100",), reference=REF)
    without = matrix(gpus=("h100",), models=("qwen2.5-1.5b",))
    write_report(rows_of(with_ref + without), tmp_path)
    text = (tmp_path / "index.md").read_text()
    assert "tokens/s/GPU vs ref" in table_lines(text, "### h100 · qwen2.5-0.5b")[0]
    assert not any("vs ref" in h for h in table_lines(text, "### h100 · qwen2.5-1.5b")[0])
    # a reference named by the matrix but absent from the results: no column, a note saying why
    absent = [r for r in with_ref if not r.id.endswith("/" + REF)]
    write_report(rows_of(absent), tmp_path / "absent")
    text = (tmp_path / "absent" / "index.md").read_text()
    assert "vs ref" not in text and "ref tokens/s/GPU" not in text
    assert f"matrix smoke (1 GPU, fsdp) names the reference cell {REF}, which is not among these results" in text
    recs = json.loads((tmp_path / "absent" / "results.json").read_text())
    assert all(r["reference_cell"] == REF and r["throughput_vs_reference"] is None for r in recs)


def test_never_a_ratio_across_generations_or_gpu_counts():
    h100 = matrix(gpus=("h100",), ranks=(8,), reference=REF)
    # the h200 results name the same reference, but it did not run on h200: nothing is divided by h100's
    h200 = [r for r in matrix(gpus=("h200",), ranks=(8,), reference=REF) if not r.id.endswith("/" + REF)]
    rows = rows_of(h100 + h200)
    assert all(r.reference_id is None and r.throughput_vs_reference is None for r in rows if r.gpu == "h200")
    assert all(r.reference_id is not None for r in rows if r.gpu == "h100")
    # a cell that ran on h200 though planned for h100 (its id says h100x1) is read against the h200 run only
    moved = [r.model_copy(update={"gpu": "h200"}) for r in h100]
    rows = rows_of(h100 + moved)
    for r in rows:
        ref = next(x for x in rows if x.gpu == r.gpu and x.cell == REF)
        assert r.reference_id == ref.id and r.throughput == pytest.approx(r.throughput_vs_reference * ref.throughput)
    # the same id with another GPU count (a hand-edited result) is not the reference either
    ref2 = next(r for r in h100 if r.id.endswith("/" + REF)).model_copy(update={"n_gpus": 2})
    rows = rows_of([r for r in h100 if not r.id.endswith("/" + REF)] + [ref2])
    assert all(r.reference_id is None for r in rows if r.n_gpus == 1)


def test_best_cells_name_the_reference_and_how_much_faster_the_fastest_is(tmp_path: Path):
    results = [
        r.model_copy(update={"host_peak_memory_gb": 11.5 + i, "predicted_host_memory_gb": 20.0})
        if r.gpu == "h100" and r.id.endswith(("/" + REF, "lora8-off_none-tp1-rb64"))
        else r
        for i, r in enumerate(matrix(gpus=("h100", "h200"), reference=REF))
    ]
    report = build(rows_of(results))
    by_gpu = {b.gpu: b for b in report.bests}
    ok = [r for r in results if r.gpu == "h100" and r.status == "ok"]
    fastest = max(ok, key=measured_median)
    ref = next(r for r in ok if r.id.endswith("/" + REF))
    b = by_gpu["h100"]
    assert b.reference is not None and b.fastest is not None
    assert (b.reference.id, b.fastest.id) == (ref.id, fastest.id)
    assert b.speedup == pytest.approx(measured_median(fastest) / measured_median(ref))
    write_report(rows_of(results), tmp_path)
    best = table_lines((tmp_path / "index.md").read_text(), "## Best cells")
    head = best[0]
    assert head[:8] == [
        "GPU",
        "model",
        "GPUs",
        "backend",
        "reference cell",
        "ref tokens/s/GPU",
        "ref NVML peak (GiB)",
        "ref host peak (GiB)",
    ]
    line = dict(zip(head, next(r for r in best[1:] if r[0] == "h100"), strict=True))
    assert line["reference cell"] == REF and line["fastest cell that fits"] == fastest.id.split("/")[-1]
    assert line["ref tokens/s/GPU"] == f"{measured_median(ref):.0f}"
    assert line["tokens/s/GPU"] == f"{measured_median(fastest):.0f}"
    assert line["vs ref"] == f"x{b.speedup:.2f}"
    # measured NVML and host peaks, each with the planner's prediction beside it
    assert line["ref NVML peak (GiB)"] == f"{max(ref.peak_memory_gb):.1f} (pred {ref.predicted_memory_gb:.1f})"
    assert line["ref host peak (GiB)"] == f"{ref.host_peak_memory_gb:.1f} (pred 20.0)"
    assert fastest.id.endswith("lora8-off_none-tp1-rb64")  # fastest on h100 in the synthetic matrix
    assert line["host peak (GiB)"] == f"{fastest.host_peak_memory_gb:.1f} (pred 20.0)"
    assert line["NVML peak (GiB)"] == f"{max(fastest.peak_memory_gb):.1f} (pred {fastest.predicted_memory_gb:.1f})"
    h200 = dict(zip(head, next(r for r in best[1:] if r[0] == "h200"), strict=True))
    # no host peak recorded on h200 (Result.host_peak_memory_gb None), nor for a cell without a prediction
    assert h200["ref host peak (GiB)"] == h200["host peak (GiB)"] == "—"
    assert h200["vs ref"] == f"x{by_gpu['h200'].speedup:.2f}" and by_gpu["h200"].speedup > 1


def test_best_cells_when_the_reference_is_the_fastest_or_failed(tmp_path: Path):
    results = [
        make_result(lora_rank=8, reference=REF, steps=12),
        make_result(lora_rank=8, offload="po", reference=REF, steps=12),
    ]
    report = build(rows_of(results))
    assert report.bests[0].speedup == 1.0
    write_report(rows_of(results), tmp_path)
    best = table_lines((tmp_path / "index.md").read_text(), "## Best cells")
    assert dict(zip(best[0], best[1], strict=True))["vs ref"] == "x1.00 (ref)"
    oom = [make_result(lora_rank=8, reference=REF, status="oom"), results[1]]
    write_report(rows_of(oom), tmp_path / "oom")
    text = (tmp_path / "oom" / "index.md").read_text()
    best = table_lines(text, "## Best cells")
    line = dict(zip(best[0], best[1], strict=True))
    assert (line["reference cell"], line["ref tokens/s/GPU"], line["vs ref"]) == (REF, "oom", "—")
    assert column(table_lines(text, "### h100"), "tokens/s/GPU vs ref")[REF] == "ref"
    assert f"{REF} is the reference cell of matrix smoke and has status oom: no ratios" in text


def test_no_reference_anywhere_keeps_the_best_table_without_reference_columns(tmp_path: Path):
    write_report(rows_of(matrix(gpus=("h100",))), tmp_path)
    text = (tmp_path / "index.md").read_text()
    assert table_lines(text, "## Best cells")[0] == [
        "GPU",
        "model",
        "GPUs",
        "backend",
        "fastest cell that fits",
        "tokens/s/GPU",
        "NVML peak (GiB)",
        "most accurate cell",
        "GSM8K %",
    ]
    assert "vs ref" not in text


def test_exports_hold_the_ratios(tmp_path: Path):
    results = matrix(gpus=("h100",), reference=REF) + matrix(gpus=("h100",), models=("qwen2.5-1.5b",))
    rows = {(r.model, r.cell): r for r in rows_of(results)}
    write_report(list(rows.values()), tmp_path)
    recs = {(r["model"], r["id"].split("/")[-1]): r for r in json.loads((tmp_path / "results.json").read_text())}
    csv_rows = {
        (r["model"], r["id"].split("/")[-1]): r
        for r in csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text()))
    }
    assert recs.keys() == rows.keys() == csv_rows.keys()
    for key, row in rows.items():
        rec, line = recs[key], csv_rows[key]
        assert rec["throughput_vs_reference"] == row.throughput_vs_reference
        assert rec["peak_memory_vs_reference"] == row.peak_memory_vs_reference
        expect = "" if row.throughput_vs_reference is None else str(row.throughput_vs_reference)
        assert line["throughput_vs_reference"] == expect
    ref = recs[("qwen2.5-0.5b", REF)]
    assert ref["throughput_vs_reference"] == 1.0 and ref["reference_id"] == ref["id"] and ref["reference_cell"] == REF
    po = recs[("qwen2.5-0.5b", "lora8-off_po-tp1-rb16")]
    assert po["peak_memory_vs_reference"] == pytest.approx(38.8 / 48.8)
    other = recs[("qwen2.5-1.5b", REF)]
    assert other["reference_cell"] is None and other["throughput_vs_reference"] is None
    assert csv_rows[("qwen2.5-1.5b", REF)]["peak_memory_vs_reference"] == ""


def test_html_shows_the_same_ratios(tmp_path: Path):
    from html.parser import HTMLParser

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []
            self._in = False

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.rows.append([])
            self._in = tag in ("td", "th")

        def handle_endtag(self, tag):
            self._in = False if tag in ("td", "th") else self._in

        def handle_data(self, data):
            if self._in:
                self.rows[-1].append(data)

    rows = rows_of(matrix(gpus=("h100",), reference=REF))
    write_report(rows, tmp_path)
    doc = Cells()
    doc.feed((tmp_path / "index.html").read_text())
    head = next(r for r in doc.rows if "tokens/s/GPU vs ref" in r)
    body = {r[head.index("cell")]: r for r in doc.rows if len(r) == len(head) and r[0].startswith("#")}
    assert body[REF][head.index("tokens/s/GPU vs ref")] == "x1.00 (ref)"
    po = next(r for r in rows if r.cell == "lora8-off_po-tp1-rb16")
    assert body[po.cell][head.index("NVML peak vs ref")] == f"x{po.peak_memory_vs_reference:.2f}" == "x0.80"
    best_head = next(r for r in doc.rows if "reference cell" in r)
    best = next(r for r in doc.rows if len(r) == len(best_head) and r[0] == "h100")
    assert best[best_head.index("reference cell")] == REF and best[best_head.index("vs ref")].startswith("x1.")


def _stack(r: Result, flash_attn: str | None) -> Result:
    """`r` as recorded by a suite that looked up every package: with flash-attn at that version, or without it."""
    versions = {k: v for k, v in r.provenance.versions.items() if k != "flash-attn"}
    versions |= {"flash-attn": flash_attn} if flash_attn else {}
    prov = r.provenance.model_copy(update={"versions": versions, "packages_checked": ["torch", "verl", "flash-attn"]})
    return r.model_copy(update={"provenance": prov})


def test_a_ratio_across_two_stacks_is_marked_and_explained(tmp_path: Path):
    # the reference (the offloaded cell) on a host without flash-attn, a candidate with its Triton cross entropy
    po_id = "lora8-off_po-tp1-rb16"
    ref = _stack(make_result(lora_rank=8, offload="po", reference=po_id, steps=12), None)
    cand = _stack(make_result(lora_rank=8, reference=po_id, steps=12), "2.8.3")
    rows = {r.cell: r for r in rows_of([ref, cand])}
    fast = rows[REF]
    assert fast.stack_differences == "flash-attn: 2.8.3, none" and rows[po_id].stack_differences is None
    write_report(list(rows.values()), tmp_path)
    text = (tmp_path / "index.md").read_text()
    table = table_lines(text, "### h100")
    assert column(table, "tokens/s/GPU vs ref")[REF] == f"x{fast.throughput_vs_reference:.2f} (other stack)"
    assert column(table, "NVML peak vs ref")[REF] == f"x{fast.peak_memory_vs_reference:.2f} (other stack)"
    assert column(table, "tokens/s/GPU vs ref")[po_id] == "x1.00 (ref)"
    assert (
        f"{REF} ran on another stack than its reference (flash-attn: 2.8.3, none): its ratios measure the stack too"
        in text
    )
    best = table_lines(text, "## Best cells")
    line = dict(zip(best[0], best[1], strict=True))
    assert line["fastest cell that fits"] == REF and fast.throughput_vs_reference > 1
    assert line["vs ref"] == f"x{fast.throughput_vs_reference:.2f} (other stack)"
    exported = {r["cell"]: r for r in json.loads((tmp_path / "results.json").read_text())}
    assert exported[REF]["stack_differences"] == "flash-attn: 2.8.3, none"
    assert exported[po_id]["stack_differences"] is None
    # results from before the packages were listed claim no difference: flash-attn was never looked up there
    old = [
        r.model_copy(update={"provenance": r.provenance.model_copy(update={"packages_checked": None})})
        for r in (ref, cand)
    ]
    assert all(r.stack_differences is None for r in rows_of(old))
