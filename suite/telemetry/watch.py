"""Follow verl's metrics file while a cell runs: progress callbacks and the time of the first step.

The file is polled (no inotify: it may sit on NFS or a bind mount), only complete lines are read, and a
truncated file (verl opens it with "wb" when a run starts) is followed from its new beginning.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

from suite.telemetry.metrics import TIME_PER_STEP, parse_line


class MetricsWatcher:
    def __init__(self, path: str | Path, on_step: Callable[[int], None] | None = None, poll_s: float = 0.5) -> None:
        self.path = Path(path)
        self._on_step = on_step
        self._poll_s = poll_s
        self._offset = 0
        self._buf = b""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # time.monotonic() when the first metrics line / first training step line was seen
        self.first_line_time: float | None = None
        self.first_step_time: float | None = None
        self.last_step: int | None = None
        # time.monotonic() when each training step's line was seen (within one poll of verl writing it)
        self.step_seen: dict[int, float] = {}

    def start(self) -> MetricsWatcher:
        self._thread = threading.Thread(target=self._loop, name="metrics-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.poll()  # lines written between the last poll and the process exit

    def _loop(self) -> None:
        while not self._stop.wait(self._poll_s):
            self.poll()

    def poll(self) -> None:
        try:
            size = self.path.stat().st_size
        except OSError:
            return
        if size < self._offset:
            self._offset, self._buf = 0, b""
        if size == self._offset:
            return
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read(size - self._offset)
        except OSError:
            return
        self._offset += len(chunk)
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        now = time.monotonic()
        for raw in lines:
            parsed = parse_line(raw.decode("utf-8", errors="replace"))
            if parsed is None:
                continue
            step, data = parsed
            if self.first_line_time is None:
                self.first_line_time = now
            if TIME_PER_STEP in data:
                if self.first_step_time is None:
                    self.first_step_time = now
                self.last_step = step
                self.step_seen.setdefault(step, now)
                if self._on_step is not None:
                    # a progress display must never break a run
                    with contextlib.suppress(Exception):
                        self._on_step(step)
