"""The Ray Jobs runtime: pure parts (job spec, env, relocation, result bundle) and, against a REAL local Ray
cluster on loopback (head + one worker node, `ray start`), a multi-node cell running the distributed fake
verl: logs stream, the result comes back intact and without secrets, timeout and Ctrl-C stop the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes.cells import with_argv
from fakes_dist.cells import dist_cell
from fakes_dist.cluster import LocalRayCluster

from suite.errors import InputError
from suite.results.schema import Result
from suite.run import ray_job as rj
from suite.run.options import parse_options
from suite.run.runtime import topology_problem

ray = pytest.importorskip("ray")
CLIENT = str(Path(__file__).parent / "fakes_dist" / "run_client.py")
SECRET = "hf_do-not-leak-7d1e"


# -- pure parts -------------------------------------------------------------------------------------------
def test_bundle_survives_chunking_interleaving_and_rejects_corruption() -> None:
    noise = os.urandom(20000).hex()  # incompressible: several chunks after gzip
    files = {"result.json": json.dumps({"x": noise}), "metrics.jsonl": '{"step": 1}\n' * 500}
    lines = rj.encode_bundle(files)
    assert len(lines) > 1 and all(len(x) < rj.BUNDLE_CHUNK + 200 for x in lines)
    noisy = ["(pid=1) hello", *lines[:1], "interleaved output", *lines[1:], "tail"]
    assert rj.decode_bundle(noisy) == files
    broken = [*lines[:-1], lines[-1][:-4] + "AAAA"]
    assert rj.decode_bundle(broken) is None  # checksum mismatch
    assert rj.decode_bundle(lines[:-1]) is None  # a chunk missing
    newer = rj.encode_bundle({"result.json": "second"})
    assert rj.decode_bundle([*lines, *newer]) == {"result.json": "second"}
    assert "@@grpo-suite:bundle" not in rj.strip_bundle("a\n" + "\n".join(lines) + "\nb\n")


def test_relocation_and_topology(tmp_path: Path) -> None:
    cell = dist_cell("c", tmp_path)
    local = tmp_path / cell.full_id
    moved = cell.relocated(local, "/cluster/job1")
    assert moved.env["VERL_FILE_LOGGER_PATH"] == "/cluster/job1/metrics.jsonl"
    assert "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH=/cluster/job1/metrics.jsonl" in moved.argv
    assert not any(str(local) in a for a in moved.argv)
    assert topology_problem(cell) is None
    bad = dist_cell("c", tmp_path, topology=(1, 1))
    assert "trainer.nnodes=1" in topology_problem(bad) and "matrix says 2" in topology_problem(bad)
    missing = with_argv(bad, [a for a in bad.argv if "nnodes" not in a])
    assert "does not set trainer.nnodes" in topology_problem(missing)


def test_job_spec_env_forwarding_and_redaction(tmp_path: Path) -> None:
    cell = dist_cell("c", tmp_path)
    environ = {"NCCL_IB_HCA": "mlx5_0,mlx5_1", "HF_TOKEN": SECRET, "HOME": "/root", "MY_VAR": "1"}
    opts = parse_options(rj.RayOptions, {"address": "http://h:8265", "forward_env": "MY_*", "stop_wait_s": "45"}, "ray")
    spec, rcell = rj.build_spec(
        cell, tmp_path / cell.full_id, working_dir="/w", environ=environ, opts=opts, timeout_s=100
    )
    env = spec.runtime_env["env_vars"]
    assert env["NCCL_IB_HCA"] == "mlx5_0,mlx5_1" and env["HF_TOKEN"] == SECRET and env["MY_VAR"] == "1"
    assert "HOME" not in env
    assert env["RAY_JOB_STOP_WAIT_TIME_S"] == "45" and env["RAY_OVERRIDE_JOB_RUNTIME_ENV"] == "1"
    assert env["VERL_FILE_LOGGER_PATH"] == f"{spec.remote_dir}/metrics.jsonl"
    assert spec.remote_dir.startswith("/tmp/grpo-suite-ray/grpo-suite-tiny-h100x2-fsdp-c-")
    assert spec.entrypoint.endswith(f"--out {spec.remote_dir} --timeout 400")  # + remote_margin_s backstop
    assert spec.secrets == ["HF_TOKEN"]
    shown = json.dumps(spec.redacted())
    assert SECRET not in shown and "<redacted>" in shown
    staged = rj.stage_working_dir(rcell, tmp_path / "stage")
    assert (staged / "suite" / "run" / "incell.py").exists() and not list(staged.rglob("__pycache__"))
    assert json.loads((staged / "cell.json").read_text())["env"] == rcell.env


def test_options_are_checked() -> None:
    with pytest.raises(InputError, match="not supported by the ray runtime"):
        rj.RayJobRuntime(address="http://h:8265", partition="gpu")
    with pytest.raises(InputError, match="expected float"):
        rj.RayJobRuntime(address="http://h:8265", poll_s="fast")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    code = "from suite.run.ray_job import RayJobRuntime; RayJobRuntime(address=None)"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=Path(__file__).parents[1]
    )
    assert "no Ray cluster given" in proc.stderr
    rt = rj.RayJobRuntime(address="http://h:8265", dry_run="true", image=None)
    assert rt.options.dry_run is True


def test_dry_run_prints_the_job_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    cell = dist_cell("c", tmp_path)
    # An address nothing listens on: a dry run must not contact the cluster.
    r = rj.RayJobRuntime(address="http://127.0.0.1:9", dry_run=True).run_cell(cell, tmp_path / cell.full_id)
    out = capsys.readouterr().out
    assert r.status == "skipped" and r.reason == "dry run"
    spec = json.loads(out.split("\n", 1)[1])
    assert spec["entrypoint"].startswith("exec python3 -m suite.run.ray_job --cell cell.json --out /tmp/")
    assert spec["runtime_env"]["env_vars"]["HF_TOKEN"] == "<redacted>" and SECRET not in out
    assert not (tmp_path / cell.full_id / "result.json").exists()


# -- against a real local Ray cluster ---------------------------------------------------------------------
def _job(cluster: LocalRayCluster, cell_id: str):
    from ray.job_submission import JobSubmissionClient

    jobs = [
        j
        for j in JobSubmissionClient(cluster.address).list_jobs()
        if (j.metadata or {}).get("grpo_suite_cell", "").endswith(f"/{cell_id}")
    ]
    assert len(jobs) == 1, jobs
    return jobs[0]


def _no_job_processes(cluster: LocalRayCluster, sid: str, within_s: float = 30) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not cluster.job_processes(sid):
            return True
        time.sleep(0.5)
    return False


@pytest.mark.slow
def test_cell_runs_as_ray_job_and_result_comes_back_intact(
    ray_cluster: LocalRayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "lo")
    env_dump = tmp_path / "driver-env.json"
    cell = dist_cell("ok", tmp_path, ["--ray", "--steps", "3", "--record-env", str(env_dump)])
    cell_dir = tmp_path / cell.full_id
    steps: list[int] = []
    result = rj.RayJobRuntime(address=ray_cluster.address, poll_s=0.5).run_cell(cell, cell_dir, on_step=steps.append)
    log = (cell_dir / "log.txt").read_text()
    assert result.status == "ok", (result.reason, log[-3000:])
    assert [s.step for s in result.steps] == [1, 2, 3] and steps == [1, 2, 3]
    assert result.nnodes == 2 and result.n_gpus == 2 and result.provenance.runtime == "ray"
    sid = result.provenance.extra["ray_job"]
    assert result.provenance.extra["ray_job_status"] == "SUCCEEDED"
    # Ran on the cluster, across both nodes, with the file-logger path delivered by the runtime env.
    assert "joined a Ray cluster of 2 node(s)" in log and "workers on 2 node(s)" in log
    remote_dir = result.provenance.extra["remote_dir"]
    assert f"logger path on workers: ['{remote_dir}/metrics.jsonl']" in log
    # Intact: the client's copy equals the result the in-job runner wrote on the cluster, byte for byte
    # except the provenance notes the client adds.
    remote = Result.model_validate_json(Path(remote_dir, "result.json").read_text())
    local = Result.model_validate_json((cell_dir / "result.json").read_text())
    strip = lambda r: r.model_dump(exclude={"provenance": {"extra"}})  # noqa: E731
    assert strip(remote) == strip(local)
    assert (cell_dir / "metrics.jsonl").read_text() == Path(remote_dir, "metrics.jsonl").read_text()
    # Secrets and NCCL settings reached the job, and no result or log carries the secret.
    driver_env = json.loads(env_dump.read_text())
    assert driver_env["HF_TOKEN"] == SECRET and driver_env["NCCL_SOCKET_IFNAME"] == "lo"
    assert "HF_TOKEN" not in local.provenance.env and local.provenance.env["NCCL_SOCKET_IFNAME"] == "lo"
    for f in cell_dir.iterdir():
        assert SECRET not in f.read_text(), f
    assert "@@grpo-suite:bundle" not in log
    assert _no_job_processes(ray_cluster, sid)


@pytest.mark.slow
def test_timeout_stops_the_job_and_keeps_partial_steps(ray_cluster: LocalRayCluster, tmp_path: Path) -> None:
    cell = dist_cell("hang", tmp_path, ["--ray", "--steps", "2", "--step-s", "0.1", "--hang"])
    cell_dir = tmp_path / cell.full_id
    rt = rj.RayJobRuntime(address=ray_cluster.address, poll_s=0.5, stop_wait_s=20)
    t0 = time.monotonic()
    result = rt.run_cell(cell, cell_dir, timeout_s=25)
    assert time.monotonic() - t0 < 25 + 60
    assert result.status == "timeout", result.reason
    assert "timed out after 25 s" in result.reason and "stopped" in result.reason
    assert [s.step for s in result.steps] == [1, 2]  # the partial result came back through the log
    job = _job(ray_cluster, "hang")
    assert job.status.value == "STOPPED"
    assert _no_job_processes(ray_cluster, job.submission_id)


@pytest.mark.slow
def test_ctrl_c_in_the_client_stops_the_remote_job(ray_cluster: LocalRayCluster, tmp_path: Path) -> None:
    cell = dist_cell("sigint", tmp_path, ["--ray", "--steps", "1", "--step-s", "0.1", "--hang"])
    cell_dir = tmp_path / cell.full_id
    cell_json = tmp_path / "cell.json"
    cell_json.write_text(json.dumps(cell.to_dict()))
    proc = subprocess.Popen(
        [
            sys.executable,
            CLIENT,
            "ray",
            str(cell_json),
            str(cell_dir),
            "--option",
            f"address={ray_cluster.address}",
            "--option",
            "poll_s=0.5",
            "--option",
            "stop_wait_s=20",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        seen = []
        assert proc.stdout is not None
        for line in proc.stdout:  # wait for the first step to stream back, then press Ctrl-C
            seen.append(line)
            if "client: step 1" in line or time.monotonic() > deadline:
                break
        assert any("client: step 1" in x for x in seen), "".join(seen)[-3000:]
        job = _job(ray_cluster, "sigint")
        assert job.status.value == "RUNNING"
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, rest
    assert "client: interrupted" in rest
    job = _job(ray_cluster, "sigint")
    assert job.status.value == "STOPPED"
    result = Result.model_validate_json((cell_dir / "result.json").read_text())
    assert result.status == "interrupted" and "SIGINT" in result.reason
    assert [s.step for s in result.steps] == [1]
    assert _no_job_processes(ray_cluster, job.submission_id)


@pytest.mark.slow
def test_cluster_smaller_than_the_plan_is_a_crash(ray_cluster: LocalRayCluster, tmp_path: Path) -> None:
    cell = dist_cell("toobig", tmp_path, ["--ray"], nnodes=3)
    result = rj.RayJobRuntime(address=ray_cluster.address, poll_s=0.5).run_cell(cell, tmp_path / cell.full_id)
    assert result.status == "crash", result.reason
    assert "less than total desired nodes 3" in (tmp_path / cell.full_id / "log.txt").read_text()
    assert result.exit_code == 1 and result.provenance.extra["ray_job_status"] == "FAILED"


# -- the bench profile's dataset subsets are cut on the cluster, where the job reads them ------------------------
def _cell_with_subset(tmp_path: Path, source: Path):
    from dataclasses import replace

    cell = dist_cell("c", tmp_path)
    local = tmp_path / cell.full_id
    dest = str(local / "inputs" / "train.parquet")
    return replace(cell, inputs={dest: {"source": str(source), "rows": 3}}), local


def test_relocation_moves_where_the_subsets_go(tmp_path: Path) -> None:
    # (build_spec ships them in the job's working dir instead: tests/test_ray_inputs.py)
    cell, local = _cell_with_subset(tmp_path, tmp_path / "full.parquet")
    rcell = cell.relocated(local, "/cluster/job1")
    assert rcell.inputs == {"/cluster/job1/inputs/train.parquet": {"source": str(tmp_path / "full.parquet"), "rows": 3}}


def test_job_side_cuts_the_subset_before_the_cell_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from suite.run.cellio import write_cell
    from suite.run.host import HostRuntime

    source = tmp_path / "full.parquet"
    pq.write_table(pa.table({"prompt": [f"q{i}" for i in range(10)]}), source)
    cell, local = _cell_with_subset(tmp_path, source)
    remote = tmp_path / "cluster" / "job1"
    rcell = cell.relocated(local, str(remote))
    write_cell(tmp_path / "stage", rcell)
    seen: list[int] = []

    def fake_run_cell(self, c, out, **_kw):  # the cell's own run is the host runtime's, tested elsewhere
        seen.append(pq.read_table(next(iter(c.inputs))).num_rows)
        raise KeyboardInterrupt

    monkeypatch.setattr(HostRuntime, "run_cell", fake_run_cell)
    code = rj.job_main(["--cell", str(tmp_path / "stage" / "cell.json"), "--out", str(remote)])
    assert code == 130 and seen == [3]
    assert (remote / "inputs" / "train.parquet").exists() and not (local / "inputs").exists()


def test_job_side_names_a_missing_dataset_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from suite.run.cellio import write_cell
    from suite.run.host import HostRuntime

    cell, local = _cell_with_subset(tmp_path, tmp_path / "absent.parquet")
    write_cell(tmp_path / "stage", cell.relocated(local, str(tmp_path / "cluster")))
    monkeypatch.setattr(HostRuntime, "run_cell", lambda *a, **k: pytest.fail("the cell must not run"))
    code = rj.job_main(["--cell", str(tmp_path / "stage" / "cell.json"), "--out", str(tmp_path / "cluster")])
    err = capsys.readouterr().err
    assert code == 2 and "dataset file not found" in err and "absent.parquet" in err


# -- the job side's log echo ------------------------------------------------------------------------------
def test_echo_copies_complete_lines_and_the_unfinished_tail_once(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    seen: list[str] = []
    echo = rj._Echo(log, seen.append, poll_s=3600)  # its thread waits: every read below is explicit
    echo.start()
    echo.poll()  # the file does not exist yet
    assert seen == []
    log.write_bytes(b"one\ntw")
    echo.poll()
    assert seen == ["one"]
    with log.open("ab") as fh:
        fh.write(b"o\nthree")
    echo.poll()
    assert seen == ["one", "two"]
    echo.finish()  # the thread ends, the tail is flushed
    assert seen == ["one", "two", "three"]
    echo.finish()
    assert seen == ["one", "two", "three"]


def test_echo_polls_from_two_threads_emit_each_line_once(tmp_path: Path) -> None:
    import threading

    log = tmp_path / "log.txt"
    log.write_bytes(b"".join(f"line {i}\n".encode() for i in range(2000)))
    seen: list[str] = []
    echo = rj._Echo(log, seen.append, poll_s=3600)
    echo.start()
    threads = [threading.Thread(target=echo.poll) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    echo.finish()
    assert seen == [f"line {i}" for i in range(2000)]


def test_a_final_log_missing_streamed_steps_does_not_replace_the_streamed_one() -> None:
    full = "Running entrypoint\n@@grpo-suite:step 1\nline\n@@grpo-suite:step 2\n@@grpo-suite:step 3\n"
    assert rj.log_is_complete(full, {1, 2, 3}) and rj.log_is_complete(full, set())
    assert rj.log_is_complete(full, {1})  # steps the stream had not delivered yet come from the full log
    cut = "Running entrypoint for job grpo-suite... pid 11261\n@@grpo-suite:step 3\n[grpo-suite] exit code 0\n"
    assert not rj.log_is_complete(cut, {1, 2, 3})  # as seen once: the lines before the last step were gone
    assert not rj.log_is_complete("", {1})
