"""`grpo-suite baseline promote|list` and the store layout baselines/<gen>/<matrix>/<full id>.json."""

from __future__ import annotations

import json
import statistics

import pytest
from gate_data import base_results, drifted, scaled, with_runs, write_baseline, write_results

from suite.cli import main
from suite.errors import InputError
from suite.gate.store import (
    Baseline,
    baseline_path,
    index_baselines,
    list_baselines,
    lookup,
    read_baseline,
    stack_disagreement,
)
from suite.packages import PACKAGES
from suite.results.schema import Result
from suite.results.sentinels import PEARSON


@pytest.fixture(scope="module")
def runs() -> list[Result]:
    return with_runs(base_results()[0])


def test_promote_pools_runs_and_keeps_history_newest_first(tmp_path, capsys, runs) -> None:
    store = tmp_path / "baselines"
    first = tmp_path / "first"
    write_results(runs, first)
    assert main(["baseline", "promote", str(first), "--baselines", str(store)]) == 0
    path = store / "h100" / runs[0].matrix / (runs[0].id + ".json")
    out = capsys.readouterr().out
    assert f"promoted {runs[0].id} -> {path} (3 run(s), {3 * len(runs[0].measured_steps())} measured steps" in out
    b1 = read_baseline(path)
    assert len(b1.results) == 3 and b1.history == []

    for i, factor in enumerate((0.97, 1.02)):
        folder = tmp_path / f"again{i}"
        bumped = [
            r.model_copy(update={"provenance": r.provenance.model_copy(update={"git_commit": f"c{i}"})})
            for r in (scaled(x, factor) for x in runs[:2])
        ]
        write_results(bumped, folder)
        assert main(["baseline", "promote", str(folder), "--baselines", str(store)]) == 0
        assert "replaced the baseline of" in capsys.readouterr().out
    b3 = read_baseline(path)
    assert len(b3.results) == 2 and b3.results[0].provenance.git_commit == "c1"
    assert [len(h.runs) for h in b3.history] == [2, 3]  # newest first: the c0 baseline, then the first one
    assert b3.history[0].runs[0].provenance.git_commit == "c0"
    expected = statistics.median(s.throughput * 0.97 for s in runs[0].measured_steps())
    assert b3.history[0].runs[0].summary.throughput_median == pytest.approx(expected)
    raw = json.loads(path.read_text())
    assert set(raw) == {"format", "id", "gpu", "promoted_at", "results", "history"}

    assert main(["baseline", "list", "--baselines", str(store)]) == 0
    listing = capsys.readouterr().out
    assert runs[0].id in listing and "bench" in listing and runs[0].matrix in listing


