"""`grpo-suite baseline calibrate`: each cell's tolerances from its baseline's own runs.

The thresholds file says "3 % is a regression" for every cell; a cell whose runs differ by 4 % from one
process start to the next would then fail on its own noise, and one whose runs agree to 0.5 % would let a
2 % loss through. Following Megatron-LM's functional tests (a tolerance from repeated golden runs: the
largest deviation observed, times a safety factor), the tolerance of a cell is

    factor x max over runs |run value / median run value - 1|       (throughput, a fraction)
    factor x max over runs |run peak - median run peak|              (NVML peak of the worst GPU, GiB)
    factor x max over runs |run host peak - median run host peak|    (the process tree's host RSS peak, GiB)

never below `[calibration] throughput_floor` / `memory_floor_gib` / `host_memory_floor_gib`, from at least `min_runs` ok runs. The run
value is the run's window throughput (its measured tokens over its measured seconds). The gate uses a
cell's calibration where present and the thresholds file otherwise, and says which.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from suite.gate.cells import window_throughput
from suite.gate.config import CalibrationSettings
from suite.results.baseline import Baseline, Calibration


@dataclass(frozen=True)
class Outcome:
    calibration: Calibration | None
    reason: str  # why not, when calibration is None; what was derived otherwise


def _spread(values: Sequence[float], *, relative: bool) -> float:
    mid = statistics.median(values)
    return max(abs(v / mid - 1.0) if relative else abs(v - mid) for v in values)


def calibrate(baseline: Baseline, settings: CalibrationSettings, at: str) -> Outcome:
    ok = [r for r in baseline.results if r.status == "ok"]
    tput = [w for r in ok if (w := window_throughput([r])) is not None]
    if len(tput) < settings.min_runs:
        return Outcome(
            None,
            f"{len(tput)} ok run(s) with measured steps; calibrating needs at least {settings.min_runs} "
            "(promote more runs of the cell: grpo-suite run ... --out runs/1, runs/2, runs/3)",
        )
    peaks = [p for r in ok if (p := r.peak_memory_worst_gb) is not None]
    t_tol = max(settings.factor * _spread(tput, relative=True), settings.throughput_floor)
    m_tol = max(settings.factor * _spread(peaks, relative=False), settings.memory_floor_gib) if peaks else None
    host = [p for r in ok if (p := r.host_peak_memory_gb) is not None]
    h_tol = max(settings.factor * _spread(host, relative=False), settings.host_memory_floor_gib) if host else None
    calibration = Calibration(
        calibrated_at=at,
        runs=len(tput),
        factor=settings.factor,
        throughput_tolerance=round(min(t_tol, 0.99), 6),
        memory_tolerance_gib=round(m_tol if m_tol is not None else settings.memory_floor_gib, 4),
        throughput_runs=[round(v, 3) for v in tput],
        memory_runs=[round(v, 3) for v in peaks],
        host_memory_tolerance_gib=round(h_tol, 4) if h_tol is not None else None,
        host_memory_runs=[round(v, 3) for v in host],
    )
    mem = f"memory ±{calibration.memory_tolerance_gib:.2f} GiB" if peaks else "memory: no NVML peak (floor used)"
    hmem = f", host memory ±{h_tol:.2f} GiB" if h_tol is not None else ""
    return Outcome(
        calibration,
        f"throughput ±{calibration.throughput_tolerance:.2%}, {mem}{hmem} from {calibration.runs} runs",
    )
