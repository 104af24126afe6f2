"""`--runtime ray`: each cell is a Ray Job on an existing cluster (Ray Jobs SDK, `ray job submit` semantics).

Client side (`RayJobRuntime.run_cell`):
  * the cell is relocated to a per-job directory on the cluster (`remote_dir/<submission id>`): every
    occurrence of the local cell dir in its argv / env is rewritten, so verl's file logger and validation
    dumps land there; `trainer.nnodes` / `trainer.n_gpus_per_node` must equal the matrix's values;
  * the job's runtime env carries a snapshot of the client's `suite` package and `cell.json`
    (`working_dir`), and the environment (`env_vars`): the cell's env (file-logger path), variables
    forwarded from the client by name (NCCL_*, HF_TOKEN, ... — secrets included: workers only see what
    the runtime env gives them), and the stop grace (`RAY_JOB_STOP_WAIT_TIME_S`);
  * the job's logs are streamed into `<cell dir>/log.txt` (`tail_job_logs`); step markers drive `on_step`;
  * timeout (counted from RUNNING), `interrupt()` and Ctrl-C call `stop_job`; the job ends STOPPED;
  * the result comes back THROUGH THE JOB'S LOGS: the in-job side prints `result.json` and `metrics.jsonl`
    gzip+base64 in marked, checksummed lines after the run. No shared filesystem between client and
    cluster is needed, and a result that arrives is byte-identical to the one written on the cluster.
    No marker (runtime env setup failed, node lost, job killed before it could print): the result is
    built here from the job's log, status from the job's outcome.

Job side (`python -m suite.run.ray_job --cell cell.json --out DIR`): runs the cell with the host runtime
exactly as `python -m suite.run.incell` does (same telemetry, same result), echoes `DIR/log.txt` to the job
log as it grows, prints step markers, turns SIGTERM from `stop_job` into an orderly interrupt (the partial
result is still written and sent), and prints the result bundle last.

Secrets: values travel only in the runtime env; results carry the environment redacted (suite.results
.provenance), and the dry run prints the runtime env redacted. Ray keeps a job's runtime env in its job
table, readable by whoever can reach the dashboard.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fnmatch
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from suite.errors import InputError
from suite.plan.cell import Cell
from suite.results import provenance as prov
from suite.results.build import CellInfo, Observation, build_result
from suite.results.io import write_result, write_text_atomic
from suite.results.schema import Result
from suite.run import cellenv
from suite.run.runtime import CELL_FILE, LOG_FILE, METRICS_FILE, RESULT_FILE, StepCallback, unrun_status

MARK = "@@grpo-suite:"
STEP_RE = re.compile(r"^@@grpo-suite:step (\d+)\s*$")
BUNDLE_RE = re.compile(r"^@@grpo-suite:bundle (\d+)/(\d+) ([0-9a-f]{64}) ([A-Za-z0-9+/=]*)\s*$")
BUNDLE_CHUNK = 8000  # characters of base64 per log line: well under any log pipeline's line limit
BUNDLE_MAX_METRICS = 16 * 2**20  # metrics.jsonl larger than this stays on the cluster (the result has the steps)

# Forwarded from the client's environment by default: NCCL/Gloo network settings must match the cluster's
# fabric, and hub/tracker tokens are needed by verl's workers, which only see the runtime env.
DEFAULT_FORWARD = ("NCCL_*", "GLOO_*", "TP_SOCKET_IFNAME", "UCX_*", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                   "HF_ENDPOINT", "WANDB_API_KEY", "WANDB_BASE_URL")

OPTIONS: dict[str, Any] = {
    "address": None,  # Ray dashboard address, e.g. http://head:8265 (default: $RAY_ADDRESS)
    "dry_run": False,
    "python": "python3",  # interpreter on the cluster
    "remote_dir": "/tmp/grpo-suite-ray",  # per-job cell dirs on the node running the entrypoint
    "forward_env": "",  # extra names / globs to forward, comma separated (added to DEFAULT_FORWARD)
    "stop_wait_s": 60.0,  # SIGTERM -> SIGKILL wait on the cluster: lets the cell record its partial result
    "pending_timeout_s": 1800.0,  # give up on a job that never starts (runtime env setup, no resources)
    "remote_margin_s": 300.0,  # in-job timeout = timeout + this: a backstop if the client goes away
    "poll_s": 1.0,
    "entrypoint_num_cpus": None,  # resources reserved for the entrypoint (default: none, runs on the head)
}


# -- small pure helpers (also used by the Slurm runtime) -------------------------------------------------
def coerce_options(defaults: Mapping[str, Any], options: Mapping[str, Any], runtime: str) -> dict[str, Any]:
    """Merge keyword options over defaults. `--runtime-option KEY=VALUE` hands strings: convert them to the
    default's type. None means "not given" (the run CLI passes address=None to every runtime)."""
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise InputError(f"option(s) {', '.join(unknown)} not supported by the {runtime} runtime; "
                         f"allowed: {', '.join(defaults)}", field=f"--runtime {runtime}")
    out = dict(defaults)
    for k, v in given.items():
        d = defaults[k]
        try:
            if isinstance(d, bool):
                v = v if isinstance(v, bool) else _parse_bool(str(v))
            elif isinstance(d, float):
                v = float(v)
            elif isinstance(d, int):
                v = int(v)
        except ValueError:
            raise InputError(f"bad value {v!r} for option {k!r}; expected {type(d).__name__}",
                             field=f"--runtime {runtime}") from None
        out[k] = v
    return out


