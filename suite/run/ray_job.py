"""`--runtime ray`: each cell is a Ray Job on an existing cluster (Ray Jobs SDK, `ray job submit` semantics).

Client side (`RayJobRuntime`, on the shared lifecycle of suite/run/runtime.py):
  * the cell is relocated to a per-job directory on the cluster (`remote_dir/<submission id>`): every path
    under the local cell dir in its overrides / env is moved there (`Cell.relocated`), so verl's file logger
    and validation dumps land there; `trainer.nnodes` / `trainer.n_gpus_per_node` must equal the matrix's values;
  * the job's runtime env carries a snapshot of the client's `suite` package, `cell.json` and the cell's input
    files (`working_dir`; the bench profile's dataset subsets as the client cut them, `inputs/*.parquet`: the
    overrides that name them point there, relative to the working dir, which Ray unpacks on every node the job
    uses and starts the job's workers in; no full dataset is needed on the cluster for them), and the
    environment (`env_vars`): the cell's env (file-logger path), variables forwarded from the client by name
    (`cellenv.FORWARD_ENV`, the same list docker forwards — secrets included: workers only see what the
    runtime env gives them), and the stop grace (`RAY_JOB_STOP_WAIT_TIME_S`);
  * the job's logs are streamed into `<cell dir>/log.txt` (`tail_job_logs`); step markers drive `on_step`;
  * timeout (counted from RUNNING), `interrupt()` and Ctrl-C call `stop_job`; the job ends STOPPED;
  * the result comes back THROUGH THE JOB'S LOGS: the in-job side prints `result.json` and `metrics.jsonl`
    gzip+base64 in marked, checksummed lines after the run. No shared filesystem between client and
    cluster is needed, and a result that arrives is byte-identical to the one written on the cluster.
    No marker (runtime env setup failed, node lost, job killed before it could print): the result is
    built here from the job's log, status from the job's outcome.

Job side (`python -m suite.run.ray_job --cell cell.json --out DIR`): cuts any input file that did not travel
with the job from its full file there, then runs the cell with the host runtime
exactly as `python -m suite.run.incell` does (same telemetry, same result), echoes `DIR/log.txt` to the job
log as it grows, prints step markers, turns SIGTERM from `stop_job` into an orderly interrupt (the partial
result is still written and sent), and prints the result bundle last.

Secrets: values travel only in the runtime env; results carry the environment redacted (suite.results
.provenance), and the dry run prints the runtime env redacted. Ray keeps a job's runtime env in its job
table, readable by whoever can reach the dashboard.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gzip
import hashlib
import json
import os
import queue
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import suite
from suite.data.subset import write_subset, write_subsets
from suite.errors import InputError
from suite.plan.cell import Cell
from suite.results import provenance as prov
from suite.results.io import parse_result, try_read_result, write_result, write_text_atomic
from suite.results.schema import Result
from suite.run import cellenv
from suite.run.cellio import load_cell, write_cell
from suite.run.files import CELL_FILE, LOG_FILE, METRICS_FILE, RESULT_FILE
from suite.run.options import RuntimeOptions, split_list
from suite.run.runtime import Job, NoResult, NotRun, Runtime, State, StepCallback, Stopped
from suite.telemetry.tail import LineTail

MARK = "@@grpo-suite:"
STEP_RE = re.compile(r"^@@grpo-suite:step (\d+)\s*$")
BUNDLE_RE = re.compile(r"^@@grpo-suite:bundle (\d+)/(\d+) ([0-9a-f]{64}) ([A-Za-z0-9+/=]*)\s*$")
BUNDLE_CHUNK = 8000  # characters of base64 per log line: well under any log pipeline's line limit
BUNDLE_MAX_METRICS = 16 * 2**20  # metrics.jsonl larger than this stays on the cluster (the result has the steps)
INPUTS_DIR = "inputs"  # the cell's input files, in the job's working dir
# What a job ships of them at most: Ray uploads the working dir in one gRPC message (512 MiB by default, less
# where RAY_max_grpc_message_size says so) and warns from half of that; bench subsets are a few MiB.
INPUTS_MAX_BYTES = 100 * 2**20


@dataclass(frozen=True)
class RayOptions(RuntimeOptions):
    address: str | None = None  # Ray dashboard address, e.g. http://head:8265 (default: $RAY_ADDRESS)
    python: str = "python3"  # interpreter on the cluster
    remote_dir: str = "/tmp/grpo-suite-ray"  # per-job cell dirs on the node running the entrypoint
    forward_env: str = ""  # extra names / globs to forward, comma separated (added to cellenv.FORWARD_ENV)
    stop_wait_s: float = 60.0  # SIGTERM -> SIGKILL wait on the cluster: lets the cell record its partial result
    pending_timeout_s: float = 1800.0  # give up on a job that never starts (runtime env setup, no resources)
    remote_margin_s: float = 300.0  # in-job timeout = timeout + this: a backstop if the client goes away
    poll_s: float = 1.0
    entrypoint_num_cpus: float | None = None  # resources reserved for the entrypoint (default: none, on the head)


def submission_id(cell: Cell) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", cell.full_id).strip("-")[:80]
    return f"grpo-suite-{slug}-{uuid.uuid4().hex[:8]}"


def encode_bundle(files: Mapping[str, str]) -> list[str]:
    """Marker lines carrying `files` (name -> text): gzip + base64, chunked, with the payload's sha256."""
    raw = gzip.compress(json.dumps(dict(files), sort_keys=True).encode(), mtime=0)
    b64 = base64.b64encode(raw).decode()
    digest = hashlib.sha256(raw).hexdigest()
    chunks = [b64[i : i + BUNDLE_CHUNK] for i in range(0, len(b64), BUNDLE_CHUNK)] or [""]
    return [f"{MARK}bundle {i + 1}/{len(chunks)} {digest} {c}" for i, c in enumerate(chunks)]


