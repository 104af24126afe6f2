"""The lifecycle every background sampler shares (NVML, host memory): a daemon thread calling `sample_once`
at a fixed rate without bursting to catch up, its own CPU time measured, and an idempotent `stop` that takes
one final sample (a peak right at the end counts) and returns the subclass's summary."""

from __future__ import annotations

import threading
import time
from typing import Generic, Self, TypeVar

R = TypeVar("R")


class PeriodicSampler(Generic[R]):
    thread_name = "sampler"

    def __init__(self, hz: float) -> None:
        self._interval = 1.0 / hz
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._cpu_s = 0.0  # CPU time of the sampler thread: its cost to the host
        self.result: R | None = None

    # -- what a sampler fills in ------------------------------------------------------------------------
    def _begin(self) -> bool:
        """Set up before the thread starts; False: nothing to sample (stop then returns None)."""
        return True

    def sample_once(self) -> None:
        raise NotImplementedError

    def _summary(self, duration_s: float) -> R:
        raise NotImplementedError

    # -- the lifecycle ----------------------------------------------------------------------------------
    def start(self) -> Self:
        if not self._begin():
            return self
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        cpu0 = time.thread_time()
        try:
            self._run()
        finally:
            self._cpu_s = time.thread_time() - cpu0

    def _run(self) -> None:
        next_t = time.perf_counter()
        while not self._stop.is_set():
            self.sample_once()
            next_t += self._interval
            delay = next_t - time.perf_counter()
            if delay < 0:  # fell behind (suspended machine, slow /proc): do not burst to catch up
                next_t = time.perf_counter()
                delay = 0
            self._stop.wait(delay)

    def stop(self) -> R | None:
        """The summary (None when nothing was sampled). Idempotent: later calls return the same."""
        if self._thread is None:
            return None
        if self._stop.is_set():
            return self.result
        self._stop.set()
        self._thread.join(timeout=5)
        t1 = time.perf_counter()
        self.sample_once()
        self.result = self._summary(t1 - self._t0)
        return self.result

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WindowMax:
    """The max of each of `width` series over consecutive windows of `interval_s`, from `started_at`
    (time.monotonic()): a sampler's timeline. A window without a sample of a series holds None."""

    def __init__(self, width: int, interval_s: float = 1.0) -> None:
        self.width = width
        self.interval_s = interval_s
        self.started_at: float | None = None
        self._windows: dict[int, list[float | None]] = {}

    def start(self, now: float | None = None) -> None:
        self.started_at = time.monotonic() if now is None else now

    def add(self, k: int, value: float, now: float | None = None) -> None:
        """Series `k`'s reading at `now` (default: time.monotonic())."""
        t = time.monotonic() if now is None else now
        start = self.started_at if self.started_at is not None else t
        window = self._windows.setdefault(int((t - start) / self.interval_s), [None] * self.width)
        seen = window[k]
        if seen is None or value > seen:
            window[k] = value

    def rows(self, digits: int = 3) -> list[list[float | None]]:
        """One row per window from the first to the last with a sample, one column per series."""
        if not self._windows:
            return []
        gap: list[float | None] = [None] * self.width
        return [
            [None if v is None else round(v, digits) for v in self._windows.get(i, gap)]
            for i in range(max(self._windows) + 1)
        ]