def test_promote_refuses_failed_unless_allowed(tmp_path, capsys, runs) -> None:
    oom = runs[0].model_copy(update={"status": "oom", "reason": "CUDA out of memory", "steps": []})
    folder = tmp_path / "r"
    (path,) = write_results([oom], folder)
    store = tmp_path / "baselines"
    assert main(["baseline", "promote", str(folder), "--baselines", str(store)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: status 'oom' (CUDA out of memory)" in err and "--allow-failed" in err
    assert not store.exists()
    assert main(["baseline", "promote", str(folder), "--baselines", str(store), "--allow-failed"]) == 0
    assert read_baseline(baseline_path(store, "h100", runs[0].matrix, runs[0].id)).results[0].status == "oom"


@pytest.mark.parametrize("pearson", [0.56, 0.949])
def test_promote_refuses_a_run_the_correctness_sentinel_fails(tmp_path, capsys, runs, pearson) -> None:
    folder = tmp_path / "r"
    write_results([drifted(runs[0], 1.0, PEARSON, pearson)], folder)
    store = tmp_path / "baselines"
    assert main(["baseline", "promote", str(folder), "--baselines", str(store)]) == 2
    err = capsys.readouterr().err
    assert (
        f"{runs[0].matrix}: {runs[0].id}: the rollout/actor log-prob sentinel fails (step 1: pearson {pearson:.4f} < 0.95)"
        in err
    )
    assert "--allow-failed" in err and not store.exists()
    # a user who records it anyway says so
    assert main(["baseline", "promote", str(folder), "--baselines", str(store), "--allow-failed"]) == 0
    assert read_baseline(baseline_path(store, "h100", runs[0].matrix, runs[0].id)).results[0].status == "ok"


def test_promote_takes_a_run_at_the_sentinels_limit_and_honours_per_cell_overrides(tmp_path, capsys, runs) -> None:
    folder = tmp_path / "r"
    write_results([drifted(runs[0], 1.0, PEARSON, 0.95)], folder)
    assert main(["baseline", "promote", str(folder), "--baselines", str(tmp_path / "a")]) == 0
    low = tmp_path / "low"
    write_results([drifted(runs[0], 1.0, PEARSON, 0.5)], low)
    cfg = tmp_path / "gate.toml"
    cfg.write_text(f'[[override]]\ncells = ["{runs[0].id}"]\nsentinel = {{ min_pearson = 0.4 }}\n')
    assert main(["baseline", "promote", str(low), "--baselines", str(tmp_path / "b"), "--config", str(cfg)]) == 0
    assert "promoted" in capsys.readouterr().out


def test_promote_refuses_too_few_steps(tmp_path, capsys, runs) -> None:
    short = runs[0].model_copy(update={"steps": runs[0].steps[: runs[0].warmup_steps + 2]})
    folder = tmp_path / "r"
    write_results([short], folder)
    assert main(["baseline", "promote", str(folder), "--baselines", str(tmp_path / "b")]) == 2
    assert "2 measured step(s) over 1 run(s); the gate needs at least 5" in capsys.readouterr().err


def test_promote_refuses_disagreeing_runs(tmp_path, capsys, runs) -> None:
    folder = tmp_path / "r"
    write_results([runs[0], runs[1].model_copy(update={"profile": "train"})], folder)
    assert main(["baseline", "promote", str(folder), "--baselines", str(tmp_path / "b")]) == 2
    assert "runs disagree on (gpu, n_gpus, model, profile)" in capsys.readouterr().err
    # n_gpus 2 under an id that says h100x1 contradicts the id: refused by the reader before any grouping
    write_results([runs[0], runs[1].model_copy(update={"n_gpus": 2})], tmp_path / "r2")
    assert main(["baseline", "promote", str(tmp_path / "r2"), "--baselines", str(tmp_path / "b")]) == 2
    assert f"n_gpus 2 vs id {runs[1].id!r}" in capsys.readouterr().err


def _with_versions(r: Result, **versions: str | None) -> Result:
    """`r` as recorded by a suite that looked up every package of PACKAGES; None: that one not installed."""
    v = {**r.provenance.versions, **versions}
    v = {k: x for k, x in v.items() if x is not None}
    prov = r.provenance.model_copy(update={"versions": v, "packages_checked": list(PACKAGES)})
    return r.model_copy(update={"provenance": prov})


def test_stack_disagreement_names_each_package_that_differs(runs) -> None:
    a = _with_versions(runs[0], verl="0.9.1", vllm="0.25.1", **{"flash-attn": None})
    assert stack_disagreement([a, a]) is None
    b = _with_versions(runs[1], verl="0.9.1", vllm="0.25.1", **{"flash-attn": "2.8.3"})
    assert stack_disagreement([a, b]) == "flash-attn: 2.8.3, none"
    c = _with_versions(runs[2], verl="0.9.2", vllm="0.25.1", **{"flash-attn": "2.8.3"})
    assert stack_disagreement([a, b, c]) == "flash-attn: 2.8.3, none; verl: 0.9.1, 0.9.2"
    # a result from before a package was looked up says nothing about it: no difference is claimed
    old = runs[0].model_copy(
        update={"provenance": runs[0].provenance.model_copy(update={"versions": {"verl": "0.9.1"}})}
    )
    assert old.provenance.packages_checked is None
    assert stack_disagreement([old, b]) is None
    assert stack_disagreement([old, c]) == "verl: 0.9.1, 0.9.2"


def test_promote_refuses_to_pool_runs_of_two_stacks(tmp_path, capsys, runs) -> None:
    # a host with flash-attn's Triton cross entropy and one without measure the same cell id
    folder = tmp_path / "r"
    without = {"flash-attn": None}
    mixed = [_with_versions(runs[0], **without), _with_versions(runs[1], **{"flash-attn": "2.8.3"})]
    mixed.append(_with_versions(runs[2], **without))
    write_results(mixed, folder)
    store = tmp_path / "b"
    assert main(["baseline", "promote", str(folder), "--baselines", str(store)]) == 2
    err = capsys.readouterr().err
    assert f"{runs[0].matrix}" in err and "runs disagree on package versions (flash-attn: 2.8.3, none)" in err
    assert "pool only runs of one stack" in err and not store.exists()
    # the runs of one stack still pool
    same = tmp_path / "s"
    write_results([_with_versions(r, **{"flash-attn": "2.8.3"}) for r in runs], same)
    assert main(["baseline", "promote", str(same), "--baselines", str(store)]) == 0


def test_two_matrices_with_one_cell_id_are_promoted_side_by_side(tmp_path, capsys, runs) -> None:
    """Cell ids come from the axes alone: a matrix with other [base] settings (here eager vLLM beside CUDA
    graphs) reuses them. Each matrix gets its own baseline, in one promote or in two."""
    eager = [scaled(r, 0.8).model_copy(update={"matrix": "h100-1gpu"}) for r in runs]
    folder = tmp_path / "r"
    write_results([*runs, *eager[:1]], folder)
    write_results(eager[1:], tmp_path / "r" / "more")
    store = tmp_path / "b"
    assert main(["baseline", "promote", str(folder), "--baselines", str(store)]) == 0
    out = capsys.readouterr().out
    a = store / "h100" / runs[0].matrix / (runs[0].id + ".json")
    b = store / "h100" / "h100-1gpu" / (runs[0].id + ".json")
    assert f"-> {a} (3 run(s)" in out and f"-> {b} (3 run(s)" in out
    assert sorted(p for p, _ in list_baselines(store)) == sorted([a, b])
    index = index_baselines(store)
    assert set(index) == {("h100", runs[0].matrix, runs[0].id), ("h100", "h100-1gpu", runs[0].id)}
    assert [r.provenance for r in read_baseline(b).results] == [r.provenance for r in eager]
    assert read_baseline(b).matrix == "h100-1gpu" and read_baseline(a).matrix == runs[0].matrix
    found = lookup(store, "h100", "h100-1gpu", runs[0].id)
    assert found is not None and found[0] == b
    assert lookup(store, "h100", "h100-1gpu-oom", runs[0].id) is None
    # promoting one matrix again replaces only its own baseline
    write_results(runs, tmp_path / "again")
    assert main(["baseline", "promote", str(tmp_path / "again"), "--baselines", str(store)]) == 0
    assert (len(read_baseline(a).history), len(read_baseline(b).history)) == (1, 0)
    assert main(["baseline", "list", "--baselines", str(store)]) == 0
    listing = capsys.readouterr().out
    assert "h100-1gpu " in listing and f"{runs[0].matrix} " in listing


def test_promote_refuses_a_baseline_lying_off_its_path(tmp_path, capsys, runs) -> None:
    """A baseline file is read wherever it lies under `<gen>/` (its content names it), but promote writes only at
    `<gen>/<matrix>/<full id>.json`: a file of the same cell elsewhere (the layout before matrix folders, never
    released) is named, not moved, and nothing is written."""
    store = tmp_path / "baselines"
    off = store / "h100" / (runs[0].id + ".json")
    off.parent.mkdir(parents=True)
    off.write_text(Baseline(id=runs[0].id, gpu="h100", promoted_at="2026-11-28T00:00:00+00:00", results=runs).to_json())
    assert lookup(store, "h100", runs[0].matrix, runs[0].id)[0] == off  # type: ignore[index]
    res = tmp_path / "runs"
    write_results([scaled(r, 0.90) for r in runs], res)
    assert main(["gate", str(res), "--baselines", str(store), "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    row = next(r for r in doc["rows"] if r["metric"] == "throughput")
    assert (row["verdict"], row["matrix"]) == ("regressed", runs[0].matrix)
    assert main(["baseline", "promote", str(res), "--baselines", str(store)]) == 2
    target = baseline_path(store, "h100", runs[0].matrix, runs[0].id)
    assert f"lies at {off}, not at {target}; move it there" in capsys.readouterr().err
    assert off.is_file() and not target.exists()


def test_two_files_claiming_one_baseline_are_bad_input(tmp_path, capsys, runs) -> None:
    store = tmp_path / "baselines"
    new = write_baseline(runs, store)
    copy = store / "h100" / "old" / "place" / "x.json"  # any name: identity is the content
    copy.parent.mkdir(parents=True)
    copy.write_text(new.read_text())
    res = tmp_path / "runs"
    write_results(runs, res)
    for argv in (["gate", str(res)], ["baseline", "list"], ["baseline", "promote", str(res)]):
        assert main([*argv, "--baselines", str(store)]) == 2, argv
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "several baseline files claim one (GPU generation, matrix, cell id)" in captured.err
        assert f"h100, {runs[0].matrix}: {runs[0].id}: {new}, {copy}" in captured.err
    # the same content in another generation's folder is another baseline, not a second claim
    copy.unlink()
    elsewhere = store / "h200" / "x.json"
    elsewhere.parent.mkdir()
    elsewhere.write_text(new.read_text())
    assert len(list_baselines(store)) == 2


def test_promote_refuses_to_overwrite_a_file_holding_another_baseline(tmp_path, capsys, runs) -> None:
    store = tmp_path / "baselines"
    other = [r.model_copy(update={"matrix": "h100-1gpu-oom"}) for r in runs]
    src = write_baseline(other, store)
    target = baseline_path(store, "h100", runs[0].matrix, runs[0].id)
    target.parent.mkdir(parents=True)
    src.rename(target)  # a hand-moved file: the matrix folder says one thing, the content another
    write_results(runs, tmp_path / "r")
    assert main(["baseline", "promote", str(tmp_path / "r"), "--baselines", str(store)]) == 2
    assert f"{target} holds the baseline of h100, h100-1gpu-oom: {runs[0].id}" in capsys.readouterr().err
    assert read_baseline(target).matrix == "h100-1gpu-oom"


def test_bare_result_committed_as_baseline_is_read(tmp_path, capsys, runs) -> None:
    store = tmp_path / "baselines"
    path = baseline_path(store, "h100", runs[0].matrix, runs[0].id)
    path.parent.mkdir(parents=True)
    path.write_text(runs[0].to_json())
    b = read_baseline(path)
    assert (len(b.results), b.history, b.promoted_at) == (1, [], None)
    res = tmp_path / "runs"
    write_results(runs[:1], res)
    assert main(["gate", str(res), "--baselines", str(store)]) == 0


def test_baseline_format_and_ids_are_checked(tmp_path) -> None:
    with pytest.raises(InputError, match=r"'\.\.' part"):
        baseline_path(tmp_path, "h100", "m", "../../etc/passwd")
    for matrix in ("", "a/b", "..", "evidence"):
        with pytest.raises(InputError, match=f"matrix {matrix!r} cannot name a baseline folder"):
            baseline_path(tmp_path, "h100", matrix, "x")
    with pytest.raises(InputError, match="GPU generation 'evidence'"):
        baseline_path(tmp_path, "evidence", "m", "x")
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"format": 9, "results": []}))
    with pytest.raises(InputError, match="baseline format 9 is not supported"):
        read_baseline(bad)


def test_a_baseline_of_several_matrices_is_refused(tmp_path, runs) -> None:
    mixed = Baseline(id=runs[0].id, gpu="h100", results=[runs[0], runs[1].model_copy(update={"matrix": "other"})])
    path = tmp_path / "b.json"
    path.write_text(mixed.to_json())
    with pytest.raises(InputError, match=r"results come from several matrices \['h100-1gpu-graphs', 'other'\]"):
        read_baseline(path)


def test_one_cell_run_on_two_generations_is_two_baselines_two_gate_cells_two_rows(tmp_path, capsys, runs) -> None:
    """A cell planned for the H100 that also ran on an H200 (a result is filed by the card it ran on): promote
    makes one baseline per generation, the gate compares each run with its own generation's baseline, and the
    report keeps two rows. None of them pools the two cards (the report once did: an H100 and an H200 run of
    h100-1gpu-graphs full-off_none-tp1-rb16 became one "h100" row of 2 runs)."""
    from suite.gate.compare import compare
    from suite.gate.config import load_config
    from suite.report.table import flatten_all

    h200 = [
        scaled(r, 1.3).model_copy(
            update={"gpu": "h200", "provenance": r.provenance.model_copy(update={"gpu_name": "NVIDIA H200"})}
        )
        for r in runs
    ]
    folder = tmp_path / "r"
    write_results([*runs, *h200], folder)
    store = tmp_path / "b"
    assert main(["baseline", "promote", str(folder), "--baselines", str(store)]) == 0
    out = capsys.readouterr().out
    assert out.count("(3 run(s)") == 2
    assert set(index_baselines(store)) == {("h100", runs[0].matrix, runs[0].id), ("h200", runs[0].matrix, runs[0].id)}
    b200 = read_baseline(store / "h200" / runs[0].matrix / (runs[0].id + ".json"))
    assert {r.provenance.gpu_name for r in b200.results} == {"NVIDIA H200"}
    assert statistics.median(s.throughput for r in b200.results for s in r.measured_steps()) > statistics.median(
        s.throughput
        for r in read_baseline(store / "h100" / runs[0].matrix / (runs[0].id + ".json")).results
        for s in r.measured_steps()
    )

    report = compare([(folder / f"{i}.json", r) for i, r in enumerate([*runs, *h200])], store, load_config(None))
    tput = sorted((r.gpu, r.verdict) for r in report.rows if r.metric == "throughput")
    assert tput == [("h100", "unchanged"), ("h200", "unchanged")] and report.exit_code == 0
    # a 30 % slower H200 run is a regression against the H200 baseline even though it beats the H100's
    slow = [scaled(r, 0.7) for r in h200]
    report = compare([(folder / f"{i}.json", r) for i, r in enumerate([*runs, *slow])], store, load_config(None))
    verdicts = {r.gpu: r.verdict for r in report.rows if r.metric == "throughput"}
    assert verdicts == {"h100": "unchanged", "h200": "regressed"} and report.exit_code == 1
    from suite.gate.render import render_json, render_markdown, render_table

    table = render_table(report).splitlines()
    header = next(line for line in table if line.startswith("cell"))
    assert header.split()[:3] == ["cell", "gpu", "metric"]
    assert any(" h200 " in line and "REGRESSED" in line for line in table)
    import re

    assert re.search(r"^\|\s*cell\s*\|\s*gpu\s*\|", render_markdown(report), re.M)
    assert {r["gpu"] for r in json.loads(render_json(report))["rows"]} == {"h100", "h200"}

    rows = flatten_all((str(i), r) for i, r in enumerate([*runs, *h200]))
    assert sorted((r.gpu, r.n_runs) for r in rows) == [("h100", 3), ("h200", 3)]
    assert len({r.key for r in rows}) == 2
