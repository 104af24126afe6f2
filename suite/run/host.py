"""The host runtime: a cell's verl command as a child process tree in the current environment.

Per cell: wait for its GPUs to be free (NVML), start the command in its own session with the cell's env
(GPU pinning, own Ray temp dir, file-logger path), log everything to `<cell dir>/log.txt`, sample NVML,
sample the host's memory beside it (the verl child's process tree and the whole host), follow the metrics file,
stop the whole tree on exit / timeout / interrupt, and write `result.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from suite.errors import InputError
from suite.plan.cell import Cell
from suite.results import provenance as prov
from suite.results.build import CellInfo, Observation, build_result
from suite.results.io import write_result, write_text_atomic
from suite.results.schema import Result
from suite.run import cellenv, private_tmp
from suite.run.process import ProcessTree, new_token
from suite.run.runtime import CELL_FILE, LOG_FILE, RESULT_FILE, StepCallback, unrun_status
from suite.telemetry import nvml as nv
from suite.telemetry.hostmem import HostMemorySampler
from suite.telemetry.startup import LogWatcher
from suite.telemetry.watch import MetricsWatcher

OPTIONS = {
    "grace_s": 10.0,  # SIGINT -> SIGTERM -> SIGKILL spacing when stopping a cell
    "gpu_free_gib": 1.0,  # a GPU with more NVML `used` than this, or any compute process, is busy
    "gpu_wait_s": 120.0,  # how long to wait for busy GPUs before recording the cell as skipped
    # NVML and host-memory sampling rate; 0: no samplers (to measure their overhead: the same cell with and without)
    "nvml_hz": nv.DEFAULT_HZ,
    "isolate_ray": True,
    # auto: a private /tmp per cell where the host allows a mount namespace (see suite/run/private_tmp.py);
    # on: required (refused before any cell runs if the host cannot); off: share the host's /tmp
    "private_tmp": "auto",
    "keep_ray_tmp": False,  # Ray's session logs are kept anyway when a cell fails
    "dry_run": False,
    "record_as": None,  # runtime name written to provenance (incell under docker / ray / slurm)
    "poll_s": 0.2,
}


def _bool(v: Any) -> bool:
    """Options arrive as strings from `--runtime-option KEY=VALUE`."""
    if isinstance(v, str):
        if v.lower() in ("1", "true", "yes", "on"):
            return True
        if v.lower() in ("0", "false", "no", "off", ""):
            return False
        raise InputError(f"bad value {v!r}; allowed: true or false", field="--runtime-option")
    return bool(v)


def _float(name: str, v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise InputError(f"bad value {v!r} for {name}; allowed: a number", field="--runtime-option") from None
    if f < 0:
        raise InputError(f"bad value {v!r} for {name}; allowed: >= 0", field="--runtime-option")
    return f


class HostRuntime:
    name = "host"

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise InputError(f"option(s) {', '.join(unknown)} not supported by the host runtime; "
                             f"allowed: {', '.join(OPTIONS)}", field="--runtime host")
        opts = {**OPTIONS, **{k: v for k, v in options.items() if v is not None}}
        self.grace_s = _float("grace_s", opts["grace_s"])
        self.gpu_free_gib = _float("gpu_free_gib", opts["gpu_free_gib"])
        self.gpu_wait_s = _float("gpu_wait_s", opts["gpu_wait_s"])
        self.nvml_hz = _float("nvml_hz", opts["nvml_hz"])
        self.isolate_ray = _bool(opts["isolate_ray"])
        self.keep_ray_tmp = _bool(opts["keep_ray_tmp"])
        self.dry_run = _bool(opts["dry_run"])
        self.record_as = opts["record_as"] or self.name
        self.poll_s = _float("poll_s", opts["poll_s"])
        mode = str(opts["private_tmp"]).lower()
        if mode not in private_tmp.MODES:
            raise InputError(f"bad value {opts['private_tmp']!r} for private_tmp; allowed: "
                             f"{', '.join(private_tmp.MODES)}", field="--runtime-option")
        self.private_tmp = mode
        self._userns: bool | None = None
        self.private_tmp_note = "off"
        if mode != "off" and not self.dry_run:
            self._userns, self.private_tmp_note = private_tmp.resolve(mode)
            if mode == "on" and self._userns is None:
                raise InputError(f"private_tmp=on, but this host cannot give a cell its own /tmp "
                                 f"({self.private_tmp_note}); allowed: auto, off", field="--runtime-option")
        self._cancel = threading.Event()

    @property
    def concurrent_safe(self) -> bool:
        """Whether cells may run side by side on this host: each has its own /tmp, or the user said
        private_tmp=off (their call: e.g. a verl whose sockets do not collide)."""
        return self._userns is not None or self.private_tmp == "off" or self.dry_run

    def interrupt(self) -> None:
        """Stop every cell in flight (they are recorded `interrupted`) and refuse to start new ones."""
        self._cancel.set()

    # -- helpers -------------------------------------------------------------------------------------
    def _provenance(self, cell: Cell, env: dict[str, str], *, start: float | None, end: float | None,
                    gpu: nv.GpuInfo | None, extra: dict[str, str] | None = None) -> Any:
        iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t)) if t else None  # noqa: E731
        return prov.collect(argv=cell.argv, env=env, runtime=self.record_as,
                            gpu_name=gpu.name if gpu else None, gpu_count=gpu.count if gpu else None,
                            driver=gpu.driver if gpu else None, cuda=gpu.cuda if gpu else None,
                            cuda_visible_devices=env.get("CUDA_VISIBLE_DEVICES"), model_source=cell.model,
                            start_time=iso(start), end_time=iso(end), extra=extra)

    def _record(self, cell: Cell, cell_dir: Path, status: str, reason: str | None,
                env: dict[str, str], gpu: nv.GpuInfo | None = None) -> Result:
        result = build_result(CellInfo.from_cell(cell), Observation(status=status, reason=reason),
                              self._provenance(cell, env, start=None, end=None, gpu=gpu))
        write_result(cell_dir / RESULT_FILE, result)
        return result

    @staticmethod
    def _clear(cell_dir: Path, metrics: Path, validation: Path | None) -> None:
        """Remove what an earlier attempt of this cell left, so nothing stale is read back."""
        for name in (RESULT_FILE, LOG_FILE):
            (cell_dir / name).unlink(missing_ok=True)
        metrics.unlink(missing_ok=True)
        if validation is not None and validation.resolve().is_relative_to(cell_dir.resolve()):
            shutil.rmtree(validation, ignore_errors=True)

    # -- the contract --------------------------------------------------------------------------------
    def run_cell(self, cell: Cell, cell_dir: Path, *, timeout_s: float | None = None,
                 gpus: list[int] | None = None, on_step: StepCallback | None = None) -> Result:
        cell_dir = Path(cell_dir).absolute()
        if unrun := unrun_status(cell):
            cell_dir.mkdir(parents=True, exist_ok=True)
            return self._record(cell, cell_dir, *unrun, dict(cell.env))
        metrics = cellenv.metrics_path(cell.argv, cell.env, cell_dir)
        validation = cellenv.validation_dir(cell.argv)
        token = new_token()
        env = cellenv.cell_environment(os.environ, cell.env, cell_dir=cell_dir, metrics=metrics, gpus=gpus,
                                       token=token, isolate_ray=self.isolate_ray)
        if self.dry_run:
            keys = ("CUDA_VISIBLE_DEVICES", "RAY_TMPDIR", cellenv.LOGGER_ENV)
            pinned = {k: env[k] for k in keys if k in env}
            cell_env = {**cell.env, **pinned}
            print(" ".join([*(f"{k}={shlex.quote(v)}" for k, v in cell_env.items()),
                            *map(shlex.quote, cell.argv)]))
            return build_result(CellInfo.from_cell(cell), Observation(status="skipped", reason="dry run"),
                                self._provenance(cell, env, start=None, end=None, gpu=None))
        if self._cancel.is_set():
            raise KeyboardInterrupt
        cell_dir.mkdir(parents=True, exist_ok=True)
        metrics.parent.mkdir(parents=True, exist_ok=True)
        self._clear(cell_dir, metrics, validation)
        write_text_atomic(cell_dir / CELL_FILE, json.dumps(cell.to_dict(), indent=2, sort_keys=True) + "\n")

        nvml = nv.open_nvml()
        try:
            count = nv.device_count(nvml) if nvml is not None else 0
            indices = cellenv.visible_gpu_indices(env, gpus, count)
            busy = nv.wait_gpus_free(nvml, indices, max_used_gib=self.gpu_free_gib, timeout_s=self.gpu_wait_s)
            gpu = nv.gpu_info(nvml, indices)
            if busy:
                return self._record(cell, cell_dir, "skipped", busy, env, gpu)
            return self._execute(cell, cell_dir, env, metrics, validation, nvml, indices, gpu,
                                 timeout_s, on_step)
        finally:
            nv.close_nvml(nvml)

    def _execute(self, cell: Cell, cell_dir: Path, env: dict[str, str], metrics: Path,
                 validation: Path | None, nvml: Any, indices: list[int], gpu: nv.GpuInfo | None,
                 timeout_s: float | None, on_step: StepCallback | None) -> Result:
        status: str | None = None
        reason: str | None = None
        interrupt: BaseException | None = None
        with open(cell_dir / LOG_FILE, "wb") as log:
            log.write(f"[grpo-suite] cell {cell.full_id}\n".encode())
            log.write(f"[grpo-suite] argv: {shlex.join(cell.argv)}\n".encode())
            log.flush()
            argv, tmp_root = list(cell.argv), None
            ray_tmp = env.get("RAY_TMPDIR")
            if self._userns is not None:
                base = Path(ray_tmp) if ray_tmp else cellenv.ray_tmpdir(new_token())
                tmp_root = private_tmp.root_for(base)
                if ray_tmp:
                    Path(ray_tmp).mkdir(parents=True, exist_ok=True)  # so it is carried into the private /tmp
                argv = private_tmp.wrap(argv, tmp_root, self._userns)
            tree = ProcessTree(argv, env, log)
            sampler = nv.MemorySampler(nvml if self.nvml_hz > 0 else None, indices, self.nvml_hz or 1.0)
            watcher = MetricsWatcher(metrics, on_step)
            t0 = time.monotonic()
            tree.start()
            sampler.start()
            # rooted at the verl child (under a private /tmp, unshare and sh exec into it: the same pid)
            host_sampler = HostMemorySampler(tree.pid if self.nvml_hz > 0 else None, self.nvml_hz or 1.0).start()
            watcher.start()
            milestones = LogWatcher(cell_dir / LOG_FILE, t0).start()
            try:
                while tree.wait(self.poll_s) is None:
                    if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                        status = "timeout"
                        reason = f"timed out after {timeout_s:g} s (last step: {watcher.last_step})"
                        break
                    if self._cancel.is_set():
                        status, reason = "interrupted", f"interrupted (last step: {watcher.last_step})"
                        break
            except KeyboardInterrupt as exc:
                status, reason = "interrupted", f"interrupted by SIGINT (last step: {watcher.last_step})"
                interrupt = exc
            finally:
                stopped = tree.stop(self.grace_s)
                wall = time.monotonic() - t0
                end = time.time()
                watcher.stop()
                samples = sampler.stop()
                host_samples = host_sampler.stop()
                breakdown = milestones.stop()
                rc = tree.proc.returncode if tree.proc else None
                log.write(f"\n[grpo-suite] exit code {rc}; wall {wall:.1f} s; processes recorded: "
                          f"{len(tree.recorded_pids)}; stopped by pid: {stopped or 'none'}\n".encode())
        extra = {"stopped_pids": ",".join(map(str, stopped))} if stopped else {}
        if ray_tmp:
            extra["ray_tmpdir"] = ray_tmp
        extra["private_tmp"] = str(tmp_root) if tmp_root else self.private_tmp_note
        if samples is not None:
            extra["nvml_sampler_cpu_s"] = f"{samples.cpu_s:.4f}"
        elif self.nvml_hz == 0:
            extra["nvml_sampler"] = "off"
        if host_samples is not None:
            extra["host_memory_sampler_cpu_s"] = f"{host_samples.cpu_s:.4f}"
            if env.get("RAY_ADDRESS"):
                # verl joined an existing cluster (ray job, slurm): its Ray workers are the raylet's children,
                # not ours, so the tree would be the driver alone and read as a small cell. The system peak
                # stays: it is this node's (the driver's), which on one node holds the workers too.
                host_samples = dataclasses.replace(host_samples, peak_tree_gib=None)
                extra["host_memory"] = "system peak of the driver's node only; no tree peak: Ray workers of the " \
                                       "existing cluster (RAY_ADDRESS) are outside the cell's process tree"
        # Seen by polling (0.5 s): a line written just before exit is only seen after it, hence the cap.
        startup = min(watcher.first_step_time - t0, wall) if watcher.first_step_time is not None else None
        if startup is not None:
            breakdown["first_step"] = round(startup, 2)
            # The log and the metrics file are polled apart: a start-up line can be seen a poll after the
            # first step although verl wrote it before; no start-up milestone comes after the first step.
            breakdown = {k: min(v, breakdown["first_step"]) for k, v in breakdown.items()}
        obs = Observation(metrics_path=metrics, log_path=cell_dir / LOG_FILE, validation_dir=validation,
                          exit_code=rc, status=status, reason=reason, memory=samples, host_memory=host_samples,
                          wall_s=wall, startup_s=startup, startup_breakdown=breakdown)
        provenance = self._provenance(cell, env, start=tree.start_time, end=end, gpu=gpu, extra=extra)
        result = build_result(CellInfo.from_cell(cell), obs, provenance)
        write_result(cell_dir / RESULT_FILE, result)
        if result.status == "ok" and not self.keep_ray_tmp:
            if ray_tmp:
                shutil.rmtree(ray_tmp, ignore_errors=True)
            if tmp_root:
                private_tmp.remove_root(tmp_root)
        if interrupt is not None:
            raise interrupt
        return result
