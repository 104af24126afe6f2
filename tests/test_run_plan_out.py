"""A plan JSON runs only into the --out it was planned with: its cells' verl arguments name that folder."""

import json
from pathlib import Path

import pytest
from fakes.cells import fake_cell

from suite.cli import main
from suite.errors import InputError
from suite.run.prepare import check_plan_out, planned_out_dir


def write_plan(path: Path, cells) -> Path:
    path.write_text(json.dumps([c.to_dict() for c in cells]))
    return path


def test_planned_out_dir_is_the_folder_above_the_cells_full_id(tmp_path):
    cell = fake_cell("a", out_dir=tmp_path / "runs")
    assert planned_out_dir(cell) == tmp_path / "runs"


def test_a_cell_without_a_metrics_path_names_no_out_dir():
    assert planned_out_dir(fake_cell("a")) is None


def test_a_metrics_path_outside_the_cells_folder_names_no_out_dir(tmp_path):
    cell = fake_cell("a", out_dir=tmp_path)
    moved = type(cell)(**{**cell.__dict__, "env": {"VERL_FILE_LOGGER_PATH": str(tmp_path / "elsewhere.jsonl")}})
    assert planned_out_dir(moved) is None


def test_the_planned_out_dir_passes(tmp_path):
    cells = [fake_cell(c, out_dir=tmp_path / "runs") for c in "ab"]
    check_plan_out(cells, tmp_path / "runs", source="plan.json")


def test_another_out_dir_is_refused_naming_field_and_planned_folder(tmp_path):
    cells = [fake_cell("a", out_dir=tmp_path / "runs")]
    with pytest.raises(InputError) as err:
        check_plan_out(cells, tmp_path / "runs-nofa", source="plan.json")
    text = str(err.value)
    assert err.value.field == "--out"
    assert str(tmp_path / "runs") in text and str(tmp_path / "runs-nofa") in text
    assert "plan.json" in text


def test_cells_planned_into_two_folders_are_refused_for_either(tmp_path):
    cells = [fake_cell("a", out_dir=tmp_path / "x"), fake_cell("b", out_dir=tmp_path / "y")]
    for out in (tmp_path / "x", tmp_path / "y"):
        with pytest.raises(InputError, match="--out"):
            check_plan_out(cells, out, source="plan.json")


def test_run_with_another_out_exits_2_before_any_cell_starts(tmp_path, capsys):
    planned, other = tmp_path / "runs", tmp_path / "runs-nofa"
    plan = write_plan(tmp_path / "plan.json", [fake_cell("a", ["--steps", "2"], out_dir=planned)])
    code = main(["run", str(plan), "--out", str(other), "--no-preflight"])
    assert code == 2
    assert "--out" in capsys.readouterr().err
    assert not other.exists() and not planned.exists()