def decode_bundle(lines: Iterable[str]) -> dict[str, str] | None:
    """The last complete, intact bundle in a log (None if there is none). Ray may prefix or interleave
    other output, so only whole marker lines count, and the checksum must match."""
    parts: dict[str, dict[int, str]] = {}
    totals: dict[str, int] = {}
    order: list[str] = []
    for line in lines:
        m = BUNDLE_RE.match(line.strip())
        if not m:
            continue
        i, n, digest, chunk = int(m[1]), int(m[2]), m[3], m[4]
        if digest not in parts:
            parts[digest], totals[digest] = {}, n
            order.append(digest)
        parts[digest][i] = chunk
    for digest in reversed(order):
        got = parts[digest]
        if set(got) != set(range(1, totals[digest] + 1)):
            continue
        raw = base64.b64decode("".join(got[i] for i in sorted(got)))
        if hashlib.sha256(raw).hexdigest() != digest:
            continue
        files = json.loads(gzip.decompress(raw))
        if isinstance(files, dict):
            return {str(k): str(v) for k, v in files.items()}
    return None


def strip_bundle(text: str) -> str:
    """The job log without the (large, unreadable) bundle lines."""
    return "".join(x for x in text.splitlines(keepends=True) if not x.startswith(f"{MARK}bundle "))


def secret_values(env: Mapping[str, str]) -> list[str]:
    return sorted({v for k, v in env.items() if prov.is_secret(k) and len(v) >= 4}, key=len, reverse=True)


def _hide(text: str, secrets: Sequence[str]) -> str:
    for v in secrets:
        text = text.replace(v, prov.REDACTED)
    return text


def scrub(result: Result, secrets: Sequence[str] = ()) -> Result:
    """Secrets never land in results. Redacting by name is not enough inside a Ray job: Ray hands the
    driver `RAY_JOB_CONFIG_JSON_ENV_VAR`, the whole runtime env as JSON, secret values included, under a
    harmless name. So the values themselves are hidden wherever they appear, then the names redacted."""
    p = result.provenance
    env = {k: _hide(v, secrets) for k, v in p.env.items()}
    argv = [_hide(a, secrets) for a in p.argv]
    p = p.model_copy(update={"env": prov.redact_env(env), "argv": prov.redact_argv(argv)})
    return result.model_copy(update={"provenance": p})


