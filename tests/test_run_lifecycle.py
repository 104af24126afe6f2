"""The lifecycle every runtime shares (suite/run/runtime.py), against a fake runtime of ~30 lines: a "job" is a
clock that runs for `run_s` seconds and reports two steps. Timeouts, cancel, Ctrl-C, a result that never comes
back, the dry run, refusals and the typed options, without any process, container or cluster."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from fakes.cells import fake_cell
from fakes_dist.cells import dist_cell

from suite.errors import InputError
from suite.results.io import read_result
from suite.results.schema import Result
from suite.run.options import RuntimeOptions, parse_options
from suite.run.runtime import Job, NoResult, NotRun, Runtime, State, StepCallback, Stopped

STEP = {"perf/throughput": 100.0, "perf/time_per_step": 1.0, "response_length/mean": 10.0}


# -- the fake runtime -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FakeOptions(RuntimeOptions):
    run_s: float = 0.0  # how long the cell runs
    pending_s: float = 0.0  # how long it waits before it runs
    result: bool = True  # whether its result comes back
    poll_s: float = 0.01


@dataclass(kw_only=True)
class FakeJob(Job):
    started: float
    stopped: bool = False


class FakeRuntime(Runtime[FakeJob]):
    name = "fake"
    options_type = FakeOptions
    options: FakeOptions

    def describe(self, cell, cell_dir, *, timeout_s, gpus) -> str:
        return f"would run {cell.full_id} for {self.options.run_s:g} s"

    def submit(self, cell, cell_dir, *, timeout_s, gpus, on_step: StepCallback) -> FakeJob:
        lines = [json.dumps({"step": s, "data": STEP}) for s in (1, 2)]
        (cell_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        on_step(1), on_step(2)
        return FakeJob(cell=cell, cell_dir=cell_dir, started=time.monotonic(), extra={"fake_job": "j1"})

    def status(self, job: FakeJob) -> State:
        age, o = time.monotonic() - job.started, self.options
        if job.stopped or age >= o.pending_s + o.run_s:
            return State.DONE
        return State.PENDING if age < o.pending_s else State.RUNNING

    def stop(self, job: FakeJob) -> str | None:
        job.stopped = True
        return "fake job stopped"

    def fetch(self, job: FakeJob, stopped: Stopped | None) -> Result | NoResult:
        if not self.options.result:
            return NoResult("the fake sent nothing", exit_code=0)
        return self.record(
            job.cell,
            job.cell_dir,
            "ok",
            None,
            write=False,
            observation={"metrics_path": job.cell_dir / "metrics.jsonl"},
        )


# -- the lifecycle ----------------------------------------------------------------------------------------
def _run(tmp_path: Path, cell=None, **options):
    cell = cell or fake_cell("c", out_dir=tmp_path)
    d = tmp_path / cell.full_id
    timeout_s = options.pop("timeout_s", None)
    return FakeRuntime(**options).run_cell(cell, d, timeout_s=timeout_s), d


def test_a_cell_that_ends_is_fetched_written_and_its_directory_prepared(tmp_path: Path) -> None:
    cell = fake_cell("c", out_dir=tmp_path)
    d = tmp_path / cell.full_id
    d.mkdir(parents=True)
    (d / "result.json").write_text("stale")
    (d / "log.txt").write_text("stale")
    r = FakeRuntime().run_cell(cell, d)
    assert r.status == "ok" and [s.step for s in r.steps] == [1, 2]
    assert read_result(d / "result.json") == r  # one write: what is returned is what is on disk
    assert not (d / "log.txt").exists()  # an earlier attempt's log is gone
    assert json.loads((d / "cell.json").read_text())["argv"] == cell.argv
    assert r.provenance.extra["fake_job"] == "j1" and r.provenance.runtime == "fake"


def test_timeout_stops_the_cell_and_names_the_last_step(tmp_path: Path) -> None:
    t0 = time.monotonic()
    cell = fake_cell("slow", out_dir=tmp_path)
    r = FakeRuntime(run_s=30).run_cell(cell, tmp_path / cell.full_id, timeout_s=0.2)
    assert time.monotonic() - t0 < 10
    assert r.status == "timeout"
    assert r.reason == "timed out after 0.2 s (fake job stopped; last step: 2)"


def test_a_cell_that_never_starts_is_given_up(tmp_path: Path) -> None:
    class Patient(FakeRuntime):
        pending_limit_s = 0.1  # type: ignore[assignment]

    cell = fake_cell("queued", out_dir=tmp_path)
    r = Patient(pending_s=30).run_cell(cell, tmp_path / cell.full_id, timeout_s=60)
    assert (r.status, r.reason) == ("timeout", "not started after 0.1 s (fake job stopped; last step: 2)")


def test_interrupt_stops_cells_in_flight_and_refuses_new_ones(tmp_path: Path) -> None:
    rt = FakeRuntime(run_s=30)
    threading.Timer(0.2, rt.interrupt).start()
    cell = fake_cell("c", out_dir=tmp_path)
    r = rt.run_cell(cell, tmp_path / cell.full_id)
    assert (r.status, r.reason) == ("interrupted", "interrupted (fake job stopped; last step: 2)")
    later = fake_cell("later", out_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        rt.run_cell(later, tmp_path / later.full_id)
    assert not (tmp_path / later.full_id).exists()


def test_ctrl_c_records_the_cell_interrupted_then_reraises(tmp_path: Path) -> None:
    class CtrlC(FakeRuntime):
        def status(self, job: FakeJob) -> State:
            if not job.stopped:
                raise KeyboardInterrupt
            return State.DONE

    cell = fake_cell("c", out_dir=tmp_path)
    d = tmp_path / cell.full_id
    with pytest.raises(KeyboardInterrupt):
        CtrlC(run_s=30).run_cell(cell, d)
    r = read_result(d / "result.json")
    assert (r.status, r.reason) == ("interrupted", "interrupted by SIGINT (fake job stopped; last step: 2)")


def test_no_result_back_is_a_crash_not_ok(tmp_path: Path) -> None:
    r, d = _run(tmp_path, result=False)
    assert (r.status, r.reason) == ("crash", "the fake sent nothing")
    assert [s.step for s in r.steps] == [1, 2]  # the local result still reads the metrics that are there
    assert read_result(d / "result.json").status == "crash"
    r, _ = _run(tmp_path, fake_cell("t", out_dir=tmp_path), result=False, run_s=30, timeout_s=0.1)
    assert (r.status, r.reason) == ("timeout", "timed out after 0.1 s (fake job stopped)")


def test_dry_run_describes_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cell = fake_cell("c", out_dir=tmp_path)
    r = FakeRuntime(dry_run="yes", run_s=5).run_cell(cell, tmp_path / cell.full_id)
    assert capsys.readouterr().out == f"would run {cell.full_id} for 5 s\n"
    assert (r.status, r.reason) == ("skipped", "dry run") and not (tmp_path / cell.full_id).exists()
    bad = fake_cell("bad", status="invalid", reason="tp 3", out_dir=tmp_path)
    assert FakeRuntime(dry_run=True).run_cell(bad, tmp_path / bad.full_id).status == "invalid"
    assert not (tmp_path / bad.full_id).exists()


def test_unrun_and_refused_cells_are_recorded_without_a_job(tmp_path: Path) -> None:
    r, d = _run(tmp_path, fake_cell("bad", status="invalid", reason="tp 3 does not divide 14 heads", out_dir=tmp_path))
    assert (r.status, r.reason) == ("invalid", "tp 3 does not divide 14 heads") and not (d / "cell.json").exists()
    r, _ = _run(tmp_path, fake_cell("fat", status="predicted-oom", reason="needs 91 GiB", out_dir=tmp_path))
    assert (r.status, r.reason) == ("skipped", "needs 91 GiB")

    class OneNode(FakeRuntime):
        max_nodes = 1

    class Cluster(FakeRuntime):
        checks_topology = True

    two = dist_cell("two", tmp_path)
    r = OneNode().run_cell(two, tmp_path / two.full_id)
    assert r.status == "invalid" and "the fake runtime runs one node" in r.reason
    assert Cluster().run_cell(two, tmp_path / two.full_id).status == "ok"
    lying = dist_cell("lying", tmp_path, topology=(1, 1))
    r = Cluster().run_cell(lying, tmp_path / lying.full_id)
    assert (r.status, r.reason) == (
        "invalid",
        "topology: trainer.nnodes=1 in the cell's command, but the matrix says 2",
    )


def test_a_cell_that_cannot_start_is_recorded_with_its_reason(tmp_path: Path) -> None:
    class Busy(FakeRuntime):
        def submit(self, cell, cell_dir, *, timeout_s, gpus, on_step):
            raise NotRun("skipped", "GPU 1: 30.0 GiB used", env={"CUDA_VISIBLE_DEVICES": "1"}, gpu_name="H100")

    cell = fake_cell("c", out_dir=tmp_path)
    r = Busy().run_cell(cell, tmp_path / cell.full_id, gpus=[1])
    assert (r.status, r.reason) == ("skipped", "GPU 1: 30.0 GiB used") and r.provenance.gpu_name == "H100"
    assert read_result(tmp_path / cell.full_id / "result.json") == r


# -- typed options ----------------------------------------------------------------------------------------
def test_options_convert_strings_and_refuse_what_they_do_not_know() -> None:
    rt = FakeRuntime(run_s="2.5", result="off", dry_run="1", poll_s=None)
    assert rt.options == FakeOptions(run_s=2.5, result=False, dry_run=True)  # None: not given
    with pytest.raises(InputError, match=r"option\(s\) image not supported by the fake runtime; allowed: dry_run"):
        FakeRuntime(image="x")
    with pytest.raises(InputError, match="bad value 'soon' for option 'run_s'; expected float"):
        FakeRuntime(run_s="soon")
    with pytest.raises(InputError, match="bad value '-1' for option 'run_s'; allowed: >= 0"):
        FakeRuntime(run_s="-1")
    with pytest.raises(InputError, match="bad value 'maybe' for option 'result'; expected bool"):
        FakeRuntime(result="maybe")

    assert parse_options(Choice, {"mode": "b", "count": "3"}, "x") == Choice(mode="b", count=3)
    assert parse_options(Choice, {"label": 7}, "x").label == "7"
    with pytest.raises(InputError, match="bad value 'c' for option 'mode'; allowed: a, b"):
        parse_options(Choice, {"mode": "c"}, "x")


@dataclass(frozen=True)
class Choice(RuntimeOptions):
    mode: Literal["a", "b"] = "a"
    count: int = 0
    label: str | None = None


def test_an_oom_a_runtime_decides_records_which_memory_ran_out(tmp_path: Path) -> None:
    class Guarded(FakeRuntime):  # as the host runtime's host_memory_guard does
        def guard(self, job: FakeJob) -> Stopped | None:
            return Stopped("oom", "host memory 120.0 of 125.0 GiB used", "host-guard")

    cell = fake_cell("guarded", out_dir=tmp_path)
    r = Guarded(run_s=30).run_cell(cell, tmp_path / cell.full_id)
    assert (r.status, r.oom_kind) == ("oom", "host-guard")
    assert r.reason == "host memory 120.0 of 125.0 GiB used (fake job stopped; last step: 2)"
    assert read_result(tmp_path / cell.full_id / "result.json").oom_kind == "host-guard"

    class Killed(FakeRuntime):  # as Slurm's OUT_OF_MEMORY end state without a result does
        def fetch(self, job: FakeJob, stopped: Stopped | None) -> Result | NoResult:
            return NoResult("job ended OUT_OF_MEMORY without a result", "oom", 137, oom_kind="slurm")

    cell = fake_cell("killed", out_dir=tmp_path)
    r = Killed().run_cell(cell, tmp_path / cell.full_id)
    assert (r.status, r.oom_kind, r.reason) == ("oom", "slurm", "job ended OUT_OF_MEMORY without a result")
    # a timeout is not an oom of any memory
    cell = fake_cell("slow", out_dir=tmp_path)
    r = FakeRuntime(run_s=30).run_cell(cell, tmp_path / cell.full_id, timeout_s=0.1)
    assert (r.status, r.oom_kind) == ("timeout", None)
