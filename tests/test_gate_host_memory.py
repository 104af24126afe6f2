"""The gate's host-memory metric: the process tree's host peak of each cell against its baseline's, on the
committed 7B runs of 2026-12-06 (1x H100; tests/gate_data.py::host_results), the consecutive rule, per-cell
thresholds, calibration, the series, and an oom that Ray's monitor (the host's memory) caused."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from gate_data import host_results, host_shifted, write_baseline, write_results

from suite.cli import main
from suite.gate.calibrate import calibrate
from suite.gate.config import load_config
from suite.gate.history import STREAK_METRICS, series
from suite.results.baseline import Baseline, read_baseline
from suite.results.schema import Result

RAY_OOM = (
    "ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on memory. Memory on the node "
    "was 119.9GB / 125.8GB (0.953), which exceeds the memory usage threshold 0.95"
)


@pytest.fixture(scope="module")
def recipe() -> list[Result]:
    return host_results()[0]


def on_host(run: Result, host: str) -> Result:
    """The run as one from another host: the gate tells recorded runs apart by their provenance."""
    return run.model_copy(update={"provenance": run.provenance.model_copy(update={"host": host})})


def gate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    rc = main(["gate", *args, "--format", "json"])
    out = capsys.readouterr().out
    return rc, json.loads(out) if out.strip().startswith("{") else {}


def row(doc: dict, metric: str = "host_memory") -> dict:
    return next(r for r in doc["rows"] if r["metric"] == metric)


def setup(tmp_path: Path, base: list[Result], cur: list[Result], name: str = "runs") -> tuple[str, str]:
    write_baseline(base, tmp_path / "baselines")
    write_results(cur, tmp_path / name)
    return str(tmp_path / name), str(tmp_path / "baselines")


def test_the_committed_runs_record_the_host_peaks_the_tests_rely_on(recipe) -> None:
    cells = host_results()
    assert [len(c) for c in cells] == [1, 1]
    assert recipe[0].host_peak_memory_gb == pytest.approx(109.36)
    assert cells[1][0].host_peak_memory_gb == pytest.approx(54.15)
    assert recipe[0].host_memory_total_gb == pytest.approx(125.85)
    assert recipe[0].gpu == "h100" and len(recipe[0].measured_steps()) == 4


def test_the_same_runs_are_unchanged_with_the_threshold_tolerance(tmp_path, capsys, recipe) -> None:
    res, base = setup(tmp_path, recipe, recipe)
    rc, doc = gate(capsys, res, "--baselines", base)
    assert rc == 0
    r = row(doc)
    assert (r["verdict"], r["regression"]) == ("unchanged", False)
    assert (r["baseline"], r["current"], r["change"]) == ("109.36 GiB", "109.36 GiB", "+0.00 GiB (+0.0 %)")
    assert r["tolerance"] == pytest.approx(0.03 * 109.36)
    assert r["tolerance_source"] == "thresholds"
    assert "host peak of the process tree" in r["detail"] and "Ray's OOM monitor" not in r["detail"]
    # the host's use peaked at 82 % of its total: below warn_fraction, not named
    assert recipe[0].host_system_peak_memory_gb / recipe[0].host_memory_total_gb == pytest.approx(0.82, abs=0.01)


@pytest.mark.parametrize(
    ("index", "tolerance"),
    [(0, 0.03 * 109.36), (1, 0.03 * 54.15)],  # both above the 1 GiB floor: the relative part decides
)
@pytest.mark.parametrize(
    ("scale", "verdict", "rc"), [(0.9, "unchanged", 0), (1.1, "regressed", 1), (-1.1, "improved", 0)]
)
def test_tolerance_is_max_of_relative_and_absolute(tmp_path, capsys, index, tolerance, scale, verdict, rc) -> None:
    runs = host_results()[index]
    res, base = setup(tmp_path, runs, [host_shifted(r, scale * tolerance) for r in runs])
    got, doc = gate(capsys, res, "--baselines", base)
    r = row(doc)
    assert (r["verdict"], got) == (verdict, rc)
    assert r["estimate"] == pytest.approx(scale * tolerance, abs=2e-3)
    assert r["tolerance"] == pytest.approx(tolerance)
    # the NVML peak and the throughput did not move: the host row alone decides
    assert row(doc, "memory")["verdict"] == "unchanged"
    assert row(doc, "throughput")["verdict"] == "unchanged"


def test_the_absolute_floor_holds_for_small_trees(tmp_path, capsys, recipe) -> None:
    small = [r.model_copy(update={"host_peak_memory_gb": 12.0}) for r in recipe]
    res, base = setup(tmp_path, small, [host_shifted(r, 0.9) for r in small])
    _, doc = gate(capsys, res, "--baselines", base)
    assert (row(doc)["verdict"], row(doc)["tolerance"]) == ("unchanged", 1.0)  # 3 % of 12 is 0.36: the floor wins
    res, _ = setup(tmp_path, small, [host_shifted(r, 1.1) for r in small], "runs2")
    assert row(gate(capsys, res, "--baselines", base)[1])["verdict"] == "regressed"


def test_a_host_close_to_its_limit_is_named_in_the_row(tmp_path, capsys, recipe) -> None:
    res, base = setup(tmp_path, recipe, [host_shifted(r, 0.0, system_fraction=0.93) for r in recipe])
    rc, doc = gate(capsys, res, "--baselines", base)
    r = row(doc)
    assert (rc, r["verdict"]) == (0, "unchanged")  # named, not a verdict of its own
    assert (
        "the host's used memory peaked at 93 % of its total (over 90 %; Ray's OOM monitor kills at 95 %)"
        in (r["detail"])
    )
    cfg = tmp_path / "warn.toml"
    cfg.write_text("[host_memory]\nwarn_fraction = 0.95\n")
    _, doc = gate(capsys, res, "--baselines", base, "--config", str(cfg))
    assert "peaked at" not in row(doc)["detail"]


def test_one_violation_is_suspicious_once_a_run_is_recorded_then_regressed(tmp_path, capsys, recipe) -> None:
    assert "host_memory" in STREAK_METRICS
    res, base = setup(tmp_path, recipe, [on_host(r, "same") for r in recipe], "same")
    assert gate(capsys, res, "--baselines", base, "--record")[0] == 0
    for i, (verdict, rc) in enumerate((("suspicious", 0), ("regressed", 1)), start=1):
        write_results([on_host(host_shifted(r, 4.0), f"grown{i}") for r in recipe], tmp_path / f"grown{i}")
        got, doc = gate(capsys, str(tmp_path / f"grown{i}"), "--baselines", base, "--record")
        assert (got, row(doc)["verdict"], row(doc)["streak"]) == (rc, verdict, i)
    stored = read_baseline(next(Path(base).rglob("*.json")))
    assert [e.violations for e in stored.gated] == [[], ["host_memory"], ["host_memory"]]
    # the series keeps each entry's host peak, and `baseline history` prints it
    points = series(stored)
    assert [p.host_peak_memory_gb for p in points] == pytest.approx([109.36, 109.36, 113.36, 113.36])
    assert main(["baseline", "history", "qwen2.5-7b/*", "--baselines", base]) == 0
    out = capsys.readouterr().out
    assert "host GiB" in out and "113.36" in out and "host_memory suspicious" in out


def test_per_cell_override_and_bad_keys(tmp_path, capsys, recipe) -> None:
    res, base = setup(tmp_path, recipe, [host_shifted(r, 4.0) for r in recipe])
    assert row(gate(capsys, res, "--baselines", base)[1])["verdict"] == "regressed"
    cfg = tmp_path / "o.toml"
    cfg.write_text('[[override]]\ncells = "qwen2.5-7b/*"\nhost_memory = { abs_tolerance_gib = 5.0 }\n')
    rc, doc = gate(capsys, res, "--baselines", base, "--config", str(cfg))
    assert (rc, row(doc)["verdict"], row(doc)["tolerance"]) == (0, "unchanged", 5.0)
    bad = tmp_path / "bad.toml"
    bad.write_text("[host_memory]\nrel_tolerance = 1.5\n")
    assert main(["gate", res, "--baselines", base, "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "host_memory.rel_tolerance = 1.5" in err
    bad.write_text("[host_memory]\ntolerance = 1\n")
    assert main(["gate", res, "--baselines", base, "--config", str(bad)]) == 2
    assert "unknown key 'host_memory.tolerance'" in capsys.readouterr().err


def test_a_side_without_a_host_peak_is_noted_not_compared(tmp_path, capsys, recipe) -> None:
    joined = [r.model_copy(update={"host_peak_memory_gb": None}) for r in recipe]  # verl joined a Ray cluster
    for base_runs, cur_runs, side in ((recipe, joined, "result"), (joined, recipe, "baseline")):
        folder = tmp_path / side
        write_baseline(base_runs, folder / "baselines")
        write_results(cur_runs, folder / "runs")
        rc, doc = gate(capsys, str(folder / "runs"), "--baselines", str(folder / "baselines"))
        assert rc == 0
        assert "host_memory" not in {r["metric"] for r in doc["rows"]}
        assert any(
            f"no host peak of the process tree in the {side}; host memory not compared" in n for n in doc["notes"]
        )
    # neither side has one (runs from before the host sampler): nothing to say
    write_baseline(joined, tmp_path / "none" / "baselines")
    write_results(joined, tmp_path / "none" / "runs")
    _, doc = gate(capsys, str(tmp_path / "none" / "runs"), "--baselines", str(tmp_path / "none" / "baselines"))
    assert not any("host" in n for n in doc["notes"])


@pytest.mark.parametrize(
    ("kind", "metric", "was"), [("ray", "host_memory", "109.36 GiB"), ("cuda", "memory", "69.94 GiB")]
)
def test_an_oom_regresses_the_memory_that_ran_out(tmp_path, capsys, recipe, kind, metric, was) -> None:
    reason = RAY_OOM if kind == "ray" else "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 9.2 GiB"
    oom = recipe[0].model_copy(update={"status": "oom", "reason": reason, "oom_kind": kind, "steps": []})
    res, base = setup(tmp_path, recipe, [oom])
    rc, doc = gate(capsys, res, "--baselines", base)
    assert rc == 1
    r = row(doc, metric)
    assert (r["verdict"], r["change"], r["baseline"], r["current"]) == ("regressed", "ok -> oom", was, "oom")
    other = "memory" if metric == "host_memory" else "host_memory"
    assert other not in {x["metric"] for x in doc["rows"]}
    assert row(doc, "status")["verdict"] == "failed"


def test_an_oom_recorded_before_its_kind_was_is_the_gpus(tmp_path, capsys, recipe) -> None:
    oom = recipe[0].model_copy(update={"status": "oom", "reason": RAY_OOM, "steps": []})
    assert oom.oom_kind is None
    res, base = setup(tmp_path, recipe, [oom])
    _, doc = gate(capsys, res, "--baselines", base)
    assert row(doc, "memory")["change"] == "ok -> oom"


def test_calibration_derives_a_host_tolerance_from_the_runs(tmp_path, capsys, recipe) -> None:
    runs = [host_shifted(recipe[0], d) for d in (0.0, 0.4, -0.2, 0.1)]
    cal = calibrate(read_baseline(write_baseline(runs, tmp_path / "b")), load_config(None).calibration, "t").calibration
    assert cal is not None
    peaks = [r.host_peak_memory_gb for r in runs]
    expected = max(1.5 * max(abs(p - statistics.median(peaks)) for p in peaks), 0.5)
    assert cal.host_memory_tolerance_gib == pytest.approx(expected, abs=1e-4)
    assert cal.host_memory_runs == pytest.approx(peaks)
    # runs that agree: the floor
    same = calibrate(read_baseline(write_baseline([recipe[0]] * 3, tmp_path / "s")), load_config(None).calibration, "t")
    assert same.calibration is not None and same.calibration.host_memory_tolerance_gib == 0.5
    assert "host memory ±0.50 GiB" in same.reason
    # the gate uses it, and says where it came from
    assert main(["baseline", "calibrate", "--baselines", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    worst = max(peaks)  # the gate compares the worst run of each side, as for the NVML peak
    write_results([host_shifted(recipe[0], worst - peaks[0] + expected * 1.2)] * 3, tmp_path / "runs")
    rc, doc = gate(capsys, str(tmp_path / "runs"), "--baselines", str(tmp_path / "b"))
    r = row(doc)
    assert rc == 1 and r["verdict"] == "regressed" and r["tolerance"] == pytest.approx(expected, abs=1e-4)
    assert r["tolerance_source"] == "calibration (4 runs)"


def test_no_host_peak_in_any_run_leaves_the_calibration_to_the_thresholds(recipe) -> None:
    joined = [r.model_copy(update={"host_peak_memory_gb": None}) for r in [recipe[0]] * 3]
    out = calibrate(Baseline(id=joined[0].id, gpu="h100", results=joined), load_config(None).calibration, "t")
    assert out.calibration is not None and out.calibration.host_memory_tolerance_gib is None
    assert "host memory" not in out.reason


def test_the_host_row_shows_the_ratio_to_the_reference(tmp_path, capsys) -> None:
    recipe, flex = host_results()
    assert flex[0].reference and recipe[0].id.endswith(flex[0].reference)
    for runs in (recipe, flex):
        write_baseline(runs, tmp_path / "baselines")
    write_results([*recipe, *flex], tmp_path / "runs")
    assert main(["gate", str(tmp_path / "runs"), "--baselines", str(tmp_path / "baselines")]) == 0
    table = capsys.readouterr().out
    rows = {(line.split()[0], line.split()[1]): line for line in table.splitlines() if "host_memory" in line}
    ratio = flex[0].host_peak_memory_gb / recipe[0].host_peak_memory_gb
    assert f"x{ratio:.2f}" == "x0.50"
    assert "x0.50" in rows[(flex[0].id, "host_memory")]
    assert "x1.00 (ref)" in rows[(recipe[0].id, "host_memory")]
    _, doc = gate(capsys, str(tmp_path / "runs"), "--baselines", str(tmp_path / "baselines"))
    got = {r["cell"]: r["host_memory_vs_reference"] for r in doc["rows"] if r["metric"] == "host_memory"}
    assert got == {recipe[0].id: pytest.approx(1.0), flex[0].id: pytest.approx(ratio)}