# -- the job spec ----------------------------------------------------------------------------------------
@dataclass
class JobSpec:
    submission_id: str
    entrypoint: str
    runtime_env: dict[str, Any]
    metadata: dict[str, str]
    remote_dir: str
    entrypoint_num_cpus: float | None = None
    secrets: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)  # path in the working dir -> the client's file

    def redacted(self) -> dict[str, Any]:
        env = self.runtime_env.get("env_vars", {})
        shown = {**self.runtime_env, "env_vars": prov.redact_env(env)}
        return {
            "submission_id": self.submission_id,
            "entrypoint": self.entrypoint,
            "runtime_env": shown,
            "metadata": self.metadata,
            "entrypoint_num_cpus": self.entrypoint_num_cpus,
            "inputs": self.inputs,
        }


def job_env(cell_env: Mapping[str, str], forwarded: Mapping[str, str], *, stop_wait_s: float) -> dict[str, str]:
    env = {**forwarded, **cell_env}
    env["PYTHONUNBUFFERED"] = "1"
    # Read by the job supervisor: how long after SIGTERM (stop_job) before SIGKILL.
    env["RAY_JOB_STOP_WAIT_TIME_S"] = str(int(stop_wait_s))
    # verl passes `+ray_kwargs.ray_init.runtime_env.env_vars.*` (the file-logger path) to ray.init(); inside a
    # job Ray refuses a key that the job's runtime env also sets unless told to let the driver's win.
    env["RAY_OVERRIDE_JOB_RUNTIME_ENV"] = "1"
    return env


def entrypoint(python: str, remote_dir: str, timeout_s: float | None) -> str:
    argv = [python, "-m", "suite.run.ray_job", "--cell", CELL_FILE, "--out", remote_dir]
    if timeout_s is not None:
        argv += ["--timeout", f"{timeout_s:g}"]
    return "exec " + shlex.join(argv)


def input_names(cell: Cell, cell_dir: Path) -> dict[str, str]:
    """Where each input file of the cell (a key of `inputs`: the client's path) travels: a path relative to the
    job's working dir, `inputs/<its path under inputs/ of the cell dir>` (the planner's `inputs/train.parquet`
    stays `inputs/train.parquet`), else `inputs/<hash of the path>/<file name>`. Relative, because Ray unpacks
    the working dir on every node the job uses and starts the job's workers in it (verl's TaskRunner, which
    loads the data, may run on any of them), and verl keeps a job's working dir for its own Ray workers."""
    base, names = Path(cell_dir), {}
    for dest in cell.inputs:
        p = Path(dest)
        rel = p.relative_to(base).parts if p.is_absolute() and p.is_relative_to(base) else ()
        if len(rel) > 1 and rel[0] == INPUTS_DIR and ".." not in rel:
            names[dest] = "/".join(rel)
        else:
            names[dest] = f"{INPUTS_DIR}/{hashlib.sha256(dest.encode()).hexdigest()[:12]}/{p.name or 'input'}"
    return names


def build_spec(
    cell: Cell,
    cell_dir: Path,
    *,
    working_dir: str,
    environ: Mapping[str, str],
    opts: RayOptions,
    timeout_s: float | None,
) -> tuple[JobSpec, Cell]:
    sid = submission_id(cell)
    remote = f"{opts.remote_dir.rstrip('/')}/{sid}"
    names = input_names(cell, cell_dir)
    # Inputs first: they travel with the job (relative paths), whatever else of the cell dir moves to `remote`.
    rcell = cell.with_inputs_at(names).relocated(cell_dir, remote)
    fwd = cellenv.forwarded_env(environ, split_list(opts.forward_env))
    env = job_env(rcell.env, fwd, stop_wait_s=opts.stop_wait_s)
    remote_timeout = None if timeout_s is None else timeout_s + opts.remote_margin_s
    spec = JobSpec(
        submission_id=sid,
        entrypoint=entrypoint(opts.python, remote, remote_timeout),
        # Uploaded bytes only: `__pycache__` of the client's Python would be useless there.
        runtime_env={"working_dir": working_dir, "env_vars": env, "excludes": ["__pycache__", "*.pyc"]},
        metadata={"grpo_suite_cell": cell.full_id, "grpo_suite_matrix": cell.matrix},
        remote_dir=remote,
        entrypoint_num_cpus=opts.entrypoint_num_cpus,
        secrets=sorted(k for k in env if prov.is_secret(k)),
        inputs={name: dest for dest, name in names.items()},
    )
    return spec, rcell


