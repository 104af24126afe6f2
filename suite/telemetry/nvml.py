"""NVML: device facts for provenance, a free-GPU check, and a peak-memory sampler.

Everything takes an `nvml` object with pynvml's function names (the real `pynvml` module from
nvidia-ml-py, or a fake in tests). `open_nvml()` returns None where there is no NVML (CPU machines,
containers without the driver): callers then record no NVML numbers rather than fail.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from suite.telemetry.sampler import PeriodicSampler, WindowMax

GIB = float(1 << 30)
DEFAULT_HZ = 20.0


def open_nvml() -> Any | None:
    """pynvml after a successful nvmlInit, else None. Pair with `close_nvml`."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded / ...: no NVML here
        return None
    return pynvml


def close_nvml(nvml: Any | None) -> None:
    if nvml is not None:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


@contextlib.contextmanager
def nvml_session() -> Iterator[Any | None]:
    nvml = open_nvml()
    try:
        yield nvml
    finally:
        close_nvml(nvml)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def device_count(nvml: Any) -> int:
    return int(nvml.nvmlDeviceGetCount())


@dataclass(frozen=True)
class GpuInfo:
    name: str | None
    count: int
    driver: str | None
    cuda: str | None
    total_gib: list[float] = field(default_factory=list)


def gpu_info(nvml: Any | None, indices: Sequence[int] | None) -> GpuInfo | None:
    if nvml is None:
        return None
    try:
        idx = list(indices) if indices is not None else list(range(device_count(nvml)))
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in idx]
        names = [_text(nvml.nvmlDeviceGetName(h)) for h in handles]
        totals = [nvml.nvmlDeviceGetMemoryInfo(h).total / GIB for h in handles]
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        try:
            v = int(nvml.nvmlSystemGetCudaDriverVersion())
            cuda = f"{v // 1000}.{(v % 1000) // 10}"
        except Exception:
            cuda = None
    except Exception:
        return None
    return GpuInfo(
        name=names[0] if names else None,
        count=len(idx),
        driver=driver,
        cuda=cuda,
        total_gib=[round(t, 2) for t in totals],
    )


@dataclass(frozen=True)
class GpuUse:
    index: int
    used_gib: float
    processes: int


def gpu_use(nvml: Any, indices: Sequence[int]) -> list[GpuUse]:
    out = []
    for i in indices:
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        used = nvml.nvmlDeviceGetMemoryInfo(h).used / GIB
        try:
            procs = len(nvml.nvmlDeviceGetComputeRunningProcesses(h))
        except Exception:  # not supported on some (vGPU / MIG) setups: rely on memory alone
            procs = 0
        out.append(GpuUse(i, used, procs))
    return out


def busy_gpus(uses: Sequence[GpuUse], max_used_gib: float) -> list[GpuUse]:
    return [u for u in uses if u.processes > 0 or u.used_gib > max_used_gib]


def wait_gpus_free(
    nvml: Any | None,
    indices: Sequence[int],
    *,
    max_used_gib: float = 1.0,
    timeout_s: float = 120.0,
    poll_s: float = 1.0,
    sleep: Any = time.sleep,
    clock: Any = time.monotonic,
) -> str | None:
    """Wait until no compute process runs and memory use is below `max_used_gib` on every GPU.
    Returns None when free (or when there is no NVML to ask), else a message naming the busy GPUs."""
    if nvml is None or not indices:
        return None
    deadline = clock() + timeout_s
    while True:
        busy = busy_gpus(gpu_use(nvml, indices), max_used_gib)
        if not busy:
            return None
        if clock() >= deadline:
            detail = ", ".join(
                f"GPU {u.index}: {u.used_gib:.1f} GiB used, {u.processes} compute process(es)" for u in busy
            )
            return (
                f"GPUs not free after waiting {timeout_s:.0f} s ({detail}); "
                f"threshold {max_used_gib} GiB and no compute processes"
            )
        sleep(poll_s)


@dataclass(frozen=True)
class MemorySamples:
    indices: list[int]
    peak_gib: list[float]  # max NVML `used` per GPU over the sampling window
    samples: int  # sampling rounds (each reads every GPU)
    duration_s: float
    errors: int = 0
    cpu_s: float = 0.0  # CPU time of the sampler thread: its cost to the host
    # max NVML `used` per GPU in each `timeline_interval_s` window from `started_at` (time.monotonic() when sampling
    # began); None for a window without a sample (a stalled host). Which phase of a step peaks is read from it
    # against the times the steps' metrics lines were seen (suite/results/phases.py).
    timeline_gib: list[list[float | None]] = field(default_factory=list)
    timeline_interval_s: float = 1.0
    started_at: float | None = None

    @property
    def rate_hz(self) -> float | None:
        return self.samples / self.duration_s if self.duration_s > 0 and self.samples else None


class MemorySampler(PeriodicSampler[MemorySamples]):
    """Background thread reading NVML `used` of each GPU at `hz` and keeping the max per GPU.

    A thread (not a process): one NVML read is a few tens of microseconds, so 20 Hz on 8 GPUs costs well
    under 1 % of one core, and the GIL is released inside the NVML call."""

    thread_name = "nvml-sampler"

    def __init__(
        self, nvml: Any | None, indices: Sequence[int], hz: float = DEFAULT_HZ, timeline_interval_s: float = 1.0
    ) -> None:
        super().__init__(hz)
        self._nvml = nvml
        self.indices = list(indices)
        self._peak = [0.0] * len(self.indices)
        self._timeline = WindowMax(len(self.indices), timeline_interval_s)
        self._samples = 0
        self._errors = 0
        self._handles: list[Any] = []

    @property
    def enabled(self) -> bool:
        return self._nvml is not None and bool(self.indices)

    def _begin(self) -> bool:
        if not self.enabled:
            return False
        try:
            self._handles = [self._nvml.nvmlDeviceGetHandleByIndex(i) for i in self.indices]
        except Exception:
            self._nvml = None  # bad index or NVML gone: record nothing rather than wrong numbers
            return False
        self._timeline.start()
        return True

    def sample_once(self) -> None:
        now = time.monotonic()
        for k, h in enumerate(self._handles):
            try:
                used = self._nvml.nvmlDeviceGetMemoryInfo(h).used / GIB
            except Exception:
                self._errors += 1
                continue
            if used > self._peak[k]:
                self._peak[k] = used
            self._timeline.add(k, used, now)
        self._samples += 1

    def _summary(self, duration_s: float) -> MemorySamples:
        return MemorySamples(
            indices=self.indices,
            peak_gib=[round(p, 3) for p in self._peak],
            samples=self._samples,
            duration_s=duration_s,
            errors=self._errors,
            cpu_s=self._cpu_s,
            timeline_gib=self._timeline.rows(),
            timeline_interval_s=self._timeline.interval_s,
            started_at=self._timeline.started_at,
        )
