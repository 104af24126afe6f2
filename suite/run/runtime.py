"""The runtime contract: how one planned cell becomes one `Result`, and the lifecycle every runtime shares.

Runtimes (host, docker, Ray Jobs, Slurm) differ only in *where* the verl command runs. Every non-host runtime runs
the same in-cell entry point there (`python -m suite.run.incell --cell CELL.json --out DIR`), which uses the host
runtime inside the container / job and writes `DIR/result.json`; the outer runtime then reads that file back. So
telemetry and result building live in one place.

`Runtime.run_cell` owns the lifecycle; a runtime implements only the five steps that differ:

    describe(cell, cell_dir, timeout_s=, gpus=) -> str      what a dry run prints
    submit(cell, cell_dir, timeout_s=, gpus=, on_step=) -> Job   start the cell (raise NotRun if it cannot)
    status(job) -> State                                     PENDING, RUNNING or DONE
    stop(job) -> str | None                                  end it early; a note for the reason
    fetch(job, stopped) -> Result | NoResult                 the cell's own result, or why there is none

and around them `run_cell`: record a cell the plan does not run (invalid, predicted OOM) or that the runtime
cannot run (more nodes than it spans, a command that disagrees with the matrix's topology), the dry run,
cancellation, a clean cell directory with `cell.json`, polling against the deadline, `interrupt()` and Ctrl-C,
stopping, and the final result: the reason with the last step, `ok` -> `crash` when no result came back, one
write. `gpus` are host GPU indices the cell may use (runtimes with `pins_gpus`); `on_step(step)` is called as
verl logs each step, maybe from another thread. `run_cell` never raises for a failing cell; KeyboardInterrupt is
re-raised after the cell is recorded `interrupted` and stopped.
"""

from __future__ import annotations

import enum
import importlib
import shutil
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from suite.errors import InputError
from suite.plan.cell import Cell
from suite.plan.hydra import format_value
from suite.results import provenance as prov
from suite.results.build import CellInfo, Observation, build_result
from suite.results.io import write_result
from suite.results.schema import Result
from suite.run import cellenv, cellio
from suite.run.files import LOG_FILE, RESULT_FILE
from suite.run.options import RuntimeOptions, parse_options

StepCallback = Callable[[int], None]


class State(enum.Enum):
    PENDING = "pending"  # submitted, not started (a queue, a runtime env being set up)
    RUNNING = "running"
    DONE = "done"


@dataclass(kw_only=True)
class Job:
    """One submitted cell, as its runtime follows it (runtimes add their own fields)."""

    cell: Cell
    cell_dir: Path
    env: dict[str, str] = field(default_factory=dict)  # the environment a result made here records
    extra: dict[str, str] = field(default_factory=dict)  # provenance notes (job ids, end states)


@dataclass(frozen=True)
class Stopped:
    """Why the lifecycle ended a cell that was still running."""

    status: str  # timeout | interrupted | oom (a runtime's guard)
    reason: str  # e.g. "timed out after 600 s"
    oom_kind: str | None = None  # with oom: which memory (suite.results.schema.OomKind)


@dataclass(frozen=True)
class NoResult:
    """What the runtime knows when the cell's own result did not come back."""

    reason: str
    status: str | None = None  # None: classified from the log like any failed run
    exit_code: int | None = None
    log: Path | None = None
    oom_kind: str | None = None  # with status oom: which memory (suite.results.schema.OomKind)


class NotRun(Exception):
    """Raised by `submit` when the cell cannot start (busy GPUs, no image): it is recorded with this status."""

    def __init__(self, status: str, reason: str, *, env: Mapping[str, str] | None = None, **provenance: Any) -> None:
        super().__init__(reason)
        self.status, self.reason, self.env, self.provenance = status, reason, env, provenance


J = TypeVar("J", bound=Job)


class _Steps:
    """The caller's on_step, remembering the last step seen (for the reason of a stopped cell)."""

    def __init__(self, on_step: StepCallback | None) -> None:
        self.on_step, self.last = on_step, None

    def __call__(self, step: int) -> None:
        self.last = step
        if self.on_step is not None:
            self.on_step(step)


