"""The Ray Jobs runtime ships a cell's input files (the bench profile's dataset subsets) with its job: they travel
in the job's working dir, the overrides that name them point there, and an input that cannot travel is never
submitted. Against a mocked JobSubmissionClient, the job side on its own, and a REAL local Ray cluster (two nodes
on loopback), where workers on every node read the files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fakes_dist.cells import dist_cell
from fakes_dist.cluster import LocalRayCluster

from suite.plan.cell import Cell
from suite.plan.hydra import Override
from suite.run import ray_job as rj
from suite.run.cellio import write_cell
from suite.run.options import parse_options

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

OPTS = {"address": "http://h:8265"}


def full_file(path: Path, rows: int = 20) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"prompt": [f"q{i}" for i in range(rows)]}), path)
    return path


def bench_cell(tmp_path: Path, args: list[str] | None = None, *, train_rows: int = 6, val_rows: int = 2) -> Cell:
    """A cell laid out as the planner lays out a bench cell: its subsets under `<cell dir>/inputs/`, the data
    overrides naming them, the full files elsewhere (as `--data-root` would have them)."""
    cell = dist_cell("bench", tmp_path, args)
    local = tmp_path / cell.full_id
    train, val = str(local / "inputs" / "train.parquet"), str(local / "inputs" / "val.parquet")
    data = tmp_path / "data"
    return dataclasses.replace(
        cell,
        overrides=(*cell.overrides, Override("data.train_files", train), Override("data.val_files", val)),
        inputs={
            train: {"source": str(data / "train.parquet"), "rows": train_rows},
            val: {"source": str(data / "test.parquet"), "rows": val_rows},
        },
    )


def rows(path: Path) -> int:
    return pq.read_metadata(path).num_rows


class FakeClient:
    """ray.job_submission.JobSubmissionClient as far as the runtime uses it; records what each job carried."""

    made: ClassVar[list[FakeClient]] = []

    def __init__(self, address: str) -> None:
        self.address, self.submitted = address, []
        FakeClient.made.append(self)

    def submit_job(self, *, entrypoint: str, runtime_env: dict[str, Any], **kw: Any) -> str:
        # The staged dir is gone after submit returns (Ray has uploaded it by then): look at it now.
        wd = Path(runtime_env["working_dir"])
        files = {p.relative_to(wd).as_posix(): p for p in wd.rglob("*.parquet")}
        self.submitted.append(
            {
                "entrypoint": entrypoint,
                "runtime_env": runtime_env,
                "rows": {name: rows(p) for name, p in files.items()},
                "cell": json.loads((wd / "cell.json").read_text()),
                **kw,
            }
        )
        return kw["submission_id"]

    async def tail_job_logs(self, sid: str):  # an async generator, as Ray's
        for chunk in ():
            yield chunk

    def get_job_status(self, sid: str) -> Any:
        return type("S", (), {"value": "FAILED", "is_terminal": lambda self: True})()

    def get_job_logs(self, sid: str) -> str:
        return ""

    def get_job_info(self, sid: str) -> Any:
        return type("I", (), {"message": "fake"})()


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    import ray.job_submission

    FakeClient.made = []
    monkeypatch.setattr(ray.job_submission, "JobSubmissionClient", FakeClient)
    return FakeClient


# -- the spec ----------------------------------------------------------------------------------------------
def test_overrides_and_inputs_point_into_the_working_dir(tmp_path: Path) -> None:
    cell = bench_cell(tmp_path)
    local = tmp_path / cell.full_id
    opts = parse_options(rj.RayOptions, OPTS, "ray")
    spec, rcell = rj.build_spec(cell, local, working_dir="/w", environ={}, opts=opts, timeout_s=None)
    # Relative to the job's working dir, which Ray unpacks on every node the job uses and starts its workers in.
    assert rcell.setting("data.train_files") == "inputs/train.parquet"
    assert rcell.setting("data.val_files") == "inputs/val.parquet"
    assert rcell.inputs == {
        "inputs/train.parquet": cell.inputs[str(local / "inputs" / "train.parquet")],
        "inputs/val.parquet": cell.inputs[str(local / "inputs" / "val.parquet")],
    }
    assert spec.inputs == {
        "inputs/train.parquet": str(local / "inputs" / "train.parquet"),
        "inputs/val.parquet": str(local / "inputs" / "val.parquet"),
    }
    assert not any(str(local) in a for a in rcell.argv)
    # Typed data all the way: the values are the same kind they were, nothing was parsed back from argv.
    assert all(isinstance(o.value, type(c.value)) for o, c in zip(rcell.overrides, cell.overrides, strict=True))
    # What the cell writes still moves to the per-job dir on the cluster.
    assert rcell.env["VERL_FILE_LOGGER_PATH"] == f"{spec.remote_dir}/metrics.jsonl"
    assert spec.redacted()["inputs"] == spec.inputs


def test_inputs_outside_the_cell_dir_and_list_values_travel_too(tmp_path: Path) -> None:
    cell = bench_cell(tmp_path)
    elsewhere = str(tmp_path / "planned-elsewhere" / "inputs" / "train.parquet")
    spec_of = next(iter(cell.inputs.values()))
    cell = dataclasses.replace(
        cell,
        overrides=(*cell.overrides[:-2], Override("data.train_files", [elsewhere, "/shared/other.parquet"])),
        inputs={elsewhere: spec_of},
    )
    opts = parse_options(rj.RayOptions, OPTS, "ray")
    spec, rcell = rj.build_spec(cell, tmp_path / cell.full_id, working_dir="/w", environ={}, opts=opts, timeout_s=1)
    (name,) = rcell.inputs
    assert name.startswith("inputs/") and name.endswith("/train.parquet") and not name.startswith("/")
    assert rcell.setting("data.train_files") == [name, "/shared/other.parquet"]  # the cluster's own file stays
    assert spec.inputs == {name: elsewhere}
    again, _ = rj.build_spec(cell, tmp_path / cell.full_id, working_dir="/w", environ={}, opts=opts, timeout_s=1)
    assert again.inputs == spec.inputs  # one name per path


def test_input_names_move_only_inputs_while_relocation_moves_env_too(tmp_path: Path) -> None:
    cell = bench_cell(tmp_path)
    local = tmp_path / cell.full_id
    train = str(local / "inputs" / "train.parquet")
    cell = dataclasses.replace(
        cell,
        overrides=(*cell.overrides, Override("x.files", [train, str(local / "other"), 3])),
        env={**cell.env, "X_PATH": train},
    )
    named = cell.with_inputs_at({train: "inputs/train.parquet"})
    assert named.setting("x.files") == ["inputs/train.parquet", str(local / "other"), 3]  # only the input name
    assert named.env == cell.env  # env is left as it is, even a value naming an input
    assert set(named.inputs) == {"inputs/train.parquet", str(local / "inputs" / "val.parquet")}
    moved = cell.relocated(local, "/remote")
    assert moved.setting("x.files") == ["/remote/inputs/train.parquet", "/remote/other", 3]
    assert moved.env["X_PATH"] == "/remote/inputs/train.parquet"
    assert set(moved.inputs) == {"/remote/inputs/train.parquet", "/remote/inputs/val.parquet"}


def test_dry_run_shows_what_travels_and_touches_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cell = bench_cell(tmp_path)  # neither the subsets nor the full files exist
    r = rj.RayJobRuntime(address="http://127.0.0.1:9", dry_run=True).run_cell(cell, tmp_path / cell.full_id)
    spec = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert r.status == "skipped"
    assert sorted(spec["inputs"]) == ["inputs/train.parquet", "inputs/val.parquet"]


# -- submit, against a mocked JobSubmissionClient ---------------------------------------------------------------
def test_the_job_carries_the_subsets_the_client_cut(tmp_path: Path, client: type[FakeClient]) -> None:
    from suite.data.subset import write_subsets

    cell = bench_cell(tmp_path)
    full_file(tmp_path / "data" / "train.parquet")
    full_file(tmp_path / "data" / "test.parquet")
    write_subsets([cell.inputs])  # what `grpo-suite run` does before any cell (prepare.ensure_inputs)
    result = rj.RayJobRuntime(**OPTS, poll_s=0.01).run_cell(cell, tmp_path / cell.full_id)
    assert result.status == "crash"  # the fake job FAILED: the point here is what it was given
    (job,) = client.made[0].submitted
    assert job["rows"] == {"inputs/train.parquet": 6, "inputs/val.parquet": 2}
    remote = job["cell"]
    data = {o["key"]: o["value"] for o in remote["overrides"] if o["key"].startswith("data.")}
    assert data == {"data.train_files": "inputs/train.parquet", "data.val_files": "inputs/val.parquet"}
    assert sorted(remote["inputs"]) == ["inputs/train.parquet", "inputs/val.parquet"]
    assert job["runtime_env"]["working_dir"] and "--cell cell.json" in job["entrypoint"]
    assert "*.parquet" not in job["runtime_env"]["excludes"]


def test_a_subset_not_made_yet_is_cut_on_the_client(tmp_path: Path, client: type[FakeClient]) -> None:
    cell = bench_cell(tmp_path, train_rows=4)
    full_file(tmp_path / "data" / "train.parquet")
    full_file(tmp_path / "data" / "test.parquet")
    rj.RayJobRuntime(**OPTS, poll_s=0.01).run_cell(cell, tmp_path / cell.full_id)
    (job,) = client.made[0].submitted
    assert job["rows"] == {"inputs/train.parquet": 4, "inputs/val.parquet": 2}


def test_a_missing_dataset_is_recorded_and_nothing_is_submitted(tmp_path: Path, client: type[FakeClient]) -> None:
    cell = bench_cell(tmp_path)  # no subset, no full file to cut it from
    result = rj.RayJobRuntime(**OPTS).run_cell(cell, tmp_path / cell.full_id)
    assert result.status == "crash"
    assert "cannot be shipped with its Ray job" in result.reason and "dataset file not found" in result.reason
    assert str(tmp_path / "data" / "train.parquet") in result.reason
    assert client.made == []  # the cluster was not even contacted
    saved = json.loads((tmp_path / cell.full_id / "result.json").read_text())
    assert saved["status"] == "crash" and saved["reason"] == result.reason


def test_inputs_too_large_to_ship_are_refused_before_submission(
    tmp_path: Path, client: type[FakeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    cell = bench_cell(tmp_path)
    full_file(tmp_path / "data" / "train.parquet")
    full_file(tmp_path / "data" / "test.parquet")
    monkeypatch.setattr(rj, "INPUTS_MAX_BYTES", 100)
    result = rj.RayJobRuntime(**OPTS).run_cell(cell, tmp_path / cell.full_id)
    assert result.status == "crash" and "a Ray job ships at most" in result.reason and "subset_data" in result.reason
    assert client.made == []


def test_a_cell_without_inputs_ships_none(tmp_path: Path, client: type[FakeClient]) -> None:
    cell = dist_cell("plain", tmp_path)
    rj.RayJobRuntime(**OPTS, poll_s=0.01).run_cell(cell, tmp_path / cell.full_id)
    (job,) = client.made[0].submitted
    assert job["rows"] == {} and job["cell"]["inputs"] == {}


# -- the job side ------------------------------------------------------------------------------------------
def test_job_side_uses_what_travelled_without_the_full_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from suite.run.host import HostRuntime

    cell = bench_cell(tmp_path, train_rows=6)
    opts = parse_options(rj.RayOptions, OPTS, "ray")
    _, rcell = rj.build_spec(cell, tmp_path / cell.full_id, working_dir="/w", environ={}, opts=opts, timeout_s=None)
    wd = tmp_path / "working_dir"  # as Ray unpacks it on the cluster, where no full dataset file exists
    full_file(wd / "inputs" / "train.parquet", rows=6)
    full_file(wd / "inputs" / "val.parquet", rows=2)
    write_cell(wd, rcell)
    seen: dict[str, int] = {}

    def fake_run_cell(self, c, out, **_kw):  # the cell's own run is the host runtime's, tested elsewhere
        seen.update({k: rows(Path(c.setting(k))) for k in ("data.train_files", "data.val_files")})
        raise KeyboardInterrupt

    monkeypatch.setattr(HostRuntime, "run_cell", fake_run_cell)
    monkeypatch.chdir(wd)  # Ray starts the entrypoint in the working dir
    assert rj.job_main(["--cell", "cell.json", "--out", str(tmp_path / "cluster" / "job1")]) == 130
    assert seen == {"data.train_files": 6, "data.val_files": 2}


# -- against a real local Ray cluster -------------------------------------------------------------------------
@pytest.mark.slow
def test_workers_on_every_node_read_the_shipped_subsets(ray_cluster: LocalRayCluster, tmp_path: Path) -> None:
    from suite.data.subset import write_subsets

    cell = bench_cell(tmp_path, ["--ray", "--steps", "1", "--read-data"], train_rows=5, val_rows=3)
    full_file(tmp_path / "data" / "train.parquet")
    full_file(tmp_path / "data" / "test.parquet")
    write_subsets([cell.inputs])
    cell_dir = tmp_path / cell.full_id
    result = rj.RayJobRuntime(address=ray_cluster.address, poll_s=0.5).run_cell(cell, cell_dir)
    log = (cell_dir / "log.txt").read_text()
    assert result.status == "ok", (result.reason, log[-3000:])
    assert "fake verl: data rows on 2 node(s): [(5, 3)]" in log, log[-3000:]
    assert "data.train_files=inputs/train.parquet" in " ".join(result.provenance.argv)
