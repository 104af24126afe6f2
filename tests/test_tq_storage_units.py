"""TransferQueue's storage units (`[base] tq_storage_units`): verl's default 8 unless a matrix names a count, the
verl key the plan writes, what the memory planner counts for them, and bad values refused before any GPU time."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.cli import main
from suite.matrix import parse_matrix
from suite.memory.calibration import default_calibration
from suite.memory.predict import predict_cell_host
from suite.memory.settings import settings_from_cell
from suite.plan.planner import plan_matrix

KEY = "transfer_queue.backend.SimpleStorage.num_data_storage_units"
HEAD = """[matrix]
name = "tq"
gpu = "h100"
gpus_per_node = {gpus}
nnodes = {nodes}
model = "synthetic:qwen2.5-7b"
backend = "{backend}"
[base]
rollout_batch = 8
{base}
"""


def _cells(tmp_path: Path, base: str = "", gpus: int = 1, nodes: int = 1, backend: str = "fsdp") -> list:
    text = HEAD.format(gpus=gpus, nodes=nodes, backend=backend, base=base)
    return plan_matrix(parse_matrix(text, source="tq.toml"), "bench", out_dir=tmp_path, validate_with_verl=False)


@pytest.mark.parametrize(("gpus", "nodes"), [(1, 1), (4, 1), (8, 2)])
@pytest.mark.parametrize("backend", ["fsdp", "megatron"])
def test_verls_default_unless_named(tmp_path: Path, gpus: int, nodes: int, backend: str) -> None:
    (cell,) = _cells(tmp_path / "d", gpus=gpus, nodes=nodes, backend=backend)
    assert cell.setting(KEY) is None and not any(a.startswith("transfer_queue.") for a in cell.argv)
    assert settings_from_cell(cell).tq_storage_units == 8  # what verl starts then
    per_node = 2 * nodes
    (named,) = _cells(tmp_path / "n", f"tq_storage_units = {per_node}", gpus=gpus, nodes=nodes, backend=backend)
    assert named.setting(KEY) == per_node and f"{KEY}={per_node}" in named.argv
    assert settings_from_cell(named).tq_storage_units == per_node


def test_a_matrix_names_its_own_count(tmp_path: Path) -> None:
    (verl_default,) = _cells(tmp_path / "a", "tq_storage_units = 8")
    (one,) = _cells(tmp_path / "b", "tq_storage_units = 1")
    assert (verl_default.setting(KEY), one.setting(KEY)) == (8, 1)
    # an axis of it is an axis like any other
    cells = _cells(tmp_path / "c", "[axes]\ntq_storage_units = [2, 8]")
    assert sorted(c.setting(KEY) for c in cells) == [2, 8]


def test_the_host_model_counts_each_unit(tmp_path: Path) -> None:
    (two,) = _cells(tmp_path / "a", "tq_storage_units = 2")
    (eight,) = _cells(tmp_path / "b")
    per_unit = default_calibration().host.tq_storage_unit_gib
    p2, p8 = predict_cell_host(two), predict_cell_host(eight)
    assert p2.processes["tq_storage_unit"] == 2 and p8.processes["tq_storage_unit"] == 8
    assert p8.peak_gib - p2.peak_gib == pytest.approx(6 * per_unit, abs=0.02)


@pytest.mark.parametrize("value", ["0", "-2", "2.5", '"two"', "true"])
def test_bad_counts_name_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(HEAD.format(gpus=1, nodes=1, backend="fsdp", base=f"tq_storage_units = {value}"))
    assert main(["plan", str(path), "--no-verl-check"]) == 2
    err = capsys.readouterr().err
    assert "tq_storage_units" in err and str(path) in err


def test_a_raw_override_of_the_same_key_beside_the_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.toml"
    text = HEAD.format(gpus=1, nodes=1, backend="fsdp", base="tq_storage_units = 4")
    path.write_text(text + f'[overrides]\n"{KEY}" = 8\n')
    assert main(["plan", str(path), "--no-verl-check"]) == 2
    err = capsys.readouterr().err
    assert f"overrides.{KEY}" in err and "base.tq_storage_units" in err
    # alone, a raw override is the setting (read as the name, typed and planned as it)
    path.write_text(HEAD.format(gpus=1, nodes=1, backend="fsdp", base="") + f'[overrides]\n"{KEY}" = 8\n')
    assert main(["plan", str(path), "--no-verl-check", "--format", "json"]) == 0
    assert f"{KEY}=8" in capsys.readouterr().out


def test_verl_composes_the_key(tmp_path: Path) -> None:
    # verl's own Hydra config has the key (transfer_queue/transfer_queue.yaml): no '+' needed, no error
    text = HEAD.format(gpus=1, nodes=1, backend="fsdp", base="tq_storage_units = 2")
    (cell,) = plan_matrix(parse_matrix(text, source="tq.toml"), "bench", out_dir=tmp_path, validate_with_verl=True)
    assert cell.status == "ok", cell.reason
    assert cell.setting(KEY) == 2