def stage_working_dir(rcell: Cell, dest: Path, inputs: Mapping[str, str] | None = None) -> Path:
    """`cell.json`, a snapshot of this `suite` package (the cluster runs the client's code) and the cell's input
    files (`inputs`: path in the working dir -> the client's file; a file the client has not made yet is cut
    here from its full file). An InputError names an input that cannot be made or is too large to ship."""
    stage_inputs(rcell, dest, inputs or {})
    write_cell(dest, rcell)
    shutil.copytree(
        Path(suite.__file__).parent,
        dest / "suite",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        dirs_exist_ok=True,
    )
    return dest


def stage_inputs(rcell: Cell, dest: Path, inputs: Mapping[str, str]) -> None:
    total = 0
    for name, local in inputs.items():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if Path(local).is_file():
            shutil.copyfile(local, target)
        else:  # the run CLI made it already (prepare.ensure_inputs); a cell run on its own may not have
            write_subset(target, rcell.inputs[name])  # type: ignore[arg-type]
        total += target.stat().st_size
    if total > INPUTS_MAX_BYTES:
        raise InputError(
            f"the cell's input files ({', '.join(inputs)}) hold {total / 2**20:.1f} MiB; a Ray job ships at most "
            f"{INPUTS_MAX_BYTES / 2**20:.0f} MiB of them with its working dir. Use a profile with subset_data = "
            "false: the cell then reads the full dataset files from the cluster's own copy",
            field="inputs",
        )


# -- client ----------------------------------------------------------------------------------------------
class _LogTail(threading.Thread):
    """Streams a job's log (websocket, `tail_job_logs`) into a queue from its own event loop."""

    def __init__(self, client: Any, sid: str) -> None:
        super().__init__(name=f"ray-logs-{sid}", daemon=True)
        self.client, self.sid = client, sid
        self.chunks: queue.Queue[str] = queue.Queue()
        self.error: BaseException | None = None

    def run(self) -> None:
        async def follow() -> None:
            async for chunk in self.client.tail_job_logs(self.sid):
                self.chunks.put(chunk)

        try:
            asyncio.run(follow())
        except Exception as exc:  # the final get_job_logs() still gets everything
            self.error = exc


@dataclass(kw_only=True)
class RayJob(Job):
    spec: JobSpec
    tail: _LogTail
    log: IO[str]
    on_step: StepCallback
    pending: str = ""  # the start of a line the stream has not finished
    reported: set[int] = field(default_factory=set)
    job_status: Any = None  # ray.job_submission.JobStatus, as last seen