def _parse_bool(s: str) -> bool:
    low = s.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(s)


def forwarded_env(environ: Mapping[str, str], patterns: Iterable[str]) -> dict[str, str]:
    pats = [p.strip() for p in patterns if p.strip()]
    return {k: v for k, v in sorted(environ.items()) if any(fnmatch.fnmatchcase(k, p) for p in pats)}


def relocate(cell: Cell, src: Path, dst: str) -> Cell:
    """The same cell with every mention of its local directory pointing at `dst` on the cluster."""
    s = str(src)
    sub = (lambda v: v.replace(s, dst)) if s not in ("", "/") else (lambda v: v)
    return replace(cell, argv=[sub(a) for a in cell.argv], env={k: sub(v) for k, v in cell.env.items()})


def topology_problem(cell: Cell) -> str | None:
    """verl must be told the matrix's node layout: a raw override that changes it would make results lie
    about their world size."""
    want = {"trainer.nnodes": cell.nnodes, "trainer.n_gpus_per_node": cell.gpus_per_node}
    for key, value in want.items():
        got = cellenv.override_value(cell.argv, key)
        if got is None:
            return f"topology: the cell's command does not set {key} (matrix: {value})"
        if got.strip("'\"") != str(value):
            return f"topology: {key}={got} in the cell's command, but the matrix says {value}"
    return None


def submission_id(cell: Cell) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", cell.full_id).strip("-")[:80]
    return f"grpo-suite-{slug}-{uuid.uuid4().hex[:8]}"


def encode_bundle(files: Mapping[str, str]) -> list[str]:
    """Marker lines carrying `files` (name -> text): gzip + base64, chunked, with the payload's sha256."""
    raw = gzip.compress(json.dumps(dict(files), sort_keys=True).encode(), mtime=0)
    b64 = base64.b64encode(raw).decode()
    digest = hashlib.sha256(raw).hexdigest()
    chunks = [b64[i:i + BUNDLE_CHUNK] for i in range(0, len(b64), BUNDLE_CHUNK)] or [""]
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


