"""`grpo-suite baseline promote|list` and the store layout baselines/<gen>/<full id>.json."""

from __future__ import annotations

import json
import statistics

import pytest
from gate_data import base_results, scaled, with_runs, write_results

from suite.cli import main
from suite.errors import InputError
from suite.gate.store import baseline_path, read_baseline
from suite.results.schema import Result


@pytest.fixture(scope="module")
def runs() -> list[Result]:
    return with_runs(base_results()[0])


def test_promote_pools_runs_and_keeps_history_newest_first(tmp_path, capsys, runs) -> None:
    store = tmp_path / "baselines"
    first = tmp_path / "first"
    write_results(runs, first)
    assert main(["baseline", "promote", str(first), "--baselines", str(store)]) == 0
    path = store / "h100" / (runs[0].id + ".json")
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
    assert runs[0].id in listing and "bench" in listing


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
    assert read_baseline(baseline_path(store, "h100", runs[0].id)).results[0].status == "oom"


def test_promote_refuses_too_few_steps(tmp_path, capsys, runs) -> None:
    short = runs[0].model_copy(update={"steps": runs[0].steps[: runs[0].warmup_steps + 2]})
    folder = tmp_path / "r"
    write_results([short], folder)
    assert main(["baseline", "promote", str(folder), "--baselines", str(tmp_path / "b")]) == 2
    assert "2 measured step(s) over 1 run(s); the gate needs at least 5" in capsys.readouterr().err


def test_promote_refuses_disagreeing_runs(tmp_path, capsys, runs) -> None:
    folder = tmp_path / "r"
    write_results([runs[0], runs[1].model_copy(update={"n_gpus": 2})], folder)
    assert main(["baseline", "promote", str(folder), "--baselines", str(tmp_path / "b")]) == 2
    assert "runs disagree on (gpu, n_gpus, model, profile, matrix)" in capsys.readouterr().err


def test_promote_refuses_runs_of_the_same_id_from_different_matrices(tmp_path, capsys, runs) -> None:
    """Cell ids come from the axes alone: a matrix with other [base] settings can reuse one."""
    folder = tmp_path / "r"
    write_results([runs[0], runs[1].model_copy(update={"matrix": "h100-1gpu-oom"})], folder)
    assert main(["baseline", "promote", str(folder), "--baselines", str(tmp_path / "b")]) == 2
    assert "h100-1gpu-oom" in capsys.readouterr().err


def test_bare_result_committed_as_baseline_is_read(tmp_path, capsys, runs) -> None:
    store = tmp_path / "baselines"
    path = baseline_path(store, "h100", runs[0].id)
    path.parent.mkdir(parents=True)
    path.write_text(runs[0].to_json())
    b = read_baseline(path)
    assert (len(b.results), b.history, b.promoted_at) == (1, [], None)
    res = tmp_path / "runs"
    write_results(runs[:1], res)
    assert main(["gate", str(res), "--baselines", str(store)]) == 0


def test_baseline_format_and_ids_are_checked(tmp_path) -> None:
    with pytest.raises(InputError, match=r"'\.\.' part"):
        baseline_path(tmp_path, "h100", "../../etc/passwd")
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"format": 9, "results": []}))
    with pytest.raises(InputError, match="baseline format 9 is not supported"):
        read_baseline(bad)
