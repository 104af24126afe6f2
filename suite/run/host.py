"""The host runtime: a cell's verl command as a child process tree in the current environment.

Per cell: wait for its GPUs to be free (NVML), start the command in its own session with the cell's env
(GPU pinning, own Ray temp dir, file-logger path), log everything to `<cell dir>/log.txt`, sample NVML,
sample the host's memory beside it (the verl child's process tree and the whole host), follow the metrics file,
stop the whole tree on exit / timeout / interrupt, and build the result from what it saw.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from suite.errors import InputError
from suite.plan.cell import LOGGER_ENV, Cell
from suite.results import provenance as prov
from suite.results.build import CellInfo, Observation, build_result
from suite.results.schema import Result
from suite.run import cellenv, private_tmp
from suite.run.files import LOG_FILE
from suite.run.options import RuntimeOptions
from suite.run.process import ProcessTree, new_token
from suite.run.runtime import Job, NoResult, NotRun, Runtime, State, StepCallback, Stopped
from suite.telemetry import nvml as nv
from suite.telemetry.hostmem import HostMemorySampler, over_guard
from suite.telemetry.startup import LogWatcher
from suite.telemetry.watch import MetricsWatcher


@dataclass(frozen=True)
class HostOptions(RuntimeOptions):
    grace_s: float = 10.0  # SIGINT -> SIGTERM -> SIGKILL spacing when stopping a cell
    gpu_free_gib: float = 1.0  # a GPU with more NVML `used` than this, or any compute process, is busy
    gpu_wait_s: float = 120.0  # how long to wait for busy GPUs before recording the cell as skipped
    # NVML and host-memory sampling rate; 0: no samplers (to measure their overhead: the same cell with and without)
    nvml_hz: float = nv.DEFAULT_HZ
    isolate_ray: bool = True
    # auto: a private /tmp per cell where the host allows a mount namespace (see suite/run/private_tmp.py);
    # on: required (refused before any cell runs if the host cannot); off: share the host's /tmp
    private_tmp: Literal["auto", "on", "off"] = "auto"
    keep_ray_tmp: bool = False  # Ray's session logs are kept anyway when a cell fails
    record_as: str | None = None  # runtime name written to provenance (incell under docker / ray / slurm)
    poll_s: float = 0.2
    # Stop the cell at once (SIGKILL, no grace) when the host's used memory reaches this fraction of its total,
    # and record it `oom`. Ray's own monitor acts at 0.95, but pinned host buffers grow faster than it polls; a
    # host driven to its last GiB can stop answering and take every cell's files with it. 0: no guard.
    host_memory_guard: float = 0.97


@dataclass(kw_only=True)
class HostJob(Job):
    metrics: Path
    nvml: Any
    gpu: nv.GpuInfo | None
    log: IO[bytes]
    tree: ProcessTree
    sampler: nv.MemorySampler
    host_sampler: HostMemorySampler
    watcher: MetricsWatcher
    milestones: LogWatcher
    t0: float
    ray_tmp: str | None
    tmp_root: Path | None
    stopped_pids: list[int] | None = None


def _gpu_fields(gpu: nv.GpuInfo | None, env: dict[str, str]) -> dict[str, Any]:
    return {
        "gpu_name": gpu.name if gpu else None,
        "gpu_count": gpu.count if gpu else None,
        "driver": gpu.driver if gpu else None,
        "cuda": gpu.cuda if gpu else None,
        "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES"),
    }


def _iso(t: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t)) if t else None


class HostRuntime(Runtime[HostJob]):
    name = "host"
    options_type = HostOptions
    local = True
    pins_gpus = True
    options: HostOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        if not 0 <= o.host_memory_guard < 1:
            raise InputError(
                f"host_memory_guard={o.host_memory_guard:g}; allowed: a fraction of the host's memory in [0, 1), "
                "0 for no guard",
                field="--runtime-option",
            )
        self._userns: bool | None = None
        self.private_tmp_note = "off"
        if o.private_tmp != "off" and not o.dry_run:
            self._userns, self.private_tmp_note = private_tmp.resolve(o.private_tmp)
            if o.private_tmp == "on" and self._userns is None:
                raise InputError(
                    f"private_tmp=on, but this host cannot give a cell its own /tmp ({self.private_tmp_note}); "
                    "allowed: auto, off",
                    field="--runtime-option",
                )

    @property
    def isolate_ray(self) -> bool:
        return self.options.isolate_ray

    @property
    def concurrent_safe(self) -> bool:
        """Each cell has its own /tmp, or the user said private_tmp=off (their call: e.g. a verl whose sockets do
        not collide)."""
        return self._userns is not None or self.options.private_tmp == "off" or self.options.dry_run

    @property
    def concurrency_note(self) -> str:
        return self.private_tmp_note

    @property
    def recorded_name(self) -> str:
        return self.options.record_as or self.name

    def _env(self, cell: Cell, cell_dir: Path, gpus: list[int] | None) -> dict[str, str]:
        return cellenv.cell_environment(
            os.environ,
            cell.env,
            cell_dir=cell_dir,
            metrics=cellenv.metrics_path(cell, cell_dir),
            gpus=gpus,
            token=new_token(),
            isolate_ray=self.options.isolate_ray,
        )

    # -- the five steps -------------------------------------------------------------------------------
    def describe(self, cell: Cell, cell_dir: Path, *, timeout_s: float | None, gpus: list[int] | None) -> str:
        env = self._env(cell, cell_dir, gpus)
        pinned = {k: env[k] for k in ("CUDA_VISIBLE_DEVICES", "RAY_TMPDIR", LOGGER_ENV) if k in env}
        shown = {**cell.env, **pinned}
        return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in shown.items()), *map(shlex.quote, cell.argv)])

    def submit(
        self, cell: Cell, cell_dir: Path, *, timeout_s: float | None, gpus: list[int] | None, on_step: StepCallback
    ) -> HostJob:
        env = self._env(cell, cell_dir, gpus)
        nvml = nv.open_nvml()
        try:
            count = nv.device_count(nvml) if nvml is not None else 0
            indices = cellenv.visible_gpu_indices(env, gpus, count)
            o = self.options
            busy = nv.wait_gpus_free(nvml, indices, max_used_gib=o.gpu_free_gib, timeout_s=o.gpu_wait_s)
            gpu = nv.gpu_info(nvml, indices)
            if busy:
                raise NotRun("skipped", busy, env=env, **_gpu_fields(gpu, env))
            return self._start(cell, cell_dir, env, nvml, indices, gpu, on_step)
        except BaseException:
            nv.close_nvml(nvml)
            raise

    def _start(
        self,
        cell: Cell,
        cell_dir: Path,
        env: dict[str, str],
        nvml: Any,
        indices: list[int],
        gpu: nv.GpuInfo | None,
        on_step: StepCallback,
    ) -> HostJob:
        o = self.options
        log = open(cell_dir / LOG_FILE, "wb")  # noqa: SIM115 -- closed by fetch, when the cell is over
        log.write(f"[grpo-suite] cell {cell.full_id}\n".encode())
        log.write(f"[grpo-suite] argv: {shlex.join(cell.argv)}\n".encode())
        log.flush()
        argv, tmp_root = cell.argv, None
        ray_tmp = env.get("RAY_TMPDIR")
        if self._userns is not None:
            base = Path(ray_tmp) if ray_tmp else cellenv.ray_tmpdir(new_token())
            tmp_root = private_tmp.root_for(base)
            if ray_tmp:
                Path(ray_tmp).mkdir(parents=True, exist_ok=True)  # so it is carried into the private /tmp
            argv = private_tmp.wrap(argv, tmp_root, self._userns)
        metrics = cellenv.metrics_path(cell, cell_dir)
        hz = o.nvml_hz or 1.0
        tree = ProcessTree(argv, env, log)
        sampler = nv.MemorySampler(nvml if o.nvml_hz > 0 else None, indices, hz)
        watcher = MetricsWatcher(metrics, on_step)
        t0 = time.monotonic()
        tree.start()
        sampler.start()
        # rooted at the verl child (under a private /tmp, unshare and sh exec into it: the same pid)
        host_sampler = HostMemorySampler(tree.pid if o.nvml_hz > 0 else None, hz).start()
        watcher.start()
        milestones = LogWatcher(cell_dir / LOG_FILE, t0).start()
        return HostJob(
            cell=cell,
            cell_dir=cell_dir,
            env=env,
            metrics=metrics,
            nvml=nvml,
            gpu=gpu,
            log=log,
            tree=tree,
            sampler=sampler,
            host_sampler=host_sampler,
            watcher=watcher,
            milestones=milestones,
            t0=t0,
            ray_tmp=ray_tmp,
            tmp_root=tmp_root,
        )

    def guard(self, job: HostJob) -> Stopped | None:
        g = self.options.host_memory_guard
        seen = job.host_sampler.latest_system()
        if seen is None or not over_guard(*seen, g):
            return None
        job.stopped_pids = job.tree.stop(0.0)
        used, total = seen
        return Stopped(
            "oom",
            f"host memory {used:.1f} of {total:.1f} GiB used, at or above host_memory_guard={g:g}: "
            "stopped to keep the host",
            "host-guard",
        )

    def status(self, job: HostJob) -> State:
        return State.RUNNING if job.tree.poll() is None else State.DONE

    def stop(self, job: HostJob) -> str | None:
        self._stop_tree(job)
        return None

    def _stop_tree(self, job: HostJob) -> list[int]:
        """Stop the whole tree once: also after a normal exit, for what it left behind."""
        if job.stopped_pids is None:
            job.stopped_pids = job.tree.stop(self.options.grace_s)
        return job.stopped_pids

    def fetch(self, job: HostJob, stopped: Stopped | None) -> Result | NoResult:
        try:
            return self._build(job, stopped)
        finally:
            job.log.close()
            nv.close_nvml(job.nvml)

    def _build(self, job: HostJob, stopped: Stopped | None) -> Result:
        o, tree = self.options, job.tree
        pids = self._stop_tree(job)
        wall, end = time.monotonic() - job.t0, time.time()
        job.watcher.stop()
        samples, host_samples = job.sampler.stop(), job.host_sampler.stop()
        breakdown = job.milestones.stop()
        rc = tree.proc.returncode if tree.proc else None
        job.log.write(
            f"\n[grpo-suite] exit code {rc}; wall {wall:.1f} s; processes recorded: "
            f"{len(tree.recorded_pids)}; stopped by pid: {pids or 'none'}\n".encode()
        )
        job.log.flush()
        extra = {"stopped_pids": ",".join(map(str, pids))} if pids else {}
        if job.ray_tmp:
            extra["ray_tmpdir"] = job.ray_tmp
        extra["private_tmp"] = str(job.tmp_root) if job.tmp_root else self.private_tmp_note
        if samples is not None:
            extra["nvml_sampler_cpu_s"] = f"{samples.cpu_s:.4f}"
        elif o.nvml_hz == 0:
            extra["nvml_sampler"] = "off"
        if host_samples is not None:
            extra["host_memory_sampler_cpu_s"] = f"{host_samples.cpu_s:.4f}"
            if job.env.get("RAY_ADDRESS"):
                # verl joined an existing cluster (ray job, slurm): its Ray workers are the raylet's children,
                # not ours, so the tree would be the driver alone and read as a small cell. The system peak
                # stays: it is this node's (the driver's), which on one node holds the workers too.
                host_samples = dataclasses.replace(host_samples, peak_tree_gib=None)
                extra["host_memory"] = (
                    "system peak of the driver's node only; no tree peak: Ray workers of the existing cluster "
                    "(RAY_ADDRESS) are outside the cell's process tree"
                )
        # Seen by polling (0.5 s): a line written just before exit is only seen after it, hence the cap.
        first = job.watcher.first_step_time
        startup = min(first - job.t0, wall) if first is not None else None
        if startup is not None:
            breakdown["first_step"] = round(startup, 2)
            # The log and the metrics file are polled apart: a start-up line can be seen a poll after the
            # first step although verl wrote it before; no start-up milestone comes after the first step.
            breakdown = {k: min(v, breakdown["first_step"]) for k, v in breakdown.items()}
        obs = Observation(
            metrics_path=job.metrics,
            log_path=job.cell_dir / LOG_FILE,
            validation_dir=job.cell.paths.validation_dir,
            exit_code=rc,
            status=stopped.status if stopped else None,
            reason=stopped.reason if stopped else None,
            memory=samples,
            host_memory=host_samples,
            wall_s=wall,
            startup_s=startup,
            startup_breakdown=breakdown,
            # a line seen by the final poll, after the exit, was written before it
            step_seen_s={k: min(v - job.t0, wall) for k, v in job.watcher.step_seen.items()},
            memory_start_s=samples.started_at - job.t0 if samples and samples.started_at is not None else None,
            host_memory_start_s=(
                host_samples.started_at - job.t0 if host_samples and host_samples.started_at is not None else None
            ),
        )
        provenance = prov.collect(
            argv=job.cell.argv,
            env=job.env,
            runtime=self.recorded_name,
            model_source=job.cell.model,
            start_time=_iso(tree.start_time),
            end_time=_iso(end),
            extra=extra,
            **_gpu_fields(job.gpu, job.env),
        )
        result = build_result(CellInfo.from_cell(job.cell), obs, provenance)
        if result.status == "ok" and not o.keep_ray_tmp:
            if job.ray_tmp:
                shutil.rmtree(job.ray_tmp, ignore_errors=True)
            if job.tmp_root:
                private_tmp.remove_root(job.tmp_root)
        return result