def record_local(cell: Cell, cell_dir: Path, status: str, reason: str | None, *, runtime: str,
                 env: Mapping[str, str], log: Path | None = None, metrics: Path | None = None,
                 exit_code: int | None = None, extra: Mapping[str, str] | None = None,
                 write: bool = True) -> Result:
    """A result built on the client when the cell's own result never arrived (or the cell never ran)."""
    # The client runs no sampler (verl is on the cluster): NVML and host-memory fields stay None here; the
    # in-job runner (host runtime) fills them when its own result arrives.
    obs = Observation(metrics_path=metrics if metrics and metrics.exists() else None,
                      log_path=log if log and log.exists() else None,
                      exit_code=exit_code, status=status or None, reason=reason)
    provenance = prov.collect(argv=cell.argv, env=env, runtime=runtime, model_source=cell.model, extra=extra)
    result = build_result(CellInfo.from_cell(cell), obs, provenance)
    if write:
        write_result(cell_dir / RESULT_FILE, result)
    return result


def secret_values(env: Mapping[str, str]) -> list[str]:
    return sorted({v for k, v in env.items() if prov.is_secret(k) and len(v) >= 4}, key=len, reverse=True)


def _hide(text: str, secrets: Sequence[str]) -> str:
    for v in secrets:
        text = text.replace(v, prov.REDACTED)
    return text


def scrub(result: Result, extra: Mapping[str, str], secrets: Sequence[str] = ()) -> Result:
    """Secrets never land in results. Redacting by name is not enough inside a Ray job: Ray hands the
    driver `RAY_JOB_CONFIG_JSON_ENV_VAR`, the whole runtime env as JSON, secret values included, under a
    harmless name. So the values themselves are hidden wherever they appear, then the names redacted."""
    p = result.provenance
    env = {k: _hide(v, secrets) for k, v in p.env.items()}
    argv = [_hide(a, secrets) for a in p.argv]
    p = p.model_copy(update={"env": prov.redact_env(env), "argv": prov.redact_argv(argv),
                             "extra": {**p.extra, **{k: prov.redact_value(v) for k, v in extra.items()}}})
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

    def redacted(self) -> dict[str, Any]:
        env = self.runtime_env.get("env_vars", {})
        shown = {**self.runtime_env, "env_vars": prov.redact_env(env)}
        return {"submission_id": self.submission_id, "entrypoint": self.entrypoint, "runtime_env": shown,
                "metadata": self.metadata, "entrypoint_num_cpus": self.entrypoint_num_cpus}


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


def build_spec(cell: Cell, cell_dir: Path, *, working_dir: str, environ: Mapping[str, str],
               opts: Mapping[str, Any], timeout_s: float | None) -> tuple[JobSpec, Cell]:
    sid = submission_id(cell)
    remote = f"{str(opts['remote_dir']).rstrip('/')}/{sid}"
    rcell = relocate(cell, cell_dir, remote)
    patterns = [*DEFAULT_FORWARD, *str(opts["forward_env"] or "").split(",")]
    fwd = forwarded_env(environ, patterns)
    env = job_env(rcell.env, fwd, stop_wait_s=float(opts["stop_wait_s"]))
    remote_timeout = None if timeout_s is None else timeout_s + float(opts["remote_margin_s"])
    spec = JobSpec(
        submission_id=sid,
        entrypoint=entrypoint(str(opts["python"]), remote, remote_timeout),
        # Uploaded bytes only: `__pycache__` of the client's Python would be useless there.
        runtime_env={"working_dir": working_dir, "env_vars": env, "excludes": ["__pycache__", "*.pyc"]},
        metadata={"grpo_suite_cell": cell.full_id, "grpo_suite_matrix": cell.matrix},
        remote_dir=remote,
        entrypoint_num_cpus=opts.get("entrypoint_num_cpus"),
        secrets=sorted(k for k in env if prov.is_secret(k)),
    )
    return spec, rcell


