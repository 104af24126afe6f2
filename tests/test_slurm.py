"""The Slurm runtime: the generated sbatch script (syntax, directives, containers, no secrets), the script
run end to end for 2 nodes with `srun`/`scontrol`/`apptainer` shims that run each step locally, and, on a
REAL single-node Slurm (munged + slurmctld + slurmd from Debian's slurm-wlm, started by a session fixture),
a cell whose fake verl joins the job's Ray cluster: result collected, timeout, Ctrl-C -> scancel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes_dist.cells import dist_cell
from fakes_dist.cluster import running
from fakes_dist.slurm_cluster import LocalSlurm, free_port, unavailable

from suite.errors import InputError
from suite.results.schema import Result
from suite.run import slurm as sl
from suite.run.options import parse_options

CLIENT = str(Path(__file__).parent / "fakes_dist" / "run_client.py")
SUITE_ROOT = str(Path(__file__).resolve().parents[1])
SECRET = "hf_do-not-leak-3c9a"


def _opts(**kw: object) -> dict:
    return parse_options(sl.SlurmOptions, kw, "slurm")


# -- the script ------------------------------------------------------------------------------------------
def test_script_directives_syntax_and_no_secrets(tmp_path: Path) -> None:
    cell = dist_cell("c", tmp_path, nnodes=2, gpus_per_node=8)
    cell = cell.__class__(**{**cell.__dict__, "env": {**cell.env, "HF_TOKEN": SECRET}})
    cell_dir = tmp_path / cell.full_id
    text = sl.render_script(
        cell,
        cell_dir,
        _opts(partition="gpu", account="bench", mem="200G", sbatch_args="--constraint=h100 --reservation=r1"),
        3600,
    )
    lines = text.splitlines()
    sbatch = [x for x in lines if x.startswith("#SBATCH ")]
    assert sbatch[:5] == [
        "#SBATCH --job-name=grpo-suite:c",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --output={cell_dir}/slurm-%j.out",
        "#SBATCH --open-mode=append",
    ]
    for want in (
        "--gpus-per-node=8",
        "--mem=200G",
        "--exclusive",
        "--partition=gpu",
        "--account=bench",
        "--time=01:15:00",
        "--constraint=h100",
        "--reservation=r1",
    ):
        assert f"#SBATCH {want}" in sbatch
    assert f"export VERL_FILE_LOGGER_PATH={cell_dir}/metrics.jsonl" in lines
    assert SECRET not in text and "HF_TOKEN" not in text
    assert "--timeout 3600" in text and "wait-nodes --nodes 2" in text and "{{" not in text
    path = tmp_path / "job.sbatch"
    path.write_text(text)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


def test_container_variants(tmp_path: Path) -> None:
    cell = dist_cell("c", tmp_path)
    cell_dir = tmp_path / cell.full_id
    pyxis = sl.render_script(cell, cell_dir, _opts(image="nvcr.io/x/verl:0.9.1", container_mounts="/data"), None)
    assert (
        f"SRUN_C=(--container-image=nvcr.io/x/verl:0.9.1 --container-mounts={cell_dir},"
        f"{SUITE_ROOT},/data --container-workdir=/tmp --no-container-mount-home)"
    ) in pyxis
    assert "RUN_C=()" in pyxis and "#SBATCH --time" not in pyxis  # no timeout: the partition limit
    app = sl.render_script(cell, cell_dir, _opts(image="/img/verl.sif", container="apptainer"), None)
    assert f"RUN_C=(apptainer exec --nv --bind {cell_dir} --bind {SUITE_ROOT} /img/verl.sif)" in app
    none = sl.render_script(cell, cell_dir, _opts(), None)
    assert "SRUN_C=()" in none and "RUN_C=()" in none
    with pytest.raises(InputError, match="allowed: pyxis, apptainer"):
        sl.SlurmRuntime(container="docker")
    with pytest.raises(InputError, match="not supported by the slurm runtime"):
        sl.SlurmRuntime(address="http://x:8265")


def test_parsers_and_times() -> None:
    assert sl.parse_sbatch("1234\n") == "1234" and sl.parse_sbatch("77;cluster2") == "77"
    with pytest.raises(ValueError):
        sl.parse_sbatch("sbatch: error: Batch job submission failed")
    assert sl.parse_sacct("CANCELLED by 0|0:15\n") == sl.JobState("CANCELLED", 0, 15)
    assert sl.parse_sacct("COMPLETED|0:0") == sl.JobState("COMPLETED", 0, 0)
    st = sl.parse_scontrol("JobId=5 JobName=x JobState=FAILED Reason=NonZeroExitCode ExitCode=130:0 Foo=1")
    assert st == sl.JobState("FAILED", 130, 0) and st.done and not sl.JobState("RUNNING").done
    assert sl.slurm_time(59) == "00:01:00" and sl.slurm_time(3600 + 1) == "01:01:00"
    assert sl.slurm_time(2 * 86400 + 90) == "2-00:02:00"


def test_dry_run_prints_the_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cell = dist_cell("c", tmp_path)
    r = sl.SlurmRuntime(dry_run=True).run_cell(cell, tmp_path / cell.full_id, timeout_s=600)
    out = capsys.readouterr().out
    assert r.status == "skipped" and out.startswith("# sbatch script for tiny/h100x2/fsdp/c\n#!/bin/bash\n")
    assert "#SBATCH --nodes=2" in out and not (tmp_path / cell.full_id).exists()


SRUN_SHIM = """#!/bin/bash
# srun stand-in: drop the allocation options, record the node and command, run the command here.
node=""
while [ $# -gt 0 ]; do
  case "$1" in
    -w) node=$2; shift 2 ;;
    --*=*|--overlap|--no-container-mount-home) shift ;;
    *) break ;;
  esac
