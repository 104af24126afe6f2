"""Report stage: statistics, rows, escaping, loading, determinism, CLI (the browser test is separate)."""

from __future__ import annotations

import csv
import io
import json
import random
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from scipy.stats import binom, binomtest
from synthetic_results import make_result, matrix, promoted_store

from suite.cli import main
from suite.errors import InputError
from suite.gate.store import promote
from suite.report.backends import backend_pairs
from suite.report.build import write_report
from suite.report.escape import md
from suite.report.load import load_results
from suite.report.stats import median_interval, wilson_interval
from suite.report.table import cross_generation, flatten, flatten_all, group_rows, pareto_front
from suite.results.schema import Result

HOSTILE_ID = "<script>alert(1)</script>"
HOSTILE_REASON = "bad | pipe `tick` <b>bold</b>\nsecond line [x](http://evil) # not a heading"


def write(folder: Path, results: list[Result]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n, r in enumerate(results):
        (folder / f"{n:03d}.json").write_text(r.to_json(), encoding="utf-8")
    return folder


def scaled(r: Result, factor: float) -> Result:
    """The same cell with every step's throughput scaled (a slowdown or speed-up)."""
    steps = [s.model_copy(update={"throughput": s.throughput * factor}) for s in r.steps]
    return r.model_copy(update={"steps": steps})


# --- statistics ------------------------------------------------------------------------------------------


def test_median_interval_is_the_tightest_order_statistic_pair_with_95_percent_coverage():
    for n in range(6, 60):
        iv = median_interval([float(i) for i in range(n)])
        assert iv is not None
        k = int(iv.lo) + 1  # 1-based order statistic
        assert iv.hi == n - k  # symmetric pair x_(k), x_(n-k+1)
        coverage = 1 - 2 * binom.cdf(k - 1, n, 0.5)
        assert coverage == pytest.approx(iv.coverage) and coverage >= 0.95
        assert 1 - 2 * binom.cdf(k, n, 0.5) < 0.95  # one step narrower would not cover
    assert median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None  # n=5 cannot reach 95 %


def test_wilson_interval_matches_scipy():
    for correct, total in [(809, 1319), (0, 10), (10, 10), (3, 7)]:
        ours = wilson_interval(correct, total)
        ref = binomtest(correct, total).proportion_ci(0.95, method="wilson")
        assert ours.lo == pytest.approx(ref.low, abs=1e-9) and ours.hi == pytest.approx(ref.high, abs=1e-9)


# --- rows ------------------------------------------------------------------------------------------------


def test_row_excludes_warmup_pools_runs_and_stacks_phases_to_step_time():
    a = make_result(steps=10, warmup=2, seed=1)
    b = make_result(steps=10, warmup=2, seed=2)
    row = flatten([a, b])
    measured = sorted(s.throughput for r in (a, b) for s in r.measured_steps())
    assert row.n_runs == 2 and row.n_steps == 16
    assert row.throughput == pytest.approx((measured[7] + measured[8]) / 2)
    warm = [s.throughput for s in a.steps if s.step <= 2]
    assert max(warm) < row.throughput_lo  # synthetic warm-up is slower; it must not drag the median
    mean_step = sum(s.timing_s["step"] for r in (a, b) for s in r.measured_steps()) / 16
    assert sum(row.phases.values()) == pytest.approx(mean_step)
    assert row.accuracy_correct == a.accuracy["gsm8k"].correct + b.accuracy["gsm8k"].correct
    assert row.accuracy_total == 2 * 1319


def test_oom_row_and_pareto_front():
    rows = flatten_all((f"r{i}", r) for i, r in enumerate(matrix(gpus=("h100",))))
    oom = [r for r in rows if r.status == "oom"]
    assert oom and oom[0].throughput is None and oom[0].gpu_memory_gb == pytest.approx(79.2)
    front = pareto_front(rows)
    ok = [r for r in rows if r.fits]
    for r in ok:  # every cell off the front is dominated by one on it
        if r not in front:
            assert any(f.throughput >= r.throughput and f.peak_memory_gb <= r.peak_memory_gb for f in front)
    for f in front:  # and nothing dominates a front cell
        assert not any(o.throughput > f.throughput and o.peak_memory_gb < f.peak_memory_gb for o in ok if o is not f)


def test_cross_generation_ratio_to_reference():
    rows = flatten_all((f"r{i}", r) for i, r in enumerate(matrix(gpus=("h100", "h200"), ranks=(8,))))
    gens, cross = cross_generation(rows, "h100")
    assert gens == ["h100", "h200"] and len(cross) == 4
    c = cross[0]
    assert c.ratio("h200") == pytest.approx(c.by_gpu["h200"].throughput / c.by_gpu["h100"].throughput)


# --- escaping --------------------------------------------------------------------------------------------


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.cells_per_row: list[int] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "tr":
            self.cells_per_row.append(0)
        if tag in ("td", "th"):
            self.cells_per_row[-1] += 1

    def handle_data(self, data):
        self.text.append(data)


def parse(html_text: str) -> _Text:
    p = _Text()
    p.feed(html_text)
    return p


@pytest.fixture
def hostile_report(tmp_path: Path) -> Path:
    evil = make_result(cell_id=HOSTILE_ID, status="crash", reason=HOSTILE_REASON)
    evil.provenance.versions["verl"] = "0.9.1|`x`<i>"
    results = [*matrix(gpus=("h100",), ranks=(8,)), evil]
    out = tmp_path / "report"
    write_report(flatten_all((f"r{i}", r) for i, r in enumerate(results)), out)
    return out


def test_markdown_renders_result_strings_as_text(hostile_report: Path):
    text = (hostile_report / "index.md").read_text()
    rendered = MarkdownIt("commonmark").enable("table").render(text)
    doc = parse(rendered)
    assert "script" not in doc.tags and "b" not in doc.tags and "i" not in doc.tags
    assert "a" not in doc.tags  # no link smuggled in through a reason
    plain = "".join(doc.text)
    assert HOSTILE_ID in plain  # shown, as text
    assert "bad | pipe `tick` <b>bold</b> second line [x](http://evil) # not a heading" in plain
    assert "0.9.1|`x`<i>" in plain
    # every row of a table has its header's cell count: no pipe split a cell
    for table in rendered.split("<table>")[1:]:
        t = parse(table.split("</table>")[0])
        assert len(set(t.cells_per_row)) == 1, t.cells_per_row


def test_html_renders_result_strings_as_text(hostile_report: Path):
    page = (hostile_report / "index.html").read_text()
    doc = parse(page)
    assert "script" not in doc.tags and "b" not in doc.tags
    plain = "".join(doc.text)
    assert HOSTILE_ID in plain and "<b>bold</b>" in plain


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("a|b", r"a\|b"),
        ("x`y", r"x\`y"),
        ("<s>", "&lt;s&gt;"),
        ("a\nb", "a b"),
        ("off_none", "off_none"),
        ("_em_", r"\_em\_"),
        ("**b**", r"\*\*b\*\*"),
        ("[l](u)", r"\[l\](u)"),
        ("# h", r"\# h"),
    ],
)
def test_md_escape(raw: str, escaped: str):
    assert md(raw) == escaped