class Runtime(ABC, Generic[J]):
    name: ClassVar[str]
    options_type: ClassVar[type[RuntimeOptions]] = RuntimeOptions
    # Capabilities: what the run CLI and the lifecycle may count on.
    local: ClassVar[bool] = False  # cells run in this Python environment (preflight and the GPU check apply)
    pins_gpus: ClassVar[bool] = False  # honours `gpus`; otherwise the cluster places the cell's workers
    max_nodes: ClassVar[int | None] = None  # the most nodes a cell may span; None: any
    checks_topology: ClassVar[bool] = False  # the command must tell verl the matrix's node layout
    stale: ClassVar[tuple[str, ...]] = ()  # more files of an earlier attempt to remove before a cell starts

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(self.options_type, options, self.name)
        self._cancel = threading.Event()

    # -- capabilities that depend on options ----------------------------------------------------------
    @property
    def dry_run(self) -> bool:
        return self.options.dry_run

    @property
    def concurrent_safe(self) -> bool:
        """Whether cells may run side by side on one host (the host runtime needs a private /tmp per cell)."""
        return True

    @property
    def concurrency_note(self) -> str:
        """Why cells may not run side by side, when `concurrent_safe` is False."""
        return ""

    @property
    def recorded_name(self) -> str:
        """The runtime a result names in its provenance."""
        return self.name

    @property
    def deadline_margin_s(self) -> float:
        """Seconds beyond the cell's timeout before the lifecycle stops it (the in-cell runner enforces the
        timeout itself and records a clean `timeout`; this is the backstop for one that cannot)."""
        return 0.0

    @property
    def pending_limit_s(self) -> float | None:
        """Seconds a cell may stay PENDING before it is given up as a timeout; None: no limit."""
        return None

    def interrupt(self) -> None:
        """Stop every cell in flight (recorded `interrupted`) and start no more."""
        self._cancel.set()

    # -- what each runtime implements -----------------------------------------------------------------
    def guard(self, job: J) -> Stopped | None:
        """Checked at every poll while the cell runs: why it must be stopped now (its tree already stopped, so a
        host on the edge gets its memory back at once), or None. None by default: only a runtime that watches
        the cell's host itself can tell."""
        return None

    @abstractmethod
    def describe(self, cell: Cell, cell_dir: Path, *, timeout_s: float | None, gpus: list[int] | None) -> str: ...

    @abstractmethod
    def submit(
        self, cell: Cell, cell_dir: Path, *, timeout_s: float | None, gpus: list[int] | None, on_step: StepCallback
    ) -> J: ...

    @abstractmethod
    def status(self, job: J) -> State: ...

    @abstractmethod
    def stop(self, job: J) -> str | None: ...

    @abstractmethod
    def fetch(self, job: J, stopped: Stopped | None) -> Result | NoResult: ...

    # -- the lifecycle --------------------------------------------------------------------------------
    def run_cell(
        self,
        cell: Cell,
        cell_dir: Path,
        *,
        timeout_s: float | None = None,
        gpus: list[int] | None = None,
        on_step: StepCallback | None = None,
        slots: int | None = None,
    ) -> Result:
        """`slots`: cells the caller runs at once on this host, recorded in provenance (with `gpus`) where the
        result does not say (a container or job runs one cell and cannot know)."""
        cell_dir = Path(cell_dir).absolute()
        if refused := self.refusal(cell):
            return self.record(cell, cell_dir, *refused, write=not self.dry_run)
        if self.dry_run:
            print(self.describe(cell, cell_dir, timeout_s=timeout_s, gpus=gpus), flush=True)
            return self.record(cell, cell_dir, "skipped", "dry run", write=False)
        if self._cancel.is_set():
            raise KeyboardInterrupt
        prepare_dir(cell, cell_dir, self.stale)
        steps = _Steps(on_step)
        interrupt: KeyboardInterrupt | None = None
        try:
            job = self.submit(cell, cell_dir, timeout_s=timeout_s, gpus=gpus, on_step=steps)
        except NotRun as no:
            result = self.record(cell, cell_dir, no.status, no.reason, write=False, env=no.env, **no.provenance)
        else:
            try:
                stopped = self._follow(job, timeout_s)
            except KeyboardInterrupt as exc:
                stopped, interrupt = Stopped("interrupted", "interrupted by SIGINT"), exc
            note = None
            if stopped is not None:
                try:
                    note = self.stop(job)
                except KeyboardInterrupt:  # a second Ctrl-C must not leave the cell running: stop is idempotent
                    note = self.stop(job)
            result = self._finish(job, self.fetch(job, stopped), stopped, note, steps.last)
        result = _packed(result, slots, gpus)
        write_result(cell_dir / RESULT_FILE, result)
        if interrupt is not None:
            raise interrupt
        return result

    def refusal(self, cell: Cell) -> tuple[str, str] | None:
        """(status, reason) when the cell is recorded instead of run."""
        if unrun := unrun_status(cell):
            return unrun
        if self.max_nodes is not None and cell.nnodes > self.max_nodes:
            return "invalid", f"the {self.name} runtime runs one node; use --runtime ray or slurm for multi-node cells"
        if self.checks_topology and (problem := topology_problem(cell)):
            return "invalid", problem
        return None

    def _follow(self, job: J, timeout_s: float | None) -> Stopped | None:
        """Poll until the cell ends (None) or has to be stopped (why)."""
        started, running_since = time.monotonic(), None
        limit = None if timeout_s is None else timeout_s + self.deadline_margin_s
        while True:
            state = self.status(job)
            if state is State.DONE:
                return None
            now = time.monotonic()
            if state is State.RUNNING and running_since is None:
                running_since = now
            pending = self.pending_limit_s
            if running_since is None and pending is not None and now - started > pending:
                return Stopped("timeout", f"not started after {pending:g} s")
            if limit is not None and running_since is not None and now - running_since > limit:
                return Stopped("timeout", f"timed out after {timeout_s:g} s")
            if self._cancel.is_set():
                return Stopped("interrupted", "interrupted")
            if state is State.RUNNING and (guarded := self.guard(job)) is not None:
                return guarded
            time.sleep(self.options.poll_s)

    def _finish(
        self, job: J, fetched: Result | NoResult, stopped: Stopped | None, note: str | None, last_seen: int | None
    ) -> Result:
        if isinstance(fetched, Result):
            result = fetched
            if job.extra:
                extra = {**result.provenance.extra, **{k: prov.redact_value(v) for k, v in job.extra.items()}}
                result = result.model_copy(update={"provenance": result.provenance.model_copy(update={"extra": extra})})
            if stopped is not None:
                last = max((s.step for s in result.steps), default=last_seen)
                why = f"{stopped.reason} ({'; '.join([*([note] if note else []), f'last step: {last}'])})"
                update = {"status": stopped.status, "reason": why, "oom_kind": stopped.oom_kind}
                result = result.model_copy(update=update)
            return result
        reason = f"{stopped.reason} ({note})" if stopped and note else stopped.reason if stopped else fetched.reason
        metrics = cellenv.metrics_path(job.cell, job.cell_dir)
        log = fetched.log or job.cell_dir / LOG_FILE
        result = self.record(
            job.cell,
            job.cell_dir,
            stopped.status if stopped else fetched.status,
            reason,
            write=False,
            env=job.env,
            extra=job.extra,
            observation={
                "metrics_path": metrics if metrics.exists() else None,
                "log_path": log if log.exists() else None,
                "exit_code": fetched.exit_code,
                "oom_kind": stopped.oom_kind if stopped else fetched.oom_kind,
            },
        )
        if result.status == "ok":  # the run looked fine, yet its result never came back
            result = result.model_copy(update={"status": "crash", "reason": fetched.reason})
        return result

    def record(
        self,
        cell: Cell,
        cell_dir: Path,
        status: str | None,
        reason: str | None,
        *,
        write: bool = True,
        env: Mapping[str, str] | None = None,
        extra: Mapping[str, str] | None = None,
        observation: Mapping[str, Any] | None = None,
        **provenance: Any,
    ) -> Result:
        """A result made here, not by the cell's own run (not run, no result came back): the one place that builds
        one. `status` None classifies the log. No sampler runs on this side, so NVML and host-memory fields stay
        None; `provenance` passes on to `suite.results.provenance.collect` (GPU name, ...)."""
        p = prov.collect(
            argv=cell.argv,
            env=dict(cell.env if env is None else env),
            runtime=self.recorded_name,
            model_source=cell.model,
            extra={k: prov.redact_value(v) for k, v in (extra or {}).items()},
            **provenance,
        )
        obs = Observation(status=status, reason=reason, **(observation or {}))
        result = build_result(CellInfo.from_cell(cell), obs, p)
        if write:
            write_result(cell_dir / RESULT_FILE, result)
        return result