done
echo "$node :: $*" >> "$SHIM_LOG"
case "$*" in
  *"ray start"*|*wait-nodes*) exit 0 ;;  # no Ray here: the real-Slurm tests start it for real
esac
exec "$@"
"""
APPTAINER_SHIM = """#!/bin/bash
echo "apptainer :: $*" >> "$SHIM_LOG"
shift  # exec
while [ $# -gt 0 ]; do
  case "$1" in --nv) shift ;; --bind) shift 2 ;; *) shift; break ;; esac  # the last one is the image
done
exec "$@"
"""


@pytest.mark.parametrize("container", ["", "apptainer"])
def test_two_node_script_runs_with_shims(tmp_path: Path, container: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (
        ("srun", SRUN_SHIM),
        ("apptainer", APPTAINER_SHIM),
        ("scontrol", '#!/bin/bash\n[ "$1 $2" = "show hostnames" ] && printf "nodea\\nnodeb\\n"\n'),
    ):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    cell = dist_cell("two", tmp_path / "out", ["--steps", "3", "--step-s", "0.05"], nnodes=2, gpus_per_node=8)
    cell_dir = tmp_path / "out" / cell.full_id
    cell_dir.mkdir(parents=True)
    (cell_dir / "cell.json").write_text(json.dumps(cell.to_dict()))
    opts = _opts(
        python=sys.executable, ray_port=6400, **({"image": "/img/v.sif", "container": container} if container else {})
    )
    script = tmp_path / "job.sbatch"
    script.write_text(sl.render_script(cell, cell_dir, opts, 120))
    log = tmp_path / "calls.log"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SHIM_LOG": str(log),
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": "node[a-b]",
    }
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = [x.split(" :: ", 1) for x in log.read_text().splitlines() if not x.startswith("apptainer")]
    ip = subprocess.run(["hostname", "--ip-address"], capture_output=True, text=True).stdout.split()[0]
    pre = f"apptainer exec --nv --bind {cell_dir} --bind {SUITE_ROOT} /img/v.sif " if container else ""
    assert calls[0] == ["nodea", "hostname --ip-address"]
    heads = [c for c in calls if "ray start --head" in c[1]]
    workers = [c for c in calls if "ray start --address" in c[1]]
    assert heads == [
        [
            "nodea",
            f"{pre}ray start --head --node-ip-address={ip} --port=6400 --num-gpus=8 "
            "--temp-dir=/tmp/ray-gs-4242 --include-dashboard=false --disable-usage-stats --block",
        ]
    ]
    assert workers == [
        [
            "nodeb",
            f"{pre}ray start --address={ip}:6400 --num-gpus=8 --temp-dir=/tmp/ray-gs-4242 "
            "--disable-usage-stats --block",
        ]
    ]
    fg = [c for c in calls if "ray start" not in c[1]]  # the `ray start` steps run in the background
    assert len(fg) == 3
    assert fg[-2] == ["nodea", f"{pre}{sys.executable} -m suite.run.slurm wait-nodes --nodes 2 --timeout 300"]
    assert fg[-1] == [
        "nodea",
        f"{pre}{sys.executable} -m suite.run.incell --cell {cell_dir}/cell.json "
        f"--out {cell_dir} --runtime-name slurm --timeout 120",
    ]
    assert f"Ray head at {ip}:6400" in proc.stdout
    result = Result.model_validate_json((cell_dir / "result.json").read_text())
    assert result.status == "ok" and [s.step for s in result.steps] == [1, 2, 3]
    assert result.nnodes == 2 and result.n_gpus == 16 and result.provenance.runtime == "slurm"
    assert "fake verl: trainer.nnodes=2 trainer.n_gpus_per_node=8" in (cell_dir / "log.txt").read_text()


# -- against a real single-node Slurm ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def slurm():
    why = unavailable()
    if why:
        pytest.skip(f"no local Slurm: {why}")
    with running(LocalSlurm()) as cluster:
        yield cluster


def _runtime_opts() -> dict[str, object]:
    # CPU machine: no GPUs to request, one node shared by the test jobs, private Ray ports.
    return {
        "gres": False,
        "exclusive": False,
        "poll_s": 1,
        "cancel_grace_s": 30,
        "python": sys.executable,
        "ray_port": free_port(),
        "ray_start_args": f"--dashboard-agent-listen-port={free_port()} --ray-client-server-port={free_port()}",
    }


def _leftovers(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [x for x in out.splitlines() if marker in x and "ps -eo" not in x]


@pytest.mark.slow
def test_real_slurm_job_runs_ray_and_returns_the_result(
    slurm: LocalSlurm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    monkeypatch.setenv("HF_TOKEN", SECRET)
    env_dump = tmp_path / "env.json"
    cell = dist_cell("real", tmp_path / "out", ["--ray", "--steps", "3", "--record-env", str(env_dump)], nnodes=1)
    cell_dir = tmp_path / "out" / cell.full_id
    steps: list[int] = []
    result = sl.SlurmRuntime(**_runtime_opts()).run_cell(cell, cell_dir, timeout_s=300, on_step=steps.append)
    slurm_out = "".join(p.read_text() for p in cell_dir.glob("slurm-*.out"))
    assert result.status == "ok", (result.reason, slurm_out[-3000:])
    assert [s.step for s in result.steps] == [1, 2, 3] and steps == [1, 2, 3]
    assert result.provenance.runtime == "slurm" and result.provenance.extra["slurm_state"] == "COMPLETED"
    assert "Ray cluster ready: 1 node(s)" in slurm_out
    log = (cell_dir / "log.txt").read_text()
    assert "joined a Ray cluster of 1 node(s)" in log
    driver_env = json.loads(env_dump.read_text())
    assert driver_env["HF_TOKEN"] == SECRET and driver_env["RAY_AUTH_MODE"] == "token"  # reached the job
    assert SECRET not in (cell_dir / "job.sbatch").read_text() and SECRET not in (cell_dir / "result.json").read_text()
    assert "HF_TOKEN" not in result.provenance.env and "RAY_AUTH_TOKEN" not in result.provenance.env


@pytest.mark.slow
def test_real_slurm_timeout_is_recorded_with_partial_steps(
    slurm: LocalSlurm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    cell = dist_cell("slow", tmp_path / "out", ["--ray", "--steps", "2", "--step-s", "0.1", "--hang"], nnodes=1)
    cell_dir = tmp_path / "out" / cell.full_id
    result = sl.SlurmRuntime(**_runtime_opts()).run_cell(cell, cell_dir, timeout_s=25)
    assert result.status == "timeout", result.reason
    assert [s.step for s in result.steps] == [1, 2]
    assert not _leftovers(str(cell_dir))


@pytest.mark.slow
def test_real_slurm_ctrl_c_cancels_the_job(slurm: LocalSlurm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    cell = dist_cell("cancel", tmp_path / "out", ["--ray", "--steps", "1", "--step-s", "0.1", "--hang"], nnodes=1)
    cell_dir = tmp_path / "out" / cell.full_id
    cell_json = tmp_path / "cell.json"
    cell_json.write_text(json.dumps(cell.to_dict()))
    opts = [x for k, v in _runtime_opts().items() for x in ("--option", f"{k}={v}")]
    proc = subprocess.Popen(
        [sys.executable, CLIENT, "slurm", str(cell_json), str(cell_dir), *opts],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        seen = []
        assert proc.stdout is not None
        deadline = time.monotonic() + 180
        for line in proc.stdout:
            seen.append(line)
            if "client: step 1" in line or time.monotonic() > deadline:
                break
        assert any("client: step 1" in x for x in seen), "".join(seen)[-3000:]
        job = next(p.name.split("-")[1].split(".")[0] for p in cell_dir.glob("slurm-*.out"))
        assert sl.job_state(job).state == "RUNNING"
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "client: interrupted" in rest, rest
    assert sl.job_state(job).done
    result = Result.model_validate_json((cell_dir / "result.json").read_text())
    assert result.status == "interrupted" and "SIGINT" in result.reason
    assert [s.step for s in result.steps] == [1]
    time.sleep(2)
    assert not _leftovers(str(cell_dir)), _leftovers(str(cell_dir))
