"""A fake of the pynvml functions the suite calls, for CPU tests of our NVML logic (not of NVML)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

GIB = 1 << 30


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    total: int = 80 * GIB
    used: list[int] = field(default_factory=lambda: [GIB // 2])  # successive readings; the last repeats
    processes: int = 0
    reads: int = 0


class FakeNvml:
    def __init__(self, gpus: list[FakeGpu], driver: str = "580.95.05", cuda: int = 13000) -> None:
        self.gpus = gpus
        self.driver = driver
        self.cuda = cuda
        self.lock = threading.Lock()
        self.shutdowns = 0

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:
        if not 0 <= i < len(self.gpus):
            raise ValueError(f"NVMLError_InvalidArgument: index {i}")
        return self.gpus[i]

    def nvmlDeviceGetName(self, h: FakeGpu) -> bytes:
        return h.name.encode()

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> SimpleNamespace:
        with self.lock:
            used = h.used[min(h.reads, len(h.used) - 1)]
            h.reads += 1
        return SimpleNamespace(total=h.total, used=used, free=h.total - used)

    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeGpu) -> list[object]:
        return [object()] * h.processes

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1
