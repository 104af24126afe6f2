"""Follow verl's metrics file while a cell runs: progress callbacks and the time of the first step.

The file is polled (no inotify: it may sit on NFS or a bind mount), only complete lines are read, and a
truncated file (verl opens it with "wb" when a run starts) is followed from its new beginning.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from suite.telemetry.metrics import TIME_PER_STEP, parse_line
from suite.telemetry.tail import LineTail


class MetricsWatcher(LineTail):
    name = "metrics-watch"
    follow_truncation = True

    def __init__(self, path: str | Path, on_step: Callable[[int], None] | None = None, poll_s: float = 0.5) -> None:
        super().__init__(path, poll_s)
        self._on_step = on_step
        # time.monotonic() when the first metrics line / first training step line was seen
        self.first_line_time: float | None = None
        self.first_step_time: float | None = None
        self.last_step: int | None = None
        # time.monotonic() when each training step's line was seen (within one poll of verl writing it)
        self.step_seen: dict[int, float] = {}

    def start(self) -> MetricsWatcher:
        super().start()
        return self

    def on_lines(self, lines: list[str]) -> None:
        now = time.monotonic()
        for line in lines:
            parsed = parse_line(line)
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