def stage_working_dir(rcell: Cell, dest: Path) -> Path:
    """`cell.json` plus a snapshot of this `suite` package: the cluster runs the client's code."""
    import suite

    dest.mkdir(parents=True, exist_ok=True)
    write_text_atomic(dest / CELL_FILE, json.dumps(rcell.to_dict(), indent=2, sort_keys=True) + "\n")
    shutil.copytree(Path(suite.__file__).parent, dest / "suite",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
    return dest


# -- client ----------------------------------------------------------------------------------------------
class _LogTail(threading.Thread):
    """Streams a job's log (websocket, `tail_job_logs`) into a queue from its own event loop."""

    def __init__(self, client: Any, sid: str) -> None:
        super().__init__(name=f"ray-logs-{sid}", daemon=True)
        self.client, self.sid = client, sid
        self.chunks: queue.Queue[str] = queue.Queue()
        self.error: BaseException | None = None

    def run(self) -> None:
        import asyncio

        async def follow() -> None:
            async for chunk in self.client.tail_job_logs(self.sid):
                self.chunks.put(chunk)

        try:
            asyncio.run(follow())
        except Exception as exc:  # the final get_job_logs() still gets everything
            self.error = exc


class RayJobRuntime:
    name = "ray"

    def __init__(self, **options: Any) -> None:
        self.opts = coerce_options(OPTIONS, options, self.name)
        self.address = self.opts["address"] or os.environ.get("RAY_ADDRESS")
        if not self.address and not self.opts["dry_run"]:
            raise InputError("no Ray cluster given; pass --address http://HEAD:8265 (the dashboard, which serves "
                             "the Jobs API) or set RAY_ADDRESS", field="--address")
        self.poll_s = float(self.opts["poll_s"])
        self._client: Any = None
        self._lock = threading.Lock()
        self._cancel = threading.Event()

    def interrupt(self) -> None:
        """Stop every job in flight (recorded `interrupted`) and submit no more."""
        self._cancel.set()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from ray.job_submission import JobSubmissionClient

                try:
                    self._client = JobSubmissionClient(self.address)
                except Exception as exc:
                    raise InputError(f"cannot reach the Ray Jobs API at {self.address!r}: {exc}",
                                     field="--address") from None
            return self._client

    def run_cell(self, cell: Cell, cell_dir: Path, *, timeout_s: float | None = None,
                 gpus: list[int] | None = None, on_step: StepCallback | None = None) -> Result:
        # `gpus` is ignored: on a cluster, Ray places verl's workers on the GPUs it manages.
        cell_dir = Path(cell_dir).absolute()
        if unrun := unrun_status(cell):
            cell_dir.mkdir(parents=True, exist_ok=True)
            return record_local(cell, cell_dir, *unrun, runtime=self.name, env=cell.env,
                                write=not self.opts["dry_run"])
        problem = topology_problem(cell)
        if problem:
            cell_dir.mkdir(parents=True, exist_ok=True)
            return record_local(cell, cell_dir, "invalid", problem, runtime=self.name, env=cell.env,
                                write=not self.opts["dry_run"])
        with tempfile.TemporaryDirectory(prefix="grpo-suite-ray-") as tmp:
            spec, rcell = build_spec(cell, cell_dir, working_dir=str(Path(tmp) / "job"), environ=os.environ,
                                     opts=self.opts, timeout_s=timeout_s)
            if self.opts["dry_run"]:
                print(f"# ray job for {cell.full_id} at {self.address or '$RAY_ADDRESS'}")
                print(json.dumps(spec.redacted(), indent=2, sort_keys=True))
                return record_local(cell, cell_dir, "skipped", "dry run", runtime=self.name, env=cell.env,
                                    write=False)
            if self._cancel.is_set():
                raise KeyboardInterrupt
            stage_working_dir(rcell, Path(spec.runtime_env["working_dir"]))
            client = self.client()
            cell_dir.mkdir(parents=True, exist_ok=True)
            for name in (RESULT_FILE, LOG_FILE):
                (cell_dir / name).unlink(missing_ok=True)
            try:
                client.submit_job(entrypoint=spec.entrypoint, runtime_env=spec.runtime_env,
                                  submission_id=spec.submission_id, metadata=spec.metadata,
                                  entrypoint_num_cpus=spec.entrypoint_num_cpus)
            except Exception as exc:
                raise InputError(f"Ray refused the job for {cell.full_id}: {exc}", field="--address") from None
        return self._follow(cell, cell_dir, spec, timeout_s, on_step)

    # -- following one job ---------------------------------------------------------------------------
    def _follow(self, cell: Cell, cell_dir: Path, spec: JobSpec, timeout_s: float | None,
                on_step: StepCallback | None) -> Result:
        from ray.job_submission import JobStatus

        client, sid = self.client(), spec.submission_id
        tail = _LogTail(client, sid)
        tail.start()
        outcome: str | None = None  # set when WE ended the job: timeout | interrupted
        reason: str | None = None
        interrupt: KeyboardInterrupt | None = None
        last_step: list[int] = []
        started = time.monotonic()
        running_since: float | None = None
        status = JobStatus.PENDING
        with open(cell_dir / LOG_FILE, "w", encoding="utf-8") as log:
            pending = ""

            def drain() -> None:
                nonlocal pending
                while True:
                    try:
                        chunk = tail.chunks.get_nowait()
                    except queue.Empty:
                        return
                    pending += chunk
                    *lines, pending = pending.split("\n")
                    for line in lines:
                        m = STEP_RE.match(line)
                        if m:
                            last_step.append(int(m[1]))
                            if on_step:
                                on_step(int(m[1]))
                        if not line.startswith(f"{MARK}bundle "):
                            log.write(line + "\n")
                    log.flush()

            try:
                while True:
                    drain()
                    status = client.get_job_status(sid)
                    if status.is_terminal():
                        break
                    now = time.monotonic()
                    if status == JobStatus.RUNNING and running_since is None:
                        running_since = now
                    if running_since is None and now - started > float(self.opts["pending_timeout_s"]):
                        outcome, reason = "timeout", f"Ray job {sid} still PENDING after " \
                                                     f"{self.opts['pending_timeout_s']:g} s; stopped"
                        break
                    if timeout_s is not None and running_since is not None and now - running_since > timeout_s:
                        outcome = "timeout"
                        reason = f"timed out after {timeout_s:g} s (Ray job {sid} stopped)"
                        break
                    if self._cancel.is_set():
                        outcome, reason = "interrupted", f"interrupted (Ray job {sid} stopped)"
                        break
                    time.sleep(self.poll_s)
            except KeyboardInterrupt as exc:
                outcome, reason, interrupt = "interrupted", f"interrupted by SIGINT (Ray job {sid} stopped)", exc
            if outcome is not None:
                status = self._stop(client, sid)
            tail.join(timeout=2)  # the websocket closes when the job ends; take what it still carries
            drain()
        return self._collect(cell, cell_dir, spec, status, outcome, reason, interrupt,
                             on_step=on_step, reported=set(last_step))

    def _stop(self, client: Any, sid: str) -> Any:
        """stop_job, then wait for the job to end (its cell records a partial result meanwhile). A second
        Ctrl-C stops the waiting, not the job stop already requested."""
        from ray.job_submission import JobStatus

        with contextlib.suppress(Exception):
            client.stop_job(sid)
        deadline = time.monotonic() + float(self.opts["stop_wait_s"]) + 30
        status = JobStatus.RUNNING
        try:
            while time.monotonic() < deadline:
                status = client.get_job_status(sid)
                if status.is_terminal():
                    break
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        return status

    def _collect(self, cell: Cell, cell_dir: Path, spec: JobSpec, status: Any, outcome: str | None,
                 reason: str | None, interrupt: KeyboardInterrupt | None, *,
                 on_step: StepCallback | None = None, reported: set[int] | None = None) -> Result:
        client, sid = self.client(), spec.submission_id
        try:
            full = client.get_job_logs(sid)
        except Exception:
            full = None
        if full is not None:
            write_text_atomic(cell_dir / LOG_FILE, strip_bundle(full))
            if on_step is not None:  # steps the stream had not delivered when the job ended
                for line in full.splitlines():
                    m = STEP_RE.match(line)
                    if m and int(m[1]) not in (reported or set()):
                        on_step(int(m[1]))
        bundle = decode_bundle(full.splitlines()) if full else None
        extra = {"ray_job": sid, "ray_address": str(self.address), "remote_dir": spec.remote_dir,
                 "ray_job_status": str(getattr(status, "value", status))}
        metrics_local = cellenv.metrics_path(cell.argv, cell.env, cell_dir)
        result: Result | None = None
        if bundle and RESULT_FILE in bundle:
            try:
                result = Result.model_validate_json(bundle[RESULT_FILE])
            except ValueError:
                result = None
            if METRICS_FILE in bundle:
                write_text_atomic(metrics_local, bundle[METRICS_FILE])
        if result is not None:
            result = scrub(result, extra, secret_values(spec.runtime_env.get("env_vars", {})))
            if outcome is not None:
                last = max((st.step for st in result.steps), default=None)
                result = result.model_copy(update={"status": outcome, "reason": f"{reason}; last step: {last}"})
            write_result(cell_dir / RESULT_FILE, result)
        else:
            job_status = str(getattr(status, "value", status))
            if outcome is None:
                try:
                    message = client.get_job_info(sid).message
                except Exception:
                    message = None
                if job_status == "SUCCEEDED":
                    outcome, reason = "crash", f"Ray job {sid} succeeded but sent no result"
                else:
                    outcome = None  # classify the log (OOM lines, tracebacks) like any other failed run
                    reason = f"Ray job {sid} {job_status}: {message or 'no result'}"
            result = record_local(cell, cell_dir, outcome or "", reason, runtime=self.name, env=cell.env,
                                  log=cell_dir / LOG_FILE, metrics=metrics_local,
                                  exit_code=1 if outcome is None else None, extra=extra)
            if outcome is None and result.status == "ok":
                result = result.model_copy(update={"status": "crash", "reason": reason})
                write_result(cell_dir / RESULT_FILE, result)
        if interrupt is not None:
            raise interrupt
        return result


# -- job side --------------------------------------------------------------------------------------------
class _Echo(threading.Thread):
    """Copies complete lines of the cell's log to stdout (the job log) as they are written."""

    def __init__(self, path: Path, emit: Callable[[str], None], poll_s: float = 0.2) -> None:
        super().__init__(name="log-echo", daemon=True)
        self.path, self.emit, self.poll_s = path, emit, poll_s
        self.done = threading.Event()
        self._offset, self._buf = 0, b""

    def poll(self) -> None:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except OSError:
            return
        self._offset += len(data)
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            self.emit(line.decode(errors="replace"))

    def run(self) -> None:
        while not self.done.wait(self.poll_s):
            self.poll()

    def finish(self) -> None:
        self.done.set()
        self.join(timeout=5)
        self.poll()
        if self._buf:
            self.emit(self._buf.decode(errors="replace"))
            self._buf = b""


def job_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suite.run.ray_job",
                                     description="Run one cell inside a Ray job and print its result bundle.")
    parser.add_argument("--cell", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--timeout", type=float, default=None)
    args = parser.parse_args(argv)

    from suite.run.cellio import load_cell
    from suite.run.host import HostRuntime

    lock = threading.Lock()

    def emit(line: str) -> None:
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    try:
        cell = load_cell(args.cell)
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
    if (out / RESULT_FILE).exists():
        try:
            clean = scrub(Result.model_validate_json((out / RESULT_FILE).read_text()), {},
                          secret_values(os.environ))
            write_result(out / RESULT_FILE, clean)  # the copy left on the cluster is clean too
        except ValueError:
            pass
        files[RESULT_FILE] = (out / RESULT_FILE).read_text()
    metrics = cellenv.metrics_path(cell.argv, cell.env, out)
    if metrics.exists() and metrics.stat().st_size <= BUNDLE_MAX_METRICS:
        files[METRICS_FILE] = metrics.read_text(errors="replace")
    for line in encode_bundle(files):
        emit(line)
    return code


if __name__ == "__main__":
    raise SystemExit(job_main())