# --- loading ---------------------------------------------------------------------------------------------


def test_load_accepts_result_wrapper_and_gate_baseline_and_skips_other_json(tmp_path: Path):
    r1, r2, r3 = make_result(lora_rank=8), make_result(lora_rank=16), make_result(lora_rank=32)
    (tmp_path / "a.json").write_text(r1.to_json())
    (tmp_path / "b.json").write_text(json.dumps({"result": json.loads(r2.to_json()), "history": []}))
    promote([(tmp_path / "c.json", r3)], tmp_path / "store", allow_failed=False, min_samples=5)
    (tmp_path / "plan.json").write_text(json.dumps({"cells": []}))
    found = load_results([tmp_path])
    assert sorted(r.id for _, r in found) == sorted([r1.id, r2.id, r3.id])


def test_load_refuses_truncated_json_and_names_the_file(tmp_path: Path):
    bad = tmp_path / "cut.json"
    bad.write_text(make_result().to_json()[:200])
    with pytest.raises(InputError, match=r"cut\.json.*truncated"):
        load_results([tmp_path])
    other = tmp_path / "other.json"
    other.write_text("{}")
    with pytest.raises(InputError, match=r"other\.json"):
        load_results([other])  # named on the command line: must be a result


# --- outputs ---------------------------------------------------------------------------------------------


