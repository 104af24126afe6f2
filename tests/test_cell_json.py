"""The typed cell (suite/plan/cell.py) and its JSON (suite/run/cellio.py): overrides as data, argv and paths derived
in one place, plan JSON written before cells carried their overrides still read, an edited argv refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suite.errors import InputError
from suite.matrix import parse_matrix
from suite.plan.hydra import Override, split_argv
from suite.plan.planner import plan_matrix
from suite.run.cellio import cell_from_dict, load_cell, write_cell

MATRIX = """[matrix]
name = "t"
gpu = "h100"
gpus_per_node = 1
model = "synthetic:qwen2.5-0.5b"
backend = "fsdp"
[axes]
lora_rank = [0, 8]
[overrides]
"+trainer.extra_tag" = "a+b c"
"actor_rollout_ref.rollout.top_p" = 0.9
"""


@pytest.fixture
def cells(tmp_path: Path) -> list:
    return plan_matrix(parse_matrix(MATRIX), "bench", out_dir=tmp_path / "runs", validate_with_verl=False)


def test_overrides_are_typed_and_argv_is_derived_from_them(cells) -> None:
    c = cells[1]
    assert c.command == ["python3", "-m", "verl.trainer.main_ppo"]
    assert Override("trainer.extra_tag", "a+b c", "+") in c.overrides
    assert c.setting("actor_rollout_ref.model.lora_rank") == 8 and c.setting("trainer.nnodes") == 1
    assert c.setting("actor_rollout_ref.rollout.top_p") == 0.9 and c.setting("no.such.key") is None
    assert c.argv == [*c.command, *(o.text for o in c.overrides)]
    assert '+trainer.extra_tag="a+b c"' in c.argv  # quoted as Hydra reads it back
    d = Path(c.env["VERL_FILE_LOGGER_PATH"]).parent
    assert c.paths.metrics == d / "metrics.jsonl" and c.paths.validation_dir == d / "validation"
    assert d / "inputs" / "train.parquet" in c.paths.reads  # the bench subset the run cuts
    assert not any(p in c.paths.reads for p in (d / "ckpt", d / "validation", d / "metrics.jsonl"))  # outputs


def test_json_round_trip_and_the_one_writer(cells, tmp_path: Path) -> None:
    c = cells[0]
    path = write_cell(tmp_path / "cell", c)
    data = json.loads(path.read_text())
    assert data["argv"] == c.argv and data["full_id"] == c.full_id and data["paths"]["metrics"]
    assert data["overrides"][0] == {"key": "algorithm.adv_estimator", "value": "grpo", "prefix": ""}
    assert load_cell(path) == c


def test_plan_json_with_argv_only_still_reads(cells) -> None:
    for c in cells:
        old = {k: v for k, v in c.to_dict().items() if k not in ("command", "overrides", "paths")}
        legacy = cell_from_dict(old)
        assert legacy.argv == c.argv and legacy.paths == c.paths and legacy.setting("trainer.nnodes") == 1


def test_an_argv_edited_away_from_the_overrides_is_refused(cells) -> None:
    d = cells[0].to_dict()
    d["argv"] = [*d["argv"][:-1], "trainer.nnodes=2"]
    with pytest.raises(InputError, match="argv differs from command"):
        cell_from_dict(d)
    d = cells[0].to_dict()
    d["overrides"] = [{"key": "a.b", "value": 1, "prefix": "+++"}]
    d.pop("argv")
    with pytest.raises(InputError, match="bad prefix"):
        cell_from_dict(d)


def test_relocated_moves_only_paths_under_the_cell_dir(cells) -> None:
    c = cells[0]
    d = Path(c.env["VERL_FILE_LOGGER_PATH"]).parent
    moved = c.relocated(d, "/remote/job1")
    assert moved.paths.metrics == Path("/remote/job1/metrics.jsonl")
    assert moved.setting("trainer.default_local_dir") == "/remote/job1/ckpt"
    assert moved.setting("trainer.experiment_name") == c.setting("trainer.experiment_name")  # not a path
    assert not any(str(d) in a for a in moved.argv)
    sibling = c.relocated(Path(str(d)[:-1]), "/x")  # a prefix of the directory's name is not the directory
    assert sibling.argv == c.argv


def test_split_argv_reads_a_recorded_command() -> None:
    command, overrides = split_argv(["python3", "train.py", "--steps", "3", "a.b=1", "+c=[x,y]", "~d=null", "--flag"])
    assert command == ["python3", "train.py", "--steps", "3"]
    assert overrides == (Override("a.b", 1), Override("c", ["x", "y"], "+"), Override("d", None, "~"))
