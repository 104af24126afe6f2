"""History in the baseline store (issue 21, item 3): `gate --record` keeps later gated runs, a violation is
`suspicious` until it is the Nth in a row (`[gate] consecutive`, default 2), `baseline history CELL` prints
the series. Inputs are derived from the committed real H100 runs (tests/gate_data.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gate_data import base_results, scaled, write_baseline, write_results

from suite.cli import main
from suite.gate.history import decide, series
from suite.results.baseline import read_baseline
from suite.results.schema import Result


@pytest.fixture(scope="module")
def run() -> Result:
    return base_results()[1][0]  # the LoRA cell: 1 real run x 8 measured steps


def another(run: Result, hour: int, factor: float = 1.0) -> Result:
    """A later run of the cell: its own start time (provenance tells runs apart), throughput x factor."""
    r = scaled(run, factor)
    return r.model_copy(
        update={"provenance": r.provenance.model_copy(update={"start_time": f"2026-12-04T{hour:02d}:00:00+00:00"})}
    )


def gate(tmp_path: Path, capsys, name: str, runs: list[Result], *extra: str) -> tuple[int, dict]:
    folder = tmp_path / name
    write_results(runs, folder)
    rc = main(["gate", str(folder), "--baselines", str(tmp_path / "b"), "--format", "json", *extra])
    return rc, json.loads(capsys.readouterr().out)


def tput(doc: dict) -> dict:
    return next(r for r in doc["rows"] if r["metric"] == "throughput")


def test_one_violation_is_suspicious_two_in_a_row_regressed(tmp_path, capsys, run) -> None:
    path = write_baseline([run], tmp_path / "b")
    rc, doc = gate(tmp_path, capsys, "ok", [another(run, 1)], "--record")
    assert (rc, tput(doc)["verdict"]) == (0, "unchanged")
    rc, doc = gate(tmp_path, capsys, "slow1", [another(run, 2, 0.9)], "--record")
    row = tput(doc)
    assert (rc, row["verdict"], row["regression"], row["streak"]) == (0, "suspicious", False, 1)
    assert "1 of 2 violations in a row needed to fail" in row["detail"]
    assert doc["counts"]["suspicious"] == 1 and doc["exit_code"] == 0
    rc, doc = gate(tmp_path, capsys, "slow2", [another(run, 3, 0.9)], "--record")
    row = tput(doc)
    assert (rc, row["verdict"], row["streak"]) == (1, "regressed", 2)
    assert "2 violations in a row (fails from 2)" in row["detail"]
    # what the store kept: three gated entries after the promotion, their runs and verdicts
    b = read_baseline(path)
    assert [e.verdicts["throughput"] for e in b.gated] == ["unchanged", "suspicious", "regressed"]
    assert [e.violations for e in b.gated] == [[], ["throughput"], ["throughput"]]
    assert [e.runs[0].provenance.start_time[11:13] for e in b.gated] == ["01", "02", "03"]
    assert all(e.against == b.promoted_at for e in b.gated)
    assert b.gated[1].runs[0].summary.throughput_window == pytest.approx(
        0.9 * b.gated[0].runs[0].summary.throughput_window
    )
    # a passing run ends the streak: the next violation is suspicious again
    gate(tmp_path, capsys, "ok2", [another(run, 4)], "--record")
    rc, doc = gate(tmp_path, capsys, "slow3", [another(run, 5, 0.9)])
    assert (rc, tput(doc)["verdict"]) == (0, "suspicious")


def test_without_a_recorded_run_the_first_violation_fails(tmp_path, capsys, run) -> None:
    write_baseline([run], tmp_path / "b")
    rc, doc = gate(tmp_path, capsys, "slow", [another(run, 2, 0.9)])
    row = tput(doc)
    assert (rc, row["verdict"], row["streak"]) == (1, "regressed", 1)
    assert "no run recorded against this baseline" in row["detail"]


@pytest.mark.parametrize(
    ("consecutive", "verdicts"), [(1, ["regressed"]), (3, ["suspicious", "suspicious", "regressed"])]
)
def test_consecutive_is_configurable(tmp_path, capsys, run, consecutive, verdicts) -> None:
    write_baseline([run], tmp_path / "b")
    cfg = tmp_path / "g.toml"
    cfg.write_text(f"[gate]\nconsecutive = {consecutive}\n")
    gate(tmp_path, capsys, "ok", [another(run, 1)], "--record", "--config", str(cfg))
    got = []
    for i in range(len(verdicts)):
        _, doc = gate(tmp_path, capsys, f"slow{i}", [another(run, 2 + i, 0.9)], "--record", "--config", str(cfg))
        got.append(tput(doc)["verdict"])
    assert got == verdicts


def test_gating_a_recorded_folder_again_neither_records_nor_counts_it_twice(tmp_path, capsys, run) -> None:
    path = write_baseline([run], tmp_path / "b")
    gate(tmp_path, capsys, "ok", [another(run, 1)], "--record")
    _, doc = gate(tmp_path, capsys, "slow", [another(run, 2, 0.9)], "--record")
    assert tput(doc)["verdict"] == "suspicious"
    rc = main(["gate", str(tmp_path / "slow"), "--baselines", str(tmp_path / "b"), "--record"])
    out = capsys.readouterr().out
    assert rc == 0 and "these runs are recorded already; not recorded again" in out
    assert " suspicious " in out  # still the first violation: its own record is not a prior one
    assert len(read_baseline(path).gated) == 2


def test_a_promotion_starts_a_new_count_and_keeps_the_series(tmp_path, capsys, run) -> None:
    path = write_baseline([run], tmp_path / "b")
    gate(tmp_path, capsys, "ok", [another(run, 1)], "--record")
    gate(tmp_path, capsys, "slow", [another(run, 2, 0.9)], "--record")
    write_results([another(run, 3, 0.9)], tmp_path / "new")
    assert main(["baseline", "promote", str(tmp_path / "new"), "--baselines", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    b = read_baseline(path)
    assert len(b.gated) == 2 and len(b.history) == 1  # gated runs of the replaced baseline stay in the series
    kinds = [(p.kind, p.current) for p in series(b)]
    assert kinds == [("promoted", False), ("gated", False), ("gated", False), ("promoted", True)]
    # against the new baseline nothing is recorded yet: a violation fails at once
    _, doc = gate(tmp_path, capsys, "slower", [another(run, 4, 0.8)])
    assert tput(doc)["verdict"] == "regressed"


def test_baseline_history_prints_the_series(tmp_path, capsys, run) -> None:
    write_baseline([run], tmp_path / "b")
    gate(tmp_path, capsys, "ok", [another(run, 1)], "--record")
    gate(tmp_path, capsys, "slow", [another(run, 2, 0.9)], "--record")
    assert main(["baseline", "history", run.id, "--baselines", str(tmp_path / "b")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"h100, matrix {run.matrix}: {run.id} (")
    body = [ln for ln in lines if ln.startswith("20")]
    assert [ln.split()[1] for ln in body] == ["promoted", "gated", "gated"]
    assert "throughput suspicious" in body[2] and lines[-1] == "not calibrated (thresholds file tolerances)"
    window = float(body[0].split()[5])
    assert float(body[2].split()[4]) == pytest.approx(0.9 * window, abs=0.1)
    assert main(["baseline", "history", run.id, "--baselines", str(tmp_path / "b"), "--format", "json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    assert [p["kind"] for p in doc["series"]] == ["promoted", "gated", "gated"]
    assert doc["series"][2]["violations"] == ["throughput"]
    assert main(["baseline", "history", "no/such/cell", "--baselines", str(tmp_path / "b")]) == 2
    assert "no baseline in" in capsys.readouterr().err


def test_decide() -> None:
    assert (decide(None, 2).regression, decide(0, 2).regression, decide(1, 2).regression) == (True, False, True)
    assert decide(0, 1).regression and decide(4, 2).streak == 5
