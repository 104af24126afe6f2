"""The report's "Planned, not yet measured" section: matrices without a result, planned and predicted on the CPU."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from synthetic_results import matrix, promoted_store

from suite.cli import main
from suite.errors import InputError
from suite.report.build import render_all
from suite.report.columns import planned_table, short_reason
from suite.report.model import build
from suite.report.planned import PlannedMatrix, matrix_files, plan_matrices, summarise, unmeasured
from suite.report.table import flatten_all

ROOT = Path(__file__).resolve().parents[1]
MATRICES = ROOT / "suite" / "matrices"


@dataclass(frozen=True)
class FakeCell:
    """The fields of suite.plan.cell.Cell that a planned line reads."""

    id: str
    status: str
    predicted_memory_gb: float | None
    predicted_host_memory_gb: float | None = 50.0
    reason: str | None = None
    matrix: str = "m"
    gpu: str = "h100"
    n_gpus: int = 1
    model: str = "synthetic:qwen2.5-14b"
    backend: str = "fsdp"
    host_memory_gb: float | None = 125.0


def test_summarise_counts_statuses_in_reading_order_and_picks_the_lightest_ok_cell():
    cells = [
        FakeCell("a", "predicted-host-oom", 90.0, 171.4, "host: predicted 171.4 GiB > 0.95 x 125 GiB"),
        FakeCell("b", "ok", 75.1, 74.7),
        FakeCell("c", "predicted-oom", 101.0),
        FakeCell("d", "ok", 70.3, 80.0),
        FakeCell("e", "ok", 70.3, 74.7),
        FakeCell("f", "invalid", None),
        FakeCell("g", "ok", 70.3, 74.7),
    ]
    p = summarise(cells, cells[0])
    assert p.statuses == (("ok", 4), ("predicted-oom", 1), ("predicted-host-oom", 1), ("invalid", 1))
    assert (p.n_cells, p.n_ok) == (7, 4)
    # smallest GPU peak; ties by host peak, then id
    assert p.lightest is not None and p.lightest.id == "e"
    assert (p.lightest.gpu_gib, p.lightest.host_gib) == (70.3, 74.7)
    assert p.reference is not None
    assert (p.reference.id, p.reference.status, p.reference.host_gib) == ("a", "predicted-host-oom", 171.4)
    assert (p.matrix, p.gpu, p.n_gpus, p.model, p.backend, p.host_memory_gb) == (
        "m",
        "h100",
        1,
        "synthetic:qwen2.5-14b",
        "fsdp",
        125.0,
    )
    assert p.reference_matrix is None


def test_summarise_without_an_ok_cell_or_a_reference():
    p = summarise([FakeCell("a", "predicted-oom", 101.0), FakeCell("b", "predicted-oom", 120.0)])
    assert p.lightest is None and p.reference is None
    assert p.statuses == (("predicted-oom", 2),)
    # an ok cell the planner could not predict (unknown model) is not the lightest
    assert summarise([FakeCell("a", "ok", None)]).lightest is None


def test_summarise_refuses_an_empty_matrix():
    with pytest.raises(InputError, match="no cells"):
        summarise([])


def test_unmeasured_drops_matrices_with_a_result_and_sorts():
    def line(name: str, gpu: str, model: str) -> PlannedMatrix:
        return summarise([FakeCell("a", "ok", 10.0, matrix=name, gpu=gpu, model=model)])

    planned = [line("z", "h200", "m1"), line("y", "h100", "m2"), line("x", "h100", "m1"), line("w", "h100", "m1")]
    assert [p.matrix for p in unmeasured(planned, ["w"])] == ["x", "y", "z"]
    assert unmeasured(planned, ["w", "x", "y", "z"]) == []
    assert [p.matrix for p in unmeasured(planned, [])] == ["w", "x", "y", "z"]


def test_matrix_files_reads_files_and_folders_and_names_a_bad_path(tmp_path: Path):
    a = tmp_path / "a.toml"
    a.write_text("")
    (tmp_path / "notes.txt").write_text("")
    assert matrix_files([tmp_path, a]) == [a]  # a folder's *.toml only, each file once
    with pytest.raises(InputError, match=r"missing\.toml: no such matrix file or folder") as e:
        matrix_files([tmp_path / "missing.toml"])
    assert e.value.field == "--plan"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no matrix"):
        matrix_files([empty])


def test_plan_matrices_on_the_shipped_14b_matrices():
    by_name = {
        p.matrix: p
        for p in plan_matrices(
            [MATRICES / "h200-1gpu-14b.toml", MATRICES / "h100-1gpu-14b.toml", MATRICES / "h100-1gpu-7b-bf16.toml"]
        )
    }
    h200 = by_name["h200-1gpu-14b"]
    # the recipe on one H200: fits the GPU, not the 125 GiB host (torch's pinned rounding the largest term)
    assert h200.reference is not None
    assert h200.reference.id == "lora32-off_param+optimizer-tp1-rb45-gmu0.3-mnbt1536-graphs-mb15-gc"
    assert h200.reference.status == "predicted-host-oom"
    assert h200.reference.host_gib == pytest.approx(171.4, abs=0.05)
    assert h200.reference.gpu_gib is not None and h200.reference.gpu_gib < 139
    assert h200.host_memory_gb == 125
    assert h200.reference.reason is not None and "pinned rounding 61.6" in h200.reference.reason
    assert dict(h200.statuses) == {"ok": 8, "predicted-oom": 20, "predicted-host-oom": 12}
    assert h200.lightest is not None and h200.lightest.id.startswith("lora32-off_none-")
    h100 = by_name["h100-1gpu-14b"]
    assert h100.n_ok == 0 and h100.lightest is None
    assert h100.reference is not None and h100.reference.status == "predicted-oom"
    assert h100.reference.gpu_gib is not None and h100.reference.gpu_gib > 78
    # a reference held by another matrix is planned there
    bf16 = by_name["h100-1gpu-7b-bf16"]
    assert bf16.reference_matrix == "h100-1gpu-7b-fa"
    assert bf16.reference is not None and bf16.reference.status == "ok"
    assert bf16.reference.id == "lora32-off_param+optimizer-tp1-rb45-attnsdpa-normpad-mnbt1536-mb15-gc"


def test_plan_matrices_names_a_bad_matrix_before_anything_else(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[matrix]\nname = "bad"\ngpu = "h999"\nmodel = "synthetic:qwen2.5-7b"\nbackend = "fsdp"\n')
    with pytest.raises(InputError, match="h999"):
        plan_matrices([bad])


def test_short_reason_keeps_the_verdict_and_cuts_the_breakdown():
    assert short_reason(None) == "—"
    assert short_reason("memory: predicted peak 101 GiB > 78.2 GiB usable [actor_update: a 1]") == (
        "memory: predicted peak 101 GiB > 78.2 GiB usable"
    )
    long = "host: " + "x" * 400
    cut = short_reason(long)
    assert len(cut) == 150 and cut.endswith("…") and cut.startswith("host: xxx")


def test_planned_table_columns_and_rows():
    ref = FakeCell("ref", "predicted-host-oom", 97.9, 171.4, "host: predicted 171.4 GiB > 0.95 x 125 GiB [x]")
    p = summarise([ref, FakeCell("fast", "ok", 101.8, 94.0)], ref)
    t = planned_table([p, summarise([FakeCell("a", "predicted-oom", 120.0)])])
    assert t.headers[:6] == ["GPU", "model", "GPUs", "backend", "matrix", "cells"]
    assert len(t.numeric) == len(t.headers) and all(len(r) == len(t.headers) for r in t.rows)
    row = dict(zip(t.headers, t.rows[0], strict=True))
    assert row["cells"] == "1 ok, 1 predicted-host-oom (of 2)"
    assert row["reference cell"] == "ref" and row["ref status"] == "predicted-host-oom"
    assert row["ref pred GPU (GiB)"] == "97.9"
    assert row["ref pred host (GiB / host)"] == "171 / 125"
    assert row["why not"] == "host: predicted 171.4 GiB > 0.95 x 125 GiB"
    assert (row["lightest cell that fits"], row["pred GPU (GiB)"], row["pred host (GiB)"]) == ("fast", "102", "94.0")
    other = dict(zip(t.headers, t.rows[1], strict=True))
    assert other["reference cell"] == "—" and other["lightest cell that fits"] == "—"
    assert other["cells"] == "1 predicted-oom (of 1)"


def test_planned_table_shows_the_speed_planners_fastest_cell_against_the_reference():
    from types import SimpleNamespace

    def speed(cell_id, tps, step=100.0, run=900.0):
        return SimpleNamespace(id=cell_id, prediction=SimpleNamespace(tokens_per_s_per_gpu=tps, step_s=step), run_s=run)

    ref = FakeCell("ref", "predicted-host-oom", 97.9, 171.4, "host: x")
    cells = [ref, FakeCell("fast", "ok", 101.8, 94.0), FakeCell("faster-oom", "predicted-oom", 150.0)]
    speeds = [speed("ref", 1000.0), speed("fast", 1420.0, run=919.4), speed("faster-oom", 2000.0)]
    p = summarise(cells, ref, None, (), speeds)
    assert p.reference_speed is not None and p.reference_speed.vs_reference == 1.0
    # the fastest that plans ok, not the fastest predicted: the planner says the other one does not fit
    assert p.fastest is not None and p.fastest.id == "fast"
    assert p.fastest.vs_reference == pytest.approx(1.42)
    row = dict(zip(planned_table([p]).headers, planned_table([p]).rows[0], strict=True))
    assert row["ref pred tokens/s/GPU"] == "1000"
    assert row["fastest predicted cell that fits"] == "fast"
    assert (row["pred tokens/s/GPU"], row["pred vs ref"], row["pred run s"]) == ("1420", "x1.42", "919")
    bare = dict(zip(planned_table([summarise(cells)]).headers, planned_table([summarise(cells)]).rows[0], strict=True))
    assert bare["fastest predicted cell that fits"] == "—" and bare["ref pred tokens/s/GPU"] == "—"


def test_planned_table_names_the_reference_matrix_and_leaves_why_not_empty_for_an_ok_reference():
    ref = FakeCell("ref", "ok", 70.1, 107.6)
    t = planned_table([summarise([FakeCell("a", "ok", 60.3, 52.4)], ref, "h100-1gpu-7b-fa")])
    row = dict(zip(t.headers, t.rows[0], strict=True))
    assert row["reference cell"] == "ref (in h100-1gpu-7b-fa)"
    assert row["why not"] == "—"


def _rows():
    return flatten_all([(f"{i}.json", r) for i, r in enumerate(matrix(gpus=("h100",)))])


def test_both_formats_show_the_section_only_with_unmeasured_matrices():
    rows = _rows()
    measured = rows[0].matrix
    ref = FakeCell("the-ref", "predicted-host-oom", 97.9, 171.4, "host: predicted 171.4 GiB > 0.95 x 125 GiB")
    planned = [summarise([ref], ref), summarise([FakeCell("x", "ok", 10.0, matrix=measured)])]
    files = render_all(build(rows, planned=planned))
    assert "## Planned, not yet measured" in files["index.md"]
    assert "the-ref" in files["index.md"]
    assert f"| {measured} " not in files["index.md"].split("## Planned, not yet measured")[1]
    assert 'id="planned"' in files["index.html"] and 'href="#planned"' in files["index.html"]
    assert 'class="s-predicted-host-oom"' in files["index.html"]
    assert '<td class="wrap">host: predicted 171.4 GiB' in files["index.html"]  # the reason wraps, not the page
    # results.json / results.csv hold measured cells only
    assert "the-ref" not in files["results.json"] and "the-ref" not in files["results.csv"]
    for planned_only_measured in ([], [summarise([FakeCell("x", "ok", 10.0, matrix=measured)])]):
        files = render_all(build(rows, planned=planned_only_measured))
        assert "Planned, not yet measured" not in files["index.md"]
        assert 'id="planned"' not in files["index.html"]


def test_cli_report_with_plan(tmp_path: Path, capsys):
    store = promoted_store(tmp_path)
    out = tmp_path / "out"
    args = ["report", "--baselines", str(store), "--out", str(out)]
    assert main([*args, "--plan", str(MATRICES / "h200-1gpu-14b.toml"), "--plan", str(MATRICES / "h20.toml")]) == 0
    text = (out / "index.md").read_text()
    section = text.split("## Planned, not yet measured", 1)[1]
    assert "h200-1gpu-14b" in section and "predicted-host-oom" in section and "171 / 125" in section
    assert "| h20 " in section and "Qwen/Qwen2.5-32B-Instruct" in section
    assert main([*args]) == 0
    assert "Planned, not yet measured" not in (out / "index.md").read_text()
    capsys.readouterr()
    assert main([*args, "--plan", str(tmp_path / "nope")]) == 2
    assert "nope: no such matrix file or folder" in capsys.readouterr().err


def test_nox_report_session_plans_the_shipped_matrices():
    text = (ROOT / "noxfile.py").read_text()
    body = " ".join(text.split("def report(", 1)[1].split("\n\n\n", 1)[0].split())
    assert '"--plan", "suite/matrices"' in body and '"--evidence", "baselines/evidence"' in body


def test_committed_report_lists_the_14b_recipe_that_no_host_here_holds():
    text = (ROOT / "reports" / "index.md").read_text()
    section = text.split("## Planned, not yet measured", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if "| h200-1gpu-14b " in ln]
    assert len(lines) == 1
    assert "predicted-host-oom" in lines[0] and "171 / 125" in lines[0] and "pinned rounding 61.6" in lines[0]
    # the matrices with a promoted result are reported above, not here
    assert "| h100-1gpu-7b-fa " not in section and "| smollm2-train " not in section


def test_plan_matrices_names_what_the_generation_s_image_cannot_run():
    by_name = {
        p.matrix: p for p in plan_matrices([MATRICES / "h200-1gpu-14b-pinned.toml", MATRICES / "h200-1gpu-14b.toml"])
    }
    pinned = by_name["h200-1gpu-14b-pinned"]
    # the planner says the recipe fits with exact-size pinned blocks; the h200 image's torch cannot set them
    assert pinned.reference is not None and pinned.reference.status == "ok"
    [gap] = pinned.image_gaps
    assert gap.startswith("torch 2.11.0 (the h200 image) lacks allocator key pinned_max_round_threshold_mb")
    assert by_name["h200-1gpu-14b"].image_gaps == ()
    row = dict(zip(planned_table([pinned]).headers, planned_table([pinned]).rows[0], strict=True))
    assert row["ref status"] == "ok" and row["why not"] == gap


def test_image_pin_reads_the_lock_and_is_none_without_container_sources(tmp_path: Path, monkeypatch):
    from suite.containers.lock import image_pin

    assert image_pin("h200", "torch") == image_pin("h100", "torch") == "2.11.0"
    assert image_pin("h200", "no-such-package") is None
    assert image_pin("no-such-generation", "torch") is None
    monkeypatch.setenv("GRPO_SUITE_CONTAINERS", str(tmp_path))  # an installed wheel: no containers/ folder
    assert image_pin("h200", "torch") is None


def test_planned_table_joins_the_reason_and_the_image_gaps():
    ref = FakeCell("ref", "predicted-oom", 90.0, 50.0, reason="predicted-oom: 90.0 GiB > 78.2 [params 60]")
    p = summarise([FakeCell("a", "ok", 60.3, 52.4)], ref, None, ["torch 2.11.0 (x) lacks y"])
    row = dict(zip(planned_table([p]).headers, planned_table([p]).rows[0], strict=True))
    assert row["why not"] == "predicted-oom: 90.0 GiB > 78.2; torch 2.11.0 (x) lacks y"
    bare = summarise([FakeCell("a", "ok", 60.3, 52.4)], None, None, ["gap"])
    assert dict(zip(planned_table([bare]).headers, planned_table([bare]).rows[0], strict=True))["why not"] == "gap"