def _packed(result: Result, slots: int | None, gpus: list[int] | None) -> Result:
    p, update = result.provenance, {}
    if p.parallel_slots is None and slots is not None:
        update["parallel_slots"] = slots
    if p.cuda_visible_devices is None and gpus is not None:
        update["cuda_visible_devices"] = ",".join(map(str, gpus))
    return result.model_copy(update={"provenance": p.model_copy(update=update)}) if update else result


def prepare_dir(cell: Cell, cell_dir: Path, stale: tuple[str, ...] = ()) -> None:
    """The cell's directory without what an earlier attempt left (nothing stale is read back), with `cell.json`."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    for name in (RESULT_FILE, LOG_FILE, *stale):
        (cell_dir / name).unlink(missing_ok=True)
    metrics = cellenv.metrics_path(cell, cell_dir)
    metrics.unlink(missing_ok=True)
    metrics.parent.mkdir(parents=True, exist_ok=True)
    validation = cell.paths.validation_dir
    if validation is not None and validation.resolve().is_relative_to(cell_dir.resolve()):
        shutil.rmtree(validation, ignore_errors=True)
    cellio.write_cell(cell_dir, cell)


def unrun_status(cell: Cell) -> tuple[str, str] | None:
    """(status, reason) of the result recorded for a cell that is not run, or None when it runs: an invalid
    cell stays `invalid`, any other non-ok plan status (e.g. `predicted-oom`) is `skipped`."""
    if cell.status == "ok":
        return None
    return ("invalid" if cell.status == "invalid" else "skipped"), (cell.reason or cell.status)


def topology_problem(cell: Cell) -> str | None:
    """verl must be told the matrix's node layout: a raw override that changes it would make results lie
    about their world size."""
    want = {"trainer.nnodes": cell.nnodes, "trainer.n_gpus_per_node": cell.gpus_per_node}
    for key, value in want.items():
        if not cell.has_setting(key):
            return f"topology: the cell's command does not set {key} (matrix: {value})"
        got = cell.setting(key)
        if str(got) != str(value):
            return f"topology: {key}={format_value(got)} in the cell's command, but the matrix says {value}"
    return None


RUNTIMES: dict[str, str] = {
    "host": "suite.run.host:HostRuntime",
    "docker": "suite.run.docker:DockerRuntime",
    "ray": "suite.run.ray_job:RayJobRuntime",
    "slurm": "suite.run.slurm:SlurmRuntime",
}


def runtime_class(name: str) -> type[Runtime]:
    try:
        target = RUNTIMES[name]
    except KeyError:
        raise InputError(f"unknown runtime {name!r}; allowed: {', '.join(RUNTIMES)}", field="--runtime") from None
    module_name, _, attr = target.partition(":")
    try:
        # Imported by name, on demand: `grpo-suite run --runtime host` never loads docker's or Ray's code.
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise InputError(
                f"runtime {name!r} is not available in this build ({module_name} missing)", field="--runtime"
            ) from None
        raise
    return getattr(module, attr)


def make_runtime(name: str, **options: Any) -> Runtime:
    """Instantiate a runtime by name with its typed options (an InputError names an unknown or bad option)."""
    return runtime_class(name)(**options)
