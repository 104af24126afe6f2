"""`grpo-suite baseline calibrate` (issue 21, item 2): tolerances from the baseline's own runs, recorded with
how many runs they came from; the gate uses them where present and the thresholds file otherwise, and says
which. Runs beyond the committed one are drawn from its real steps (tests/gate_data.py::with_runs)."""

from __future__ import annotations

import json
import statistics

import pytest
from gate_data import base_results, scaled, with_runs, write_baseline, write_results

from suite.cli import main
from suite.gate.calibrate import calibrate
from suite.gate.cells import window_throughput
from suite.gate.config import load_config
from suite.results.baseline import read_baseline
from suite.results.schema import Result


@pytest.fixture(scope="module")
def runs() -> list[Result]:
    base = with_runs(base_results()[0], n=4)
    # four runs with different NVML peaks, as repeated runs have
    return [
        r.model_copy(update={"peak_memory_gb": [p + 0.1 * i for p in r.peak_memory_gb]}) for i, r in enumerate(base)
    ]


def test_calibrate_derives_tolerances_from_the_runs(tmp_path, capsys, runs) -> None:
    path = write_baseline(runs, tmp_path / "b")
    assert main(["baseline", "calibrate", "--baselines", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    cal = read_baseline(path).calibration
    assert cal is not None and cal.runs == 4 and cal.factor == 1.5
    windows = [window_throughput([r]) for r in runs]
    mid = statistics.median(windows)
    expected = max(1.5 * max(abs(w / mid - 1) for w in windows), 0.005)
    assert cal.throughput_tolerance == pytest.approx(expected, abs=1e-6)
    peaks = [r.peak_memory_worst_gb for r in runs]
    assert cal.memory_tolerance_gib == pytest.approx(
        max(1.5 * max(abs(p - statistics.median(peaks)) for p in peaks), 0.25), abs=1e-4
    )
    assert cal.throughput_runs == pytest.approx([round(w, 3) for w in windows])
    assert f"from 4 runs -> {path}" in out and "1 of 1 baseline(s) calibrated" in out
    assert main(["baseline", "list", "--baselines", str(tmp_path / "b")]) == 0
    assert f"±{cal.throughput_tolerance:.1%} (4 runs)" in capsys.readouterr().out


def test_too_few_runs_are_not_calibrated_and_say_why(tmp_path, capsys, runs) -> None:
    path = write_baseline(runs[:2], tmp_path / "b")
    assert main(["baseline", "calibrate", "--baselines", str(tmp_path / "b")]) == 0
    assert "2 ok run(s) with measured steps; calibrating needs at least 3" in capsys.readouterr().out
    assert read_baseline(path).calibration is None
    assert main(["baseline", "calibrate", "nothing/*", "--baselines", str(tmp_path / "b")]) == 2


def test_floors_hold_when_runs_agree(runs) -> None:
    same = [runs[0]] * 3
    settings = load_config(None).calibration
    cal = calibrate(read_like(same), settings, "2026-12-04T00:00:00+00:00").calibration
    assert cal is not None
    assert (cal.throughput_tolerance, cal.memory_tolerance_gib) == (
        settings.throughput_floor,
        settings.memory_floor_gib,
    )


def read_like(runs: list[Result]):
    from suite.results.baseline import Baseline

    return Baseline(id=runs[0].id, gpu=runs[0].gpu, results=runs)


def gate_json(capsys, *argv: str) -> tuple[int, dict]:
    rc = main(["gate", *argv, "--format", "json"])
    return rc, json.loads(capsys.readouterr().out)


def test_gate_uses_the_calibration_and_says_so(tmp_path, capsys, runs) -> None:
    store = tmp_path / "b"
    path = write_baseline(runs, store)
    write_results([scaled(r, 0.95) for r in runs], tmp_path / "cur")
    rc, doc = gate_json(capsys, str(tmp_path / "cur"), "--baselines", str(store))
    row = next(r for r in doc["rows"] if r["metric"] == "throughput")
    assert (row["tolerance_source"], row["tolerance"]) == ("thresholds", 0.03)
    assert "min effect 3.0% (thresholds)" in row["detail"]
    assert (row["verdict"], rc) == ("regressed", 1)
    # a cell whose runs spread by 8 % (x 1.5 = 12 %) tolerates the same 5 % loss: within its own noise
    doc_b = json.loads(path.read_text())
    doc_b["calibration"] = {
        "calibrated_at": "2026-12-04T00:00:00+00:00",
        "runs": 4,
        "factor": 1.5,
        "throughput_tolerance": 0.12,
        "memory_tolerance_gib": 0.25,
        "throughput_runs": [1.0, 1.0, 1.0, 1.0],
        "memory_runs": [],
    }
    path.write_text(json.dumps(doc_b))
    rc, doc = gate_json(capsys, str(tmp_path / "cur"), "--baselines", str(store))
    row = next(r for r in doc["rows"] if r["metric"] == "throughput")
    mem = next(r for r in doc["rows"] if r["metric"] == "memory")
    assert (row["tolerance_source"], row["tolerance"]) == ("calibration (4 runs)", 0.12)
    assert "min effect 12.0% (calibration (4 runs))" in row["detail"]
    assert (row["verdict"], rc) == ("unchanged", 0)
    assert (mem["tolerance"], mem["tolerance_source"]) == (0.25, "calibration (4 runs)")
    assert "tolerance ±0.25 GiB (calibration (4 runs))" in mem["detail"]


def test_promote_drops_a_calibration_of_the_replaced_runs(tmp_path, capsys, runs) -> None:
    store = tmp_path / "b"
    path = write_baseline(runs, store)
    assert main(["baseline", "calibrate", "--baselines", str(store)]) == 0
    assert read_baseline(path).calibration is not None
    write_results(runs[:2], tmp_path / "new")
    assert main(["baseline", "promote", str(tmp_path / "new"), "--baselines", str(store)]) == 0
    assert "its calibration is dropped (run baseline calibrate again)" in capsys.readouterr().out
    assert read_baseline(path).calibration is None
