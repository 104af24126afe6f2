"""Gate: each cell's throughput and NVML peak over its matrix's reference cell, beside (never in) the verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gate_data import base_results, scaled, write_baseline, write_results

from suite.cli import main
from suite.gate.reference import reference_id
from suite.results.schema import Result

REF = "full-off_none-tp1-rb16"  # of the real H100 baselines' matrix h100-1gpu-graphs; the other cell is lora8


@pytest.fixture
def cells() -> list[list[Result]]:
    out = [[r.model_copy(update={"reference": REF}) for r in runs] for runs in base_results()]
    assert sorted(runs[0].id.split("/")[-1] for runs in out) == [REF, "lora8-off_none-tp1-rb16"]
    return out


def gate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["gate", *args])
    return code, capsys.readouterr().out


def median(r: Result) -> float:
    return float(np.median([s.throughput for s in r.measured_steps()]))


def store(tmp_path: Path, cells: list[list[Result]]) -> Path:
    root = tmp_path / "baselines"
    for runs in cells:
        write_baseline(runs, root)
    return root


def current(cells: list[list[Result]]) -> tuple[Result, Result]:
    """The LoRA cell slowed by 10 % with 1.4 GiB more, the reference unchanged."""
    (ref,) = [runs[0] for runs in cells if runs[0].id.endswith(REF)]
    (lora,) = [runs[0] for runs in cells if not runs[0].id.endswith(REF)]
    return scaled(lora, 0.9, memory_gb=1.4), ref


def test_ratio_to_the_reference_run_in_the_same_gate(tmp_path, capsys, cells) -> None:
    root = store(tmp_path, cells)
    lora, ref = current(cells)
    write_results([lora, ref], tmp_path / "cur")
    code, doc_text = gate(capsys, str(tmp_path / "cur"), "--baselines", str(root), "--format", "json")
    doc = json.loads(doc_text)
    rows = {(r["cell"].split("/")[-1], r["metric"]): r for r in doc["rows"]}
    t = rows[("lora8-off_none-tp1-rb16", "throughput")]
    assert t["reference"] == ref.id == reference_id(lora.id, REF) and t["reference_source"] == "current"
    assert t["throughput_vs_reference"] == pytest.approx(median(lora) / median(ref))
    assert t["peak_memory_vs_reference"] == pytest.approx(max(lora.peak_memory_gb) / max(ref.peak_memory_gb))
    # the real numbers: 1594.5 / 1908.5 tokens/s/GPU, 30.70 / 32.19 GiB
    assert round(t["throughput_vs_reference"], 2) == 0.84 and round(t["peak_memory_vs_reference"], 2) == 0.95
    assert rows[(REF, "throughput")]["throughput_vs_reference"] == 1.0
    assert (
        "reference cell qwen2.5-0.5b/h100x1/fsdp/full-off_none-tp1-rb16 (matrix h100-1gpu-graphs, h100) in these"
        in doc["reference_notes"][0]
    )
    # verdicts and exit code are those of the same results without a reference
    plain = tmp_path / "plain"
    write_results([r.model_copy(update={"reference": None}) for r in (lora, ref)], plain)
    code2, plain_text = gate(capsys, str(plain), "--baselines", str(root), "--format", "json")
    strip = {
        "reference",
        "reference_source",
        "throughput_vs_reference",
        "peak_memory_vs_reference",
        "reference_objective_differences",
    }
    assert code == code2 == 1
    assert [{k: v for k, v in r.items() if k not in strip} for r in doc["rows"]] == [
        {k: v for k, v in r.items() if k not in strip} for r in json.loads(plain_text)["rows"]
    ]
    assert all(r["reference"] == "" for r in json.loads(plain_text)["rows"])
    # the table: a "vs ref" column, the reference's own rows marked
    _, table = gate(capsys, str(tmp_path / "cur"), "--baselines", str(root))
    lines = table.splitlines()
    head = next(ln for ln in lines if ln.startswith("cell "))
    col = head.index("vs ref")
    assert "vs ref (ref baseline)" not in head
    values = {
        (ln.split()[0].split("/")[-1], ln.split()[1]): ln[col:].split("  ")[0].strip()
        for ln in lines
        if ln.startswith("qwen2.5")
    }
    # LoRA against a full fine-tuning reference trains other parameters: the ratio says so, and a note says how
    assert t["reference_objective_differences"] == ["lora_rank"]
    assert rows[(REF, "throughput")]["reference_objective_differences"] == []
    assert doc["reference_notes"][1] == (
        f"{lora.id} (matrix h100-1gpu-graphs, h100) has another objective than its reference "
        "(lora_rank 8 (reference 0)): its ratios compare other work"
    )
    assert values == {
        ("lora8-off_none-tp1-rb16", "throughput"): "x0.84 (other objective)",
        ("lora8-off_none-tp1-rb16", "memory"): "x0.95 (other objective)",
        (REF, "throughput"): "x1.00 (ref)",
        (REF, "memory"): "x1.00 (ref)",
    }
    _, md = gate(capsys, str(tmp_path / "cur"), "--baselines", str(root), "--format", "markdown")
    assert "| vs ref " in md and "| x0.84 (other objective) " in md and "| x1.00 (ref) " in md


def test_reference_not_run_uses_its_stored_baseline(tmp_path, capsys, cells) -> None:
    root = store(tmp_path, cells)
    lora, ref = current(cells)
    write_results([lora], tmp_path / "cur")
    code, text = gate(capsys, str(tmp_path / "cur"), "--baselines", str(root), "--format", "json")
    assert code == 1
    doc = json.loads(text)
    t = next(r for r in doc["rows"] if r["metric"] == "throughput")
    assert t["reference_source"] == "baseline"
    # the baseline of the reference is the committed run itself (ref is unchanged from it)
    assert t["throughput_vs_reference"] == pytest.approx(median(lora) / median(ref))
    ref_file = root / "h100" / "h100-1gpu-graphs" / (ref.id + ".json")
    assert doc["reference_notes"] == [
        "vs ref (ref baseline): the reference cell qwen2.5-0.5b/h100x1/fsdp/full-off_none-tp1-rb16 (matrix "
        f"h100-1gpu-graphs, h100) is not in these results; ratio to its stored baseline {ref_file}",
        # the stored reference's axes decide the objective as the current one's would
        f"{lora.id} (matrix h100-1gpu-graphs, h100) has another objective than its reference "
        "(lora_rank 8 (reference 0)): its ratios compare other work",
    ]
    _, table = gate(capsys, str(tmp_path / "cur"), "--baselines", str(root))
    head = next(ln for ln in table.splitlines() if ln.startswith("cell "))
    assert "vs ref (ref baseline)" in head  # every ratio comes from a baseline: the header says so
    throughput = next(ln for ln in table.splitlines() if " throughput " in ln)
    assert throughput[head.index("vs ref") :].split()[0] == "x0.84"
    assert f"note: vs ref (ref baseline): the reference cell {ref.id}" in table


def test_mixed_sources_tag_each_baseline_ratio(tmp_path, capsys, cells) -> None:
    # matrix h100-1gpu-graphs runs its reference; a copy of it ("copy") runs only its LoRA cell
    copies = [[r.model_copy(update={"matrix": "copy"}) for r in runs] for runs in cells]
    root = store(tmp_path, cells + copies)
    lora, ref = current(cells)
    write_results([lora, ref, lora.model_copy(update={"matrix": "copy"})], tmp_path / "cur")
    _, table = gate(capsys, str(tmp_path / "cur"), "--baselines", str(root))
    head = next(ln for ln in table.splitlines() if ln.startswith("cell "))
    assert "vs ref (ref baseline)" not in head
    rows = [ln for ln in table.splitlines() if ln.startswith("qwen2.5") and " throughput " in ln]
    tagged = {ln.split()[1]: "x0.84 (other objective) (ref baseline)" in ln for ln in rows}
    assert tagged == {"copy": True, "h100-1gpu-graphs": False}


def test_new_cell_shows_both_ratios_and_failed_reference_none(tmp_path, capsys, cells) -> None:
    lora, ref = current(cells)
    root = store(tmp_path, [runs for runs in cells if runs[0].id.endswith(REF)])  # no LoRA baseline: new
    write_results([lora, ref], tmp_path / "cur")
    code, table = gate(capsys, str(tmp_path / "cur"), "--baselines", str(root))
    assert code == 0
    new = next(ln for ln in table.splitlines() if " new " in ln)
    assert "tokens/s x0.84, peak x0.95" in new
    # the reference ran out of memory in this run: no ratios, and a note saying so; verdicts as ever
    oom = ref.model_copy(update={"status": "oom", "steps": ref.steps[:1], "reason": "CUDA out of memory"})
    write_results([lora, oom], tmp_path / "oom")
    code, text = gate(capsys, str(tmp_path / "oom"), "--baselines", str(root), "--format", "json")
    doc = json.loads(text)
    assert code == 1 and all(r["throughput_vs_reference"] is None for r in doc["rows"])
    assert doc["reference_notes"] == [
        f"reference cell {ref.id} (matrix h100-1gpu-graphs, h100) has status oom in these results: no ratios"
    ]


def test_no_reference_no_column(tmp_path, capsys) -> None:
    plain = base_results()
    root = store(tmp_path, plain)
    write_results([runs[0] for runs in plain], tmp_path / "cur")
    _, table = gate(capsys, str(tmp_path / "cur"), "--baselines", str(root))
    assert "vs ref" not in table
    _, md = gate(capsys, str(tmp_path / "cur"), "--baselines", str(root), "--format", "markdown")
    assert "vs ref" not in md


def test_a_ratio_to_a_reference_on_another_stack_is_marked(tmp_path, capsys, cells) -> None:
    # the LoRA cell now runs with flash-attn's Triton cross entropy; the reference ran without flash-attn
    root = store(tmp_path, cells)
    lora, ref = current(cells)
    looked_up = ["torch", "verl", "flash-attn"]

    def on(r: Result, versions: dict[str, str]) -> Result:
        prov = r.provenance.model_copy(update={"versions": versions, "packages_checked": looked_up})
        return r.model_copy(update={"provenance": prov})

    base = {k: v for k, v in lora.provenance.versions.items() if k != "flash-attn"}
    write_results([on(lora, {**base, "flash-attn": "2.8.3"}), on(ref, base)], tmp_path / "cur")
    _, text = gate(capsys, str(tmp_path / "cur"), "--baselines", str(root), "--format", "json")
    doc = json.loads(text)
    rows = {(r["cell"].split("/")[-1], r["metric"]): r for r in doc["rows"]}
    assert rows[("lora8-off_none-tp1-rb16", "throughput")]["reference_stack_differences"] == "flash-attn: 2.8.3, none"
    assert rows[(REF, "throughput")]["reference_stack_differences"] is None
    assert (
        f"{lora.id} (matrix h100-1gpu-graphs, h100) ran on another stack than its reference (flash-attn: 2.8.3, "
        "none): its ratios measure the stack too"
    ) in doc["reference_notes"]
    _, md = gate(capsys, str(tmp_path / "cur"), "--baselines", str(root), "--format", "markdown")
    assert "| x0.84 (other objective) (other stack) " in md and "| x1.00 (ref) " in md
    # the same runs on one stack: no mark
    write_results([on(lora, base), on(ref, base)], tmp_path / "same")
    _, md = gate(capsys, str(tmp_path / "same"), "--baselines", str(root), "--format", "markdown")
    assert "(other stack)" not in md and "| x0.84 (other objective) " in md
