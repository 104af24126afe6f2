"""Where a cell's start-up goes: the first time each milestone line shows up in its log.

verl writes nothing timed before its first step, so the log is followed while the cell runs (polled, like the
metrics file: resolution `poll_s`) and each milestone gets the seconds since the process started. Milestones
are lines verl 0.9.1, Ray and vLLM print; one that never shows up is simply absent.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from pathlib import Path

from suite.telemetry.tail import LineTail

MILESTONES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(p))
    for name, p in (
        ("imports_done", r"ray init kwargs"),  # verl main_ppo, right before ray.init()
        ("ray_started", r"Started a local Ray instance|Connected to Ray cluster|Connecting to existing Ray"),
        # verl 0.9.1's v1 trainer logs these at INFO. The vllm_* lines need VLLM_LOGGING_LEVEL=INFO, which the
        # host runtime sets (suite.run.cellenv.vllm_defaults); verl's own default WARN hides them.
        ("data_loaded", r"train and validate dataloader initialized"),
        ("actor_initialized", r"actor and ref model engine initialized"),
        ("vllm_weights_loaded", r"Loading weights took|Model loading took"),
        ("vllm_compiled", r"torch\.compile (?:takes?|took) [\d.]+ s in total"),
        ("vllm_graphs_captured", r"Graph capturing finished"),
        ("vllm_engine_ready", r"init engine (\(profile, create kv cache, warmup model\) )?took"),
        ("ready_to_fit", r"all initialize finished, ready to fit"),
        ("validation_started", r"test_gen_batch meta info"),
    )
)


# What the time up to each milestone was spent on (since the previous milestone seen), for tables.
PHASE_LABELS: dict[str, str] = {
    "imports_done": "imports",
    "ray_started": "Ray",
    "data_loaded": "data",
    "actor_initialized": "actor init",
    "vllm_weights_loaded": "vLLM start",
    "vllm_compiled": "compile",
    "vllm_graphs_captured": "graphs",
    "vllm_engine_ready": "engine",
    "ready_to_fit": "to fit",
    "validation_started": "pre-validation",
    "first_step": "step 1",
}


def phase_durations(breakdown: dict[str, float]) -> dict[str, float]:
    """Seconds before each milestone since the previous one seen (pure). A milestone that never showed up
    folds its time into the next one seen; `first_step` (the end of step 1) closes the list."""
    out: dict[str, float] = {}
    prev = 0.0
    for name in PHASE_LABELS:
        if name in breakdown:
            t = breakdown[name]
            out[name] = round(max(0.0, t - prev), 2)
            prev = max(prev, t)
    return out


def milestones_in(lines: list[str]) -> list[str]:
    """Names of the milestones these lines reach, in MILESTONES order (pure; for tests and ingest)."""
    return [name for name, pat in MILESTONES if any(pat.search(x) for x in lines)]


# Timestamps the milestone lines carry: Ray's and verl's logging (`2026-12-04 04:01:39,305`), vLLM's
# (`INFO 12-04 04:04:29`: no year).
_FULL_STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:[,.](\d{1,6}))?")
_VLLM_STAMP = re.compile(r"\b(?:INFO|WARNING|DEBUG|ERROR) (\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\b")


def line_time(line: str, year: int) -> datetime | None:
    """The wall-clock time a log line says it was written, or None (pure). vLLM's lines carry no year: `year`."""
    if m := _FULL_STAMP.search(line):
        y, mo, d, h, mi, s, frac = m.groups()
        micro = int((frac or "0").ljust(6, "0"))
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro)
    if m := _VLLM_STAMP.search(line):
        mo, d, h, mi, s = map(int, m.groups())
        return datetime(year, mo, d, h, mi, s)
    return None


def milestones_from_timestamps(lines: list[str], started_at: datetime) -> dict[str, float]:
    """Seconds from `started_at` (naive, the log's clock) to each milestone's first line, from the times those
    lines carry (pure). For a run whose result was never written (its host went away): `grpo-suite run` times
    milestones as it watches the log; this recovers them afterwards. A milestone whose first line carries no
    time (verl's `ray init kwargs`) is left out. The end of step 1 is never recovered: verl's step line has no
    time."""
    out: dict[str, float] = {}
    for name, pat in MILESTONES:
        line = next((x for x in lines if pat.search(x)), None)
        t = line_time(line, started_at.year) if line is not None else None
        if t is not None:
            # a vLLM line from the first days of January, of a run started in late December
            if t < started_at - timedelta(days=300):
                t = t.replace(year=t.year + 1)
            out[name] = round((t - started_at).total_seconds(), 2)
    return out


class LogWatcher(LineTail):
    name = "log-watch"
    read_max = 1 << 22
    partial_max = 65536

    def __init__(self, path: str | Path, t0: float, poll_s: float = 0.5) -> None:
        super().__init__(path, poll_s)
        self._t0 = t0  # time.monotonic() of the process start
        self.seen: dict[str, float] = {}

    def start(self) -> LogWatcher:
        super().start()
        return self

    def stop(self) -> dict[str, float]:  # type: ignore[override]
        super().stop()
        return dict(self.seen)

    def finished(self) -> bool:
        return len(self.seen) == len(MILESTONES)

    def on_lines(self, lines: list[str]) -> None:
        now = round(time.monotonic() - self._t0, 2)
        for text in lines:
            for name, pat in MILESTONES:
                if name not in self.seen and pat.search(text):
                    self.seen[name] = now
