import json
import os
import subprocess
import sys
from pathlib import Path

from fakes.cells import fake_cell

from suite.results.io import read_result
from suite.run.cellio import cell_from_dict, load_cell

ROOT = Path(__file__).parents[1]


def incell(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "suite.run.incell", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_incell_runs_one_cell_and_writes_its_result(tmp_path):
    out = tmp_path / "out"
    cell = fake_cell("a", ["--steps", "2", "--step-s", "0"], out_dir=out)
    cell_json = tmp_path / "cell.json"
    cell_json.write_text(json.dumps(cell.to_dict()))
    d = out / cell.full_id
    p = incell("--cell", str(cell_json), "--out", str(d), "--timeout", "30", "--gpus", "0", "--runtime-name", "docker")
    assert p.returncode == 0, p.stderr
    r = read_result(d / "result.json")
    assert r.status == "ok" and len(r.steps) == 2
    assert r.provenance.runtime == "docker" and r.provenance.cuda_visible_devices == "0"
    assert (d / "log.txt").exists() and (d / "metrics.jsonl").exists()
    assert load_cell(d / "cell.json") == cell


def test_incell_failed_cell_exits_1_and_bad_input_2(tmp_path):
    cell = fake_cell("b", ["--oom", "cuda"], out_dir=tmp_path)
    cell_json = tmp_path / "cell.json"
    cell_json.write_text(json.dumps(cell.to_dict()))
    p = incell("--cell", str(cell_json), "--out", str(tmp_path / cell.full_id))
    assert p.returncode == 1
    assert read_result(tmp_path / cell.full_id / "result.json").status == "oom"
    cell_json.write_text('{"id": "x"}')
    p = incell("--cell", str(cell_json), "--out", str(tmp_path / "x"))
    assert p.returncode == 2 and "missing field(s)" in p.stderr


def test_cell_round_trip_ignores_derived_keys():
    cell = fake_cell("c")
    d = cell.to_dict()
    assert "full_id" in d and cell_from_dict(d) == cell