class RayJobRuntime(Runtime[RayJob]):
    name = "ray"
    options_type = RayOptions
    checks_topology = True
    options: RayOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.address = self.options.address or os.environ.get("RAY_ADDRESS")
        if not self.address and not self.options.dry_run:
            raise InputError(
                "no Ray cluster given; pass --address http://HEAD:8265 (the dashboard, which serves "
                "the Jobs API) or set RAY_ADDRESS",
                field="--address",
            )
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def pending_limit_s(self) -> float | None:
        return self.options.pending_timeout_s

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                # Ray's SDK takes seconds to import: only a run that submits pays for it.
                from ray.job_submission import JobSubmissionClient

                try:
                    self._client = JobSubmissionClient(self.address)
                except Exception as exc:
                    raise InputError(
                        f"cannot reach the Ray Jobs API at {self.address!r}: {exc}", field="--address"
                    ) from None
            return self._client

    # -- the five steps (`gpus` is ignored: Ray places verl's workers on the GPUs it manages) -------------------
    def describe(self, cell: Cell, cell_dir: Path, *, timeout_s: float | None, gpus: list[int] | None) -> str:
        spec, _ = build_spec(
            cell, cell_dir, working_dir="<staged>", environ=os.environ, opts=self.options, timeout_s=timeout_s
        )
        return f"# ray job for {cell.full_id} at {self.address or '$RAY_ADDRESS'}\n" + json.dumps(
            spec.redacted(), indent=2, sort_keys=True
        )

    def submit(
        self, cell: Cell, cell_dir: Path, *, timeout_s: float | None, gpus: list[int] | None, on_step: StepCallback
    ) -> RayJob:
        with tempfile.TemporaryDirectory(prefix="grpo-suite-ray-") as tmp:
            spec, rcell = build_spec(
                cell,
                cell_dir,
                working_dir=str(Path(tmp) / "job"),
                environ=os.environ,
                opts=self.options,
                timeout_s=timeout_s,
            )
            try:  # before the cluster is asked anything: a cell whose inputs cannot travel is not submitted
                stage_working_dir(rcell, Path(spec.runtime_env["working_dir"]), spec.inputs)
            except InputError as exc:
                raise NotRun(
                    "crash", f"the inputs of {cell.full_id} cannot be shipped with its Ray job: {exc}"
                ) from None
            client = self.client()
            try:  # uploads the staged directory before it returns
                client.submit_job(
                    entrypoint=spec.entrypoint,
                    runtime_env=spec.runtime_env,
                    submission_id=spec.submission_id,
                    metadata=spec.metadata,
                    entrypoint_num_cpus=spec.entrypoint_num_cpus,
                )
            except Exception as exc:
                raise InputError(f"Ray refused the job for {cell.full_id}: {exc}", field="--address") from None
        tail = _LogTail(client, spec.submission_id)
        tail.start()
        extra = {"ray_job": spec.submission_id, "ray_address": str(self.address), "remote_dir": spec.remote_dir}
        log = open(cell_dir / LOG_FILE, "w", encoding="utf-8")  # noqa: SIM115 -- closed by fetch
        return RayJob(
            cell=cell,
            cell_dir=cell_dir,
            env=dict(cell.env),
            extra=extra,
            spec=spec,
            tail=tail,
            log=log,
            on_step=on_step,
        )

    def _drain(self, job: RayJob) -> None:
        """The log lines streamed so far: into log.txt (bundle lines left out), step markers to on_step."""
        while True:
            try:
                job.pending += job.tail.chunks.get_nowait()
            except queue.Empty:
                break
        *lines, job.pending = job.pending.split("\n")
        for line in lines:
            if m := STEP_RE.match(line):
                job.reported.add(int(m[1]))
                job.on_step(int(m[1]))
            if not line.startswith(f"{MARK}bundle "):
                job.log.write(line + "\n")
        job.log.flush()

    def status(self, job: RayJob) -> State:
        self._drain(job)
        job.job_status = self.client().get_job_status(job.spec.submission_id)
        if job.job_status.is_terminal():
            return State.DONE
        return State.RUNNING if str(job.job_status.value) == "RUNNING" else State.PENDING

    def stop(self, job: RayJob) -> str | None:
        """stop_job, then wait for the job to end (its cell records a partial result meanwhile). A second
        Ctrl-C stops the waiting, not the job stop already requested."""
        client, sid = self.client(), job.spec.submission_id
        with contextlib.suppress(Exception):
            client.stop_job(sid)
        deadline = time.monotonic() + self.options.stop_wait_s + 30
        with contextlib.suppress(KeyboardInterrupt):
            while time.monotonic() < deadline:
                job.job_status = client.get_job_status(sid)
                if job.job_status.is_terminal():
                    break
                time.sleep(0.5)
        return f"Ray job {sid} stopped"

    def fetch(self, job: RayJob, stopped: Stopped | None) -> Result | NoResult:
        client, sid = self.client(), job.spec.submission_id
        job.tail.join(timeout=2)  # the websocket closes when the job ends; take what it still carries
        self._drain(job)
        job.log.close()
        try:
            full = client.get_job_logs(sid)
        except Exception:
            full = None
        if full is not None:
            if log_is_complete(full, job.reported):
                write_text_atomic(job.cell_dir / LOG_FILE, strip_bundle(full))
            # else the streamed log.txt stays: the log Ray returned lacks step markers the stream delivered
            for line in full.splitlines():  # steps the stream had not delivered when the job ended
                if (m := STEP_RE.match(line)) and int(m[1]) not in job.reported:
                    job.on_step(int(m[1]))
        job_status = str(getattr(job.job_status, "value", job.job_status))
        job.extra["ray_job_status"] = job_status
        bundle = decode_bundle(full.splitlines()) if full else None
        if bundle and METRICS_FILE in bundle:
            write_text_atomic(cellenv.metrics_path(job.cell, job.cell_dir), bundle[METRICS_FILE])
        if bundle and RESULT_FILE in bundle:
            with contextlib.suppress(InputError):  # a result that does not read counts as none
                result = parse_result(bundle[RESULT_FILE], source=f"Ray job {sid}")
                return scrub(result, secret_values(job.spec.runtime_env.get("env_vars", {})))
        if job_status == "SUCCEEDED":
            return NoResult(f"Ray job {sid} succeeded but sent no result", "crash")
        try:
            message = client.get_job_info(sid).message
        except Exception:
            message = None
        # no status: the log is classified (OOM lines, tracebacks) like any other failed run
        return NoResult(f"Ray job {sid} {job_status}: {message or 'no result'}", exit_code=1)


