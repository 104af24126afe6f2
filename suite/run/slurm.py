"""`--runtime slurm`: each cell is one `sbatch` job that starts Ray across its nodes and runs the cell there.

The script (`templates/ray_on_slurm.sbatch`, rendered per cell into `<cell dir>/job.sbatch`) follows the
pattern of verl's Slurm example: node list from `scontrol show hostnames`, the head's IP through `srun
hostname --ip-address`, `ray start --head --block` on the first node and `ray start --address ... --block`
on the others (each under `srun`, inside the container when asked: pyxis `--container-image` or
`apptainer exec --nv`), a wait until every node joined, then `python -m suite.run.incell` on the head.

The result comes back through SHARED STORAGE: the cell dir (`grpo-suite run --out`) must be on a
filesystem the compute nodes see at the same path, as must the suite source (put on PYTHONPATH) and the
model / data paths of the cell. The in-cell runner writes `log.txt`, `metrics.jsonl` and `result.json`
there; the client follows them while the job runs (`squeue`), and reads the job's end state from `sacct`
(or `scontrol show job` where accounting is off).

Ctrl-C, `interrupt()` and the client's timeout backstop send SIGINT to the job's steps (`scancel
--signal=INT`), so the runner records its partial result, then `scancel` the job if it has not ended after
`cancel_grace_s`. Secrets never enter the script: `sbatch` passes the client's environment on to the job
(Slurm's default `--export=ALL`); the script only exports the cell's own (non-secret) variables.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from suite.errors import InputError
from suite.plan.cell import Cell
from suite.results import provenance as prov
from suite.results.io import try_read_result, write_text_atomic
from suite.results.schema import Result
from suite.run import cellenv
from suite.run.files import LOG_FILE, RESULT_FILE
from suite.run.options import RuntimeOptions, split_list
from suite.run.runtime import Job, NoResult, Runtime, State, StepCallback, Stopped
from suite.telemetry.watch import MetricsWatcher

TEMPLATE = Path(__file__).with_name("templates") / "ray_on_slurm.sbatch"
SCRIPT_FILE = "job.sbatch"


@dataclass(frozen=True)
class SlurmOptions(RuntimeOptions):
    partition: str = ""
    account: str = ""
    qos: str = ""
    job_name: str = "grpo-suite"
    time_margin_s: float = 900.0  # Slurm --time = cell timeout + this (Ray start-up, container start, teardown)
    time: str = ""  # explicit --time (HH:MM:SS or D-HH:MM:SS); default: from the timeout, else the partition's
    cpus_per_node: int = 0  # --cpus-per-task (one task per node); 0: Slurm's default
    mem: str = ""  # --mem per node, e.g. 200G
    exclusive: bool = True
    gres: bool = True  # request the cell's GPUs (--gpus-per-node); off only for CPU test clusters
    sbatch_args: str = ""  # more #SBATCH options, shell-quoted, e.g. "--constraint=h100 --reservation=bench"
    image: str = ""  # container image (the generation's pinned image); empty: the nodes' own environment
    container: Literal["pyxis", "apptainer"] = "pyxis"  # srun --container-image, or apptainer exec --nv
    # Extra mounts, comma separated SRC[:DST] (model, data); the cell dir and the suite are always mounted.
    container_mounts: str = ""
    python: str = "python3"
    suite_root: str = ""  # directory holding the `suite` package on the nodes (default: this client's)
    ray_port: int = 6379
    ray_start_args: str = ""  # extra `ray start` arguments for every node
    ray_wait_s: float = 300.0  # how long the nodes may take to join the Ray cluster
    cancel_grace_s: float = 60.0  # after SIGINT, how long the runner gets to record its result before scancel
    poll_s: float = 5.0


# -- the script ------------------------------------------------------------------------------------------
def slurm_time(seconds: float) -> str:
    total = int(-(-seconds // 60))  # whole minutes, rounded up
    days, rem = divmod(total, 24 * 60)
    h, m = divmod(rem, 60)
    return f"{days}-{h:02d}:{m:02d}:00" if days else f"{h:02d}:{m:02d}:00"


def container_parts(opts: SlurmOptions, cell_dir: Path, suite_root: str) -> tuple[list[str], list[str]]:
    """(srun options, command prefix) that put each step inside the image."""
    if not opts.image:
        return [], []
    mounts = list(dict.fromkeys([str(cell_dir), suite_root, *split_list(opts.container_mounts)]))
    if opts.container == "pyxis":
        return [
            f"--container-image={opts.image}",
            f"--container-mounts={','.join(mounts)}",
            "--container-workdir=/tmp",
            "--no-container-mount-home",
        ], []
    binds = [x for m in mounts for x in ("--bind", m)]
    return [], ["apptainer", "exec", "--nv", *binds, opts.image]


def sbatch_directives(cell: Cell, cell_dir: Path, opts: SlurmOptions, timeout_s: float | None) -> list[str]:
    d = [
        f"--job-name={opts.job_name}:{cell.id}"[:120],
        f"--nodes={cell.nnodes}",
        "--ntasks-per-node=1",
        f"--output={cell_dir}/slurm-%j.out",
        "--open-mode=append",
    ]
    if opts.gres:
        d.append(f"--gpus-per-node={cell.gpus_per_node}")
    if opts.cpus_per_node:
        d.append(f"--cpus-per-task={opts.cpus_per_node}")
    if opts.mem:
        d.append(f"--mem={opts.mem}")
    if opts.exclusive:
        d.append("--exclusive")
    for key, value in (("partition", opts.partition), ("account", opts.account), ("qos", opts.qos)):
        if value:
            d.append(f"--{key}={value}")
    if opts.time:
        d.append(f"--time={opts.time}")
    elif timeout_s is not None:
        d.append(f"--time={slurm_time(timeout_s + opts.time_margin_s)}")
    d += shlex.split(opts.sbatch_args)
    return [f"#SBATCH {x}" for x in d]


def render_script(
    cell: Cell, cell_dir: Path, opts: SlurmOptions, timeout_s: float | None, template: str | None = None
) -> str:
    suite_root = opts.suite_root or str(Path(__file__).resolve().parents[2])
    srun_c, run_c = container_parts(opts, cell_dir, suite_root)
    # Secret-named variables stay out of the file; sbatch hands them to the job from the client's env.
    exports = [f"export {k}={shlex.quote(v)}" for k, v in sorted(cell.env.items()) if not prov.is_secret(k)]
    incell = ["--timeout", f"{timeout_s:g}"] if timeout_s is not None else []
    values = {
        "SBATCH": "\n".join(sbatch_directives(cell, cell_dir, opts, timeout_s)),
        "CELL_ID": cell.full_id,
        "CELL_DIR": shlex.quote(str(cell_dir)),
        "SUITE_ROOT": shlex.quote(suite_root),
        "EXPORTS": "\n".join(exports),
        "RAY_PORT": str(opts.ray_port),
        "SRUN_CONTAINER": shlex.join(srun_c),
        "RUN_CONTAINER": shlex.join(run_c),
        "GPUS_PER_NODE": str(cell.gpus_per_node if opts.gres else 0),
        "RAY_START_ARGS": opts.ray_start_args,
        "NNODES": str(cell.nnodes),
        "RAY_WAIT_S": f"{opts.ray_wait_s:g}",
        "PYTHON": shlex.quote(opts.python),
        "INCELL_ARGS": shlex.join(incell),
    }
    text = template if template is not None else TEMPLATE.read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    left = re.findall(r"\{\{[A-Z_]+\}\}", text)
    if left:
        raise ValueError(f"unfilled placeholders in the sbatch template: {left}")
    return text


# -- job state -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobState:
    state: str  # PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...
    exit_code: int | None = None
    signal: int | None = None

    @property
    def done(self) -> bool:
        return self.state not in (
            "PENDING",
            "CONFIGURING",
            "RUNNING",
            "COMPLETING",
            "SUSPENDED",
            "REQUEUED",
            "RESIZING",
            "SIGNALING",
            "STAGE_OUT",
            "",
        )


def parse_sbatch(out: str) -> str:
    """`sbatch --parsable` prints `jobid` or `jobid;cluster`."""
    job = out.strip().splitlines()[-1].split(";")[0].strip() if out.strip() else ""
    if not job.isdigit():
        raise ValueError(f"unexpected sbatch output: {out!r}")
    return job


def parse_sacct(out: str) -> JobState | None:
    """`sacct -n -P -X -o State,ExitCode`: e.g. `CANCELLED by 0|0:15`."""
    for line in out.strip().splitlines():
        state, _, code = line.partition("|")
        if state:
            rc, _, sig = code.partition(":")
            return JobState(
                state.split()[0].rstrip("+"), int(rc) if rc.isdigit() else None, int(sig) if sig.isdigit() else None
            )
    return None


def parse_scontrol(out: str) -> JobState | None:
    """`scontrol show job -o ID`: `... JobState=COMPLETED ... ExitCode=0:0 ...`."""
    m = re.search(r"\bJobState=(\S+)", out)
    if not m:
        return None
    e = re.search(r"\bExitCode=(\d+):(\d+)", out)
    return JobState(m[1], int(e[1]) if e else None, int(e[2]) if e else None)


def _run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def job_state(job: str) -> JobState:
    """squeue while the job is known there, then sacct, then scontrol (clusters without accounting)."""
    q = _run(["squeue", "-h", "-j", job, "-o", "%T"])
    if q.returncode == 0 and q.stdout.strip():
        return JobState(q.stdout.strip().splitlines()[0])
    a = _run(["sacct", "-n", "-P", "-X", "-j", job, "-o", "State,ExitCode"])
    st = parse_sacct(a.stdout) if a.returncode == 0 else None
    if st is not None:
        return st
    c = _run(["scontrol", "show", "job", "-o", job])
    st = parse_scontrol(c.stdout) if c.returncode == 0 else None
    return st or JobState("UNKNOWN")


# Slurm end states -> result status when the runner wrote no result (it was killed with the job).
SLURM_STATUS = {
    "TIMEOUT": "timeout",
    "DEADLINE": "timeout",
    "OUT_OF_MEMORY": "oom",
    "CANCELLED": "interrupted",
    "PREEMPTED": "interrupted",
}


@dataclass(kw_only=True)
class SlurmJob(Job):
    job: str  # the Slurm job id
    watcher: MetricsWatcher  # started once the job runs: the metrics file lives on the shared filesystem
    state: JobState = JobState("PENDING")
    watching: bool = False


class SlurmRuntime(Runtime[SlurmJob]):
    name = "slurm"
    options_type = SlurmOptions
    checks_topology = True
    options: SlurmOptions

    @property
    def deadline_margin_s(self) -> float:
        # The runner enforces the timeout itself (a clean `timeout` result); this backstop covers Ray start-up
        # that hangs or a runner that cannot stop.
        return self.options.time_margin_s

    # -- the five steps (`gpus` is ignored: Slurm allocates the nodes and their GPUs) ---------------------------
    def describe(self, cell: Cell, cell_dir: Path, *, timeout_s: float | None, gpus: list[int] | None) -> str:
        return f"# sbatch script for {cell.full_id}\n" + render_script(cell, cell_dir, self.options, timeout_s)

    def submit(
        self, cell: Cell, cell_dir: Path, *, timeout_s: float | None, gpus: list[int] | None, on_step: StepCallback
    ) -> SlurmJob:
        path = write_text_atomic(cell_dir / SCRIPT_FILE, render_script(cell, cell_dir, self.options, timeout_s))
        try:
            sub = subprocess.run(
                ["sbatch", "--parsable", str(path)],
                capture_output=True,
                text=True,
                env={**os.environ, **cell.env},
                timeout=120,
            )
        except FileNotFoundError:
            raise InputError(
                "sbatch not found: run on a Slurm login node (or use --dry-run to see the script)",
                field="--runtime slurm",
            ) from None
        if sub.returncode != 0:
            raise InputError(
                f"sbatch refused the job for {cell.full_id}: {sub.stderr.strip() or sub.stdout}",
                field="--runtime slurm",
            )
        job = parse_sbatch(sub.stdout)
        watcher = MetricsWatcher(cellenv.metrics_path(cell, cell_dir), on_step)
        return SlurmJob(
            cell=cell, cell_dir=cell_dir, env=dict(cell.env), extra={"slurm_job": job}, job=job, watcher=watcher
        )

    def status(self, job: SlurmJob) -> State:
        job.state = job_state(job.job)
        if job.state.done:
            return State.DONE
        if job.state.state != "RUNNING":
            return State.PENDING
        if not job.watching:
            job.watcher.start()
            job.watching = True
        return State.RUNNING

    def stop(self, job: SlurmJob) -> str | None:
        """SIGINT to the steps (the runner records its partial result), scancel if the job outlives the grace."""
        o = self.options
        _run(["scancel", "--signal=INT", job.job])
        deadline = time.monotonic() + o.cancel_grace_s
        st = job_state(job.job)
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: cancel at once
            while not st.done and time.monotonic() < deadline:
                time.sleep(min(1.0, o.poll_s))
                st = job_state(job.job)
        if not st.done:
            _run(["scancel", job.job])
            end = time.monotonic() + 60
            while not st.done and time.monotonic() < end:
                time.sleep(1)
                st = job_state(job.job)
        job.state = st
        return f"Slurm job {job.job} cancelled"

    def fetch(self, job: SlurmJob, stopped: Stopped | None) -> Result | NoResult:
        if job.watching:
            job.watcher.stop()
        job.extra["slurm_state"] = job.state.state
        result = _read_result(job.cell_dir)
        if result is not None:
            return result
        st, log = job.state, job.cell_dir / LOG_FILE
        return NoResult(
            f"Slurm job {job.job} ended {st.state} (exit code {st.exit_code}) without a result; see "
            f"{job.cell_dir}/slurm-{job.job}.out",
            SLURM_STATUS.get(st.state),
            st.exit_code or 1,
            log if log.exists() else job.cell_dir / f"slurm-{job.job}.out",
            "slurm" if SLURM_STATUS.get(st.state) == "oom" else None,
        )


def _read_result(cell_dir: Path) -> Result | None:
    p = cell_dir / RESULT_FILE
    for _ in range(10):  # NFS attribute caches can lag the job's end by a few seconds
        if p.exists():
            return try_read_result(p)
        time.sleep(0.5)
    return None


# -- job side: wait for the nodes ------------------------------------------------------------------------
def wait_nodes(nodes: int, timeout_s: float, address: str | None = None) -> int:
    """Connect to the job's Ray cluster (retrying while the head starts) until `nodes` nodes are alive."""
    import ray  # on the job's head node only: the client that renders and submits the script never needs Ray

    deadline = time.monotonic() + timeout_s
    alive = 0
    while time.monotonic() < deadline:
        try:
            if not ray.is_initialized():
                ray.init(address=address or os.environ.get("RAY_ADDRESS"), logging_level="ERROR", log_to_driver=False)
            alive = sum(1 for n in ray.nodes() if n.get("Alive"))
            if alive >= nodes:
                print(f"[grpo-suite] Ray cluster ready: {alive} node(s)", flush=True)
                ray.shutdown()
                return 0
        except Exception as exc:  # the head is not up yet
            print(f"[grpo-suite] waiting for Ray ({type(exc).__name__})", flush=True)
            with contextlib.suppress(Exception):
                ray.shutdown()
        time.sleep(2)
    print(f"[grpo-suite] only {alive} of {nodes} node(s) joined within {timeout_s:g} s", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m suite.run.slurm")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait-nodes", help="wait until N nodes joined the job's Ray cluster")
    w.add_argument("--nodes", type=int, required=True)
    w.add_argument("--timeout", type=float, default=300)
    w.add_argument("--address", default=None)
    args = p.parse_args(argv)
    return wait_nodes(args.nodes, args.timeout, args.address)


if __name__ == "__main__":
    raise SystemExit(main())
