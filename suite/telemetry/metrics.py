"""verl's file-logger output (`{"step": N, "data": {...}}` per line) -> `Step`s and validation metrics.

Key names follow verl 0.9.1 with the older spellings as fallbacks (see DESIGN.md). Step 0 is the
validation before training when `trainer.val_before_train` is on: it has validation metrics but no perf
metrics, so it is kept as a validation record, not as a `Step`. A line that cannot be parsed (a run killed
mid-write leaves a partial last line) is skipped and counted, never fatal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from suite.results.schema import Step

THROUGHPUT = "perf/throughput"
TIME_PER_STEP = "perf/time_per_step"
TOTAL_TOKENS = "perf/total_num_tokens"
RESPONSE_LENGTH = "response_length/mean"
TIMING_PREFIX = "timing_s/"
MFU_KEYS = ("perf/mfu/actor", "actor/mfu")
ALLOCATED_KEYS = ("actor/perf/max_memory_allocated_gb", "perf/max_memory_allocated_gb")
RESERVED_KEYS = ("actor/perf/max_memory_reserved_gb", "perf/max_memory_reserved_gb")
VAL_PREFIXES = ("val-core/", "val-aux/")
_KNOWN = {THROUGHPUT, TIME_PER_STEP, TOTAL_TOKENS, RESPONSE_LENGTH, *MFU_KEYS, *ALLOCATED_KEYS, *RESERVED_KEYS}
# verl 0.7+: acc/mean@N; before: reward/mean@N (per data source).
ACC_SUFFIXES = ("/acc/mean@1", "/reward/mean@1")


@dataclass
class MetricsLog:
    steps: list[Step] = field(default_factory=list)
    # step -> {data_source: accuracy mean} from val-core metrics (step 0 = before training)
    val_accuracy: dict[int, dict[str, float]] = field(default_factory=dict)
    bad_lines: int = 0

    @property
    def last_step(self) -> int | None:
        return self.steps[-1].step if self.steps else None


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _first(data: dict, keys: Iterable[str]) -> float | None:
    for k in keys:
        v = _num(data.get(k))
        if v is not None:
            return v
    return None


def data_source_key(data_source: str) -> str:
    """'openai/gsm8k' -> 'gsm8k' (the key results use under `accuracy`)."""
    return data_source.rstrip("/").split("/")[-1].lower()


def val_accuracies(data: dict) -> dict[str, float]:
    """{data_source_key: mean} from `val-core/<data_source>/acc/mean@1` (or the older reward key)."""
    out: dict[str, float] = {}
    for suffix in ACC_SUFFIXES:
        for k, v in data.items():
            if k.startswith("val-core/") and k.endswith(suffix):
                src = data_source_key(k[len("val-core/") : -len(suffix)])
                num = _num(v)
                if num is not None and src not in out:
                    out[src] = num
    return out


def step_from_data(step: int, data: dict) -> Step | None:
    """A `Step` when the line carries the perf metrics of a training step, else None."""
    throughput = _num(data.get(THROUGHPUT))
    time_per_step = _num(data.get(TIME_PER_STEP))
    if throughput is None or time_per_step is None:
        return None
    response = _num(data.get(RESPONSE_LENGTH))
    timing = {
        k[len(TIMING_PREFIX) :]: f
        for k, v in data.items()
        if k.startswith(TIMING_PREFIX) and (f := _num(v)) is not None
    }
    extra = {
        k: f
        for k, v in data.items()
        if k not in _KNOWN
        and not k.startswith(TIMING_PREFIX)
        and not k.startswith(VAL_PREFIXES)
        and (f := _num(v)) is not None
    }
    return Step(
        step=step,
        throughput=throughput,
        time_per_step=time_per_step,
        response_length_mean=response if response is not None else 0.0,
        total_num_tokens=_num(data.get(TOTAL_TOKENS)),
        timing_s=timing,
        torch_max_memory_allocated_gb=_first(data, ALLOCATED_KEYS),
        torch_max_memory_reserved_gb=_first(data, RESERVED_KEYS),
        mfu=_first(data, MFU_KEYS),
        extra=extra,
    )


def parse_line(line: str) -> tuple[int, dict] | None:
    line = line.strip()
    if not line:
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), dict):
        return None
    step = obj.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return None
    return step, obj["data"]


def parse_metrics(lines: Iterable[str]) -> MetricsLog:
    log = MetricsLog()
    by_step: dict[int, Step] = {}
    for line in lines:
        if not line.strip():
            continue
        parsed = parse_line(line)
        if parsed is None:
            log.bad_lines += 1
            continue
        step, data = parsed
        acc = val_accuracies(data)
        if acc:
            log.val_accuracy[step] = acc
        s = step_from_data(step, data)
        if s is not None:
            by_step[step] = s  # a resumed verl run re-logs a step: the later line wins
    log.steps = [by_step[k] for k in sorted(by_step)]
    return log


def read_metrics(path: str | Path) -> MetricsLog:
    p = Path(path)
    if not p.exists():
        return MetricsLog()
    with p.open(encoding="utf-8", errors="replace") as fh:
        return parse_metrics(fh)