def log_is_complete(full: str, streamed_steps: set[int]) -> bool:
    """Whether a job's log as Ray returns it at the end holds every step marker its stream delivered. Seen once
    on a loaded 2-core machine: the final log lacked the lines before the last step that the stream had carried,
    so replacing the streamed log.txt with it would lose them."""
    return streamed_steps <= {int(m[1]) for line in full.splitlines() if (m := STEP_RE.match(line))}


# -- job side --------------------------------------------------------------------------------------------
class _Echo(LineTail):
    """Copies complete lines of the cell's log to stdout (the job log) as they are written."""

    name = "log-echo"

    def __init__(self, path: Path, emit: Callable[[str], None], poll_s: float = 0.2) -> None:
        super().__init__(path, poll_s)
        self.emit = emit

    def on_lines(self, lines: list[str]) -> None:
        for line in lines:
            self.emit(line)

    def finish(self) -> None:
        self.stop()
        if (rest := self.take_partial()) is not None:
            self.emit(rest)


def job_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m suite.run.ray_job", description="Run one cell inside a Ray job and print its result bundle."
    )
    parser.add_argument("--cell", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--timeout", type=float, default=None)
    args = parser.parse_args(argv)

    from suite.run.host import HostRuntime  # the job side only: the client never loads the samplers

    lock = threading.Lock()

    def emit(line: str) -> None:
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    try:
        cell = load_cell(args.cell)
        # The bench profile's dataset subsets travel with the job (the working dir, which is the cwd here); one
        # that did not (a cell.json written by hand, an older client) is cut here from the full file.
        write_subsets([{d: s for d, s in cell.inputs.items() if not Path(d).is_file()}])  # type: ignore[misc]
    except InputError as exc:
        print(f"suite.run.ray_job: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    runtime = HostRuntime(record_as="ray")
    # stop_job sends SIGTERM: stop verl in order so the partial result is still written and sent back.
    signal.signal(signal.SIGTERM, lambda *_: runtime.interrupt())
    echo = _Echo(out / LOG_FILE, emit)
    echo.start()
    code = 1
    try:
        result = runtime.run_cell(cell, out, on_step=lambda n: emit(f"{MARK}step {n}"), timeout_s=args.timeout)
        code = 0 if result.status == "ok" else (130 if result.status == "interrupted" else 1)
    except KeyboardInterrupt:
        code = 130
    finally:
        echo.finish()
    files: dict[str, str] = {}
    if (written := try_read_result(out / RESULT_FILE)) is not None:
        write_result(out / RESULT_FILE, scrub(written, secret_values(os.environ)))  # the copy left here is clean too
    if (out / RESULT_FILE).exists():
        files[RESULT_FILE] = (out / RESULT_FILE).read_text()
    metrics = cellenv.metrics_path(cell, out)
    if metrics.exists() and metrics.stat().st_size <= BUNDLE_MAX_METRICS:
        files[METRICS_FILE] = metrics.read_text(errors="replace")
    for line in encode_bundle(files):
        emit(line)
    return code


if __name__ == "__main__":
    raise SystemExit(job_main())
