"""Progress over a matrix run: a rich live table on a terminal, one plain line per finished cell otherwise.

The runner calls `started` / `step` / `finished` (step comes from runtime threads, so state is locked).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any


@dataclass
class _Running:
    gpus: list[int] | None
    total_steps: int
    start: float = field(default_factory=time.monotonic)
    step: int | None = None


class Progress:
    def __init__(self, total: int, slots: int, *, stream: IO[str] | None = None, live: bool | None = None) -> None:
        self.total = total
        self.slots = max(1, slots)
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.done = 0
        self.failed = 0
        self._durations: list[float] = []
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._live: Any = None

    # -- events --------------------------------------------------------------------------------------
    def started(self, cell_id: str, gpus: list[int] | None, total_steps: int) -> None:
        with self._lock:
            self._running[cell_id] = _Running(gpus, total_steps)
        self._refresh()

    def step(self, cell_id: str, step: int) -> None:
        with self._lock:
            if cell_id in self._running:
                self._running[cell_id].step = step
        self._refresh()

    def finished(self, cell_id: str, status: str, reused: bool = False) -> None:
        with self._lock:
            run = self._running.pop(cell_id, None)
            self.done += 1
            self.failed += status != "ok"
            if run is not None and not reused:
                self._durations.append(time.monotonic() - run.start)
            line = f"[{self.done}/{self.total}] {cell_id}: {status}" + (" (earlier result)" if reused else "")
        if self.live and self._live is not None:
            self._live.console.print(line)
        else:
            print(line, file=self.stream, flush=True)
        self._refresh()

    # -- estimate ------------------------------------------------------------------------------------
    def eta_s(self) -> float | None:
        """Mean duration of the cells run so far x the cells left / the slots working in parallel."""
        with self._lock:
            if not self._durations:
                return None
            mean = sum(self._durations) / len(self._durations)
            left = self.total - self.done
            in_flight = sum(max(0.0, mean - (time.monotonic() - r.start)) for r in self._running.values())
            waiting = max(0, left - len(self._running))
            return (in_flight + waiting * mean) / self.slots

    # -- display -------------------------------------------------------------------------------------
    def _render(self) -> Any:
        from rich.table import Table  # rich only for the live display on a terminal (it costs start-up time)

        eta = self.eta_s()
        title = (
            f"cells {self.done}/{self.total} done, {self.total - self.done} left, {self.failed} failed"
            f" | elapsed {time.monotonic() - self._t0:.0f} s" + (f" | ETA {eta:.0f} s" if eta is not None else "")
        )
        table = Table(title=title, title_justify="left", expand=False)
        for col in ("running cell", "GPUs", "step", "elapsed"):
            table.add_column(col)
        with self._lock:
            for cid, r in self._running.items():
                step = "starting" if r.step is None else f"{r.step}/{r.total_steps or '?'}"
                gpus = ",".join(map(str, r.gpus)) if r.gpus is not None else "all"
                table.add_row(cid, gpus, step, f"{time.monotonic() - r.start:.0f} s")
        return table

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def __enter__(self) -> Progress:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(
                self._render(), console=Console(file=self.stream), refresh_per_second=2, get_renderable=self._render
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None