def test_output_is_deterministic_and_independent_of_input_order(tmp_path: Path):
    results = matrix(gpus=("h100", "h200"))
    pairs = [(f"r{i}", r) for i, r in enumerate(results)]
    write_report(flatten_all(pairs), tmp_path / "a")
    random.Random(3).shuffle(pairs)
    write_report(flatten_all(pairs), tmp_path / "b")
    for name in ("index.md", "index.html", "results.json", "results.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_json_and_csv_hold_the_flat_table(tmp_path: Path):
    results = matrix(gpus=("h100",))
    write_report(flatten_all((f"r{i}", r) for i, r in enumerate(results)), tmp_path)
    recs = json.loads((tmp_path / "results.json").read_text())
    rows = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
    assert len(recs) == len(rows) == len(results)
    first = next(r for r in recs if r["status"] == "ok")
    assert {
        "id",
        "throughput",
        "throughput_lo",
        "peak_memory_gb",
        "axis_lora_rank",
        "phase_generation_s",
        "accuracy",
        "version_verl",
    } <= set(first)
    assert float(next(r for r in rows if r["id"] == first["id"])["throughput"]) == first["throughput"]


def test_markdown_has_every_section(tmp_path: Path):
    write_report(flatten_all((f"r{i}", r) for i, r in enumerate(matrix())), tmp_path)
    text = (tmp_path / "index.md").read_text()
    for heading in (
        "## Best cells",
        "### h100 · qwen2.5-0.5b",
        "### h200 · qwen2.5-0.5b",
        "## Across GPU generations (ratio to h100)",
        "| image digest",
    ):
        assert heading in text
    assert "(×1.3" in text  # h200 ratio shown


# --- CLI -------------------------------------------------------------------------------------------------


def test_cli_writes_the_report_from_the_baseline_store(tmp_path: Path, capsys):
    store = promoted_store(tmp_path)
    assert main(["report", "--baselines", str(store), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "index.html").stat().st_size > 10_000
    assert main(["report", "--baselines", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 2
    assert main(["report", "--gate", "--baselines", str(store), "--out", str(tmp_path / "x")]) == 2
    assert "--gate needs RESULTS" in capsys.readouterr().err


def test_cli_gate_marks_a_slowed_cell_regressed_and_exits_1(tmp_path: Path):
    base = [make_result(lora_rank=8, steps=12), make_result(lora_rank=32, steps=12)]
    store = tmp_path / "baselines"
    promote([(tmp_path / f"{i}.json", r) for i, r in enumerate(base)], store, allow_failed=False, min_samples=5)
    current = write(tmp_path / "current", [scaled(base[0], 0.85), base[1]])
    out = tmp_path / "out"
    assert main(["report", str(current), "--baselines", str(store), "--gate", "--out", str(out)]) == 1
    text = (out / "index.md").read_text()
    slow = next(line for line in text.splitlines() if "lora8-off_none" in line and line.startswith("| #"))
    same = next(line for line in text.splitlines() if "lora32-off_none" in line and line.startswith("| #"))
    assert "regressed: throughput -15.0 %" in slow
    assert "unchanged" in same
    assert (
        main(["report", str(write(tmp_path / "same", base)), "--baselines", str(store), "--gate", "--out", str(out)])
        == 0
    )


# --- two matrices, one cell id ---------------------------------------------------------------------------


def in_matrix(r: Result, name: str, factor: float = 1.0) -> Result:
    return scaled(r, factor).model_copy(update={"matrix": name})


def md_rows(text: str) -> list[list[str]]:
    """The cells of every cell-table line (header included) of index.md."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| #")]


def test_two_matrices_with_one_cell_id_are_two_labelled_rows(tmp_path: Path):
    """Matrices with other [base] settings (eager vLLM vs CUDA graphs) share cell ids: two rows, each naming
    its matrix, in the tables and the exports."""
    base = make_result(lora_rank=8, steps=12)
    graphs, eager = in_matrix(base, "h100-1gpu-graphs"), in_matrix(base, "h100-1gpu", 0.8)
    rows = flatten_all([("a", graphs), ("b", eager)])
    assert [(r.matrix, r.id) for r in rows] == [("h100-1gpu", base.id), ("h100-1gpu-graphs", base.id)]
    assert rows[1].throughput == pytest.approx(rows[0].throughput / 0.8)
    write_report(rows, tmp_path)
    text = (tmp_path / "index.md").read_text()
    table = md_rows(text)
    assert table[0][:3] == ["#", "cell", "matrix"]
    assert [r[:3] for r in table[1:]] == [
        ["#1", graphs.id.split("/")[-1], "h100-1gpu"],
        ["#2", "lora8-off_none-tp1-rb16", "h100-1gpu-graphs"],
    ]
    # the best cells: one line per matrix (cells of two matrices are never ranked against each other)
    best = [line for line in text.splitlines() if line.startswith("| h100 ")]
    assert [[c.strip() for c in line.strip("|").split("|")][4] for line in best] == ["h100-1gpu", "h100-1gpu-graphs"]
    recs = json.loads((tmp_path / "results.json").read_text())
    assert sorted((r["matrix"], r["id"]) for r in recs) == [("h100-1gpu", base.id), ("h100-1gpu-graphs", base.id)]
    csv_rows = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
    assert sorted(r["matrix"] for r in csv_rows) == ["h100-1gpu", "h100-1gpu-graphs"]
    html_text = "".join(parse((tmp_path / "index.html").read_text()).text)
    assert "h100-1gpu-graphs" in html_text and "h100-1gpu" in html_text
    # one matrix: no matrix column
    write_report(flatten_all([("a", graphs)]), tmp_path / "one")
    assert "matrix" not in md_rows((tmp_path / "one" / "index.md").read_text())[0]


def test_cross_generation_keeps_matrices_of_one_generation_apart():
    h100 = make_result(gpu="h100", steps=12)
    h200 = make_result(gpu="h200", steps=12)
    rows = flatten_all(
        [
            ("a", in_matrix(h100, "h100-graphs")),
            ("b", in_matrix(h100, "h100-eager", 0.8)),
            ("c", in_matrix(h200, "h200")),
        ]
    )
    gens, cross = cross_generation(rows, "h100")
    assert gens == ["h100", "h200"]
    # one line per H100 matrix, each with the only H200 row; neither H100 row overwrites the other
    assert [(c.by_gpu["h100"].matrix, c.by_gpu["h200"].matrix) for c in cross] == [
        ("h100-eager", "h200"),
        ("h100-graphs", "h200"),
    ]
    assert cross[0].ratio("h200") == pytest.approx(cross[1].ratio("h200") / 0.8)


def test_cli_gate_pairs_each_matrix_with_its_own_baseline(tmp_path: Path):
    base = make_result(lora_rank=8, steps=12)
    graphs, eager = in_matrix(base, "h100-1gpu-graphs"), in_matrix(base, "h100-1gpu", 0.8)
    store = tmp_path / "baselines"
    promote([(tmp_path / "a.json", graphs), (tmp_path / "b.json", eager)], store, allow_failed=False, min_samples=5)
    assert len(list(store.rglob("*.json"))) == 2
    current = write(tmp_path / "current", [scaled(graphs, 0.85), eager])
    out = tmp_path / "out"
    assert main(["report", str(current), "--baselines", str(store), "--gate", "--out", str(out)]) == 1
    table = md_rows((out / "index.md").read_text())
    verdicts = {r[2]: r[-1] for r in table[1:]}
    assert verdicts["h100-1gpu-graphs"].startswith("regressed: throughput -15.0 %")
    assert verdicts["h100-1gpu"].startswith("unchanged: throughput +0.0 %")
    recs = {r["matrix"]: r["verdict"] for r in json.loads((out / "results.json").read_text())}
    assert recs == {"h100-1gpu-graphs": "regressed", "h100-1gpu": "unchanged"}


def test_cli_refuses_a_store_where_two_files_claim_one_baseline(tmp_path: Path, capsys):
    r = make_result(steps=12)
    store = tmp_path / "baselines"
    (done,) = promote([(tmp_path / "a.json", r)], store, allow_failed=False, min_samples=5)
    legacy = store / "h100" / (r.id + ".json")  # the older layout, same content: pooled twice if read blindly
    legacy.parent.mkdir(parents=True)
    legacy.write_text(done.path.read_text())
    assert main(["report", "--baselines", str(store), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "several baseline files claim one" in err and str(legacy) in err and str(done.path) in err
    legacy.unlink()
    assert main(["report", "--baselines", str(store), "--out", str(tmp_path / "out")]) == 0


REAL = Path(__file__).resolve().parents[1] / "baselines"


def test_startup_table_on_the_real_h200_baselines(tmp_path: Path):
    # The H200 cells of 2026-11-28 logged every milestone (vLLM at INFO); their phases add up to the start-up.
    rows = [r for r in flatten_all(load_results([REAL / "h200"])) if r.startup]
    assert len(rows) >= 7 and {r.backend for r in rows} == {"fsdp", "megatron"}
    for r in rows:
        names = list(r.startup)
        assert (names[0], names[-1]) == ("imports_done", "first_step")
        assert {"vllm_weights_loaded", "vllm_compiled", "vllm_graphs_captured"} <= set(r.startup)
        assert sum(r.startup.values()) == pytest.approx(r.startup_s, abs=0.05)
        if r.model == "synthetic:qwen2.5-7b":
            # the 7B seed shape, fresh hosts (empty compile cache): no offload 488 s, the recipe 552 s, flex 542 s, padded no offload 556 s
            # (its step 1 compiles flex attention's kernels); vLLM's start with 15 GB of weights 95-113 s
            assert r.startup_s in (pytest.approx(x, abs=0.05) for x in (487.7, 552.2, 541.7, 556.2))
            assert r.startup["vllm_weights_loaded"] > 90
            continue
        # 262-385 s: less where vLLM's compile cache already held the shape (4 s against 18-37 s compiling)
        assert 240 < r.startup_s < 420 and 60 < r.startup["vllm_weights_loaded"] < 110
    all_rows = flatten_all(load_results([REAL]))
    groups = sum(1 for g in group_rows(all_rows) if any(r.startup for r in g.rows))
    assert groups >= 3
    write_report(all_rows, tmp_path / "rep")
    text = (tmp_path / "rep" / "index.md").read_text()
    assert text.count("Start-up, seconds") == groups  # one per group with milestones
    assert text.count("vLLM start") >= groups
    html_text = (tmp_path / "rep" / "index.html").read_text()
    assert html_text.count('class="startup"') == groups


def test_no_startup_table_without_milestones(tmp_path: Path):
    results = matrix(gpus=("h100",))
    assert all(not r.startup_breakdown_s for r in results)
    write_report(flatten_all((f"r{i}", r) for i, r in enumerate(results)), tmp_path / "rep")
    assert "Start-up, seconds" not in (tmp_path / "rep" / "index.md").read_text()


# --- FSDP vs Megatron --------------------------------------------------------------------------------------


def twins() -> list[Result]:
    out = []
    for backend, speed in (("fsdp", 1.0), ("megatron", 1.25)):
        for tp in (1, 2):
            r = make_result(model="qwen2.5-1.5b", n_gpus=2, backend=backend, lora_rank=0, tp=tp, rollout_batch=32)
            out.append(
                scaled(r, speed).model_copy(update={"matrix": f"h100-2gpu{'-megatron' * (backend == 'megatron')}"})
            )
    # an FSDP cell without a Megatron twin, and a Megatron cell on another GPU count: neither pairs
    out.append(make_result(model="qwen2.5-1.5b", n_gpus=2, backend="fsdp", lora_rank=32, rollout_batch=32))
    out.append(make_result(model="qwen2.5-1.5b", n_gpus=4, backend="megatron", lora_rank=0, tp=2, rollout_batch=32))
    return out


def test_backend_pairs_match_generation_model_gpus_and_axes():
    rows = flatten_all((f"r{i}", r) for i, r in enumerate(twins()))
    pairs = backend_pairs(rows)
    assert [(p.cell, p.n_gpus) for p in pairs] == [("lora0-off_none-tp1-rb32", 2), ("lora0-off_none-tp2-rb32", 2)]
    for p in pairs:
        assert (p.fsdp.backend, p.megatron.backend) == ("fsdp", "megatron")
        assert (p.fsdp.matrix, p.megatron.matrix) == ("h100-2gpu", "h100-2gpu-megatron")
        assert p.ratio == pytest.approx(p.megatron.throughput / p.fsdp.throughput)
        assert 1.15 < p.ratio < 1.35  # the twins were made 1.25x apart (each cell's own noise on top)


def test_backend_section_in_both_formats(tmp_path: Path):
    write_report(flatten_all((f"r{i}", r) for i, r in enumerate(twins())), tmp_path)
    text = (tmp_path / "index.md").read_text()
    section = text[text.index("## FSDP vs Megatron") :]
    assert section.count("lora0-off_none-tp") == 2 and "×1." in section
    html_text = (tmp_path / "index.html").read_text()
    assert 'id="backends"' in html_text and html_text.count("lora0-off_none-tp1-rb32") >= 3
    # a report without twins says so
    write_report(flatten_all((f"r{i}", r) for i, r in enumerate(twins()) if r.backend == "fsdp"), tmp_path / "one")
    assert "No cell exists on both backends." in (tmp_path / "one" / "index.md").read_text()


def test_backend_pair_in_the_real_baselines():
    # 2026-11-28, H200: Qwen2.5-0.5B full fine-tuning, rb16, one GPU, on FSDP (h100-1gpu-graphs) and on Megatron
    # (h100-1gpu-megatron); the H100 run of the FSDP cell stays its own row (another generation), never pooled.
    rows = flatten_all(load_results([REAL]))
    pairs = [p for p in backend_pairs(rows) if p.gpu == "h200"]
    assert [(p.cell, p.fsdp.matrix, p.megatron.matrix) for p in pairs] == [
        ("full-off_none-tp1-rb16", "h100-1gpu-graphs", "h100-1gpu-megatron")
    ]
    p = pairs[0]
    assert p.fsdp.n_runs == 1 and p.megatron.n_runs == 1 and p.fsdp.gpu_name == p.megatron.gpu_name == "NVIDIA H200"
    assert 1.5 < p.ratio < 2.5  # measured 2.03: 4139 against 2037 tokens/s/GPU
    assert p.megatron.step_time < p.fsdp.step_time
    twins_h100 = [r for r in rows if r.cell == "full-off_none-tp1-rb16" and r.matrix == "h100-1gpu-graphs"]
    assert sorted(r.gpu for r in twins_h100) == ["h100", "h200"] and all(r.n_runs == 1 for r in twins_h100)
