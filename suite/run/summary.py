"""The table printed at the end of `grpo-suite run` (plain data in, text out)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from tabulate import tabulate

from suite.run.runner import CellOutcome


def _clip(s: str | None, n: int) -> str:
    if not s:
        return ""
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def rows(outcomes: Sequence[CellOutcome]) -> list[list[object]]:
    out: list[list[object]] = []
    for o in outcomes:
        r = o.result
        if r is None:
            out.append([o.cell.full_id, "not run", "", "", "", "", "", "", ""])
            continue
        measured = r.measured_steps()
        tput = statistics.median(s.throughput for s in measured) if measured else None
        tps = statistics.median(s.time_per_step for s in measured) if measured else None
        rlen = statistics.fmean(s.response_length_mean for s in measured) if measured else None
        peak = r.peak_memory_worst_gb
        status = r.status + (" (earlier)" if o.reused else "")
        out.append(
            [
                r.id,
                status,
                len(measured),
                f"{tput:.0f}" if tput is not None else "",
                f"{tps:.2f}" if tps is not None else "",
                f"{rlen:.0f}" if rlen is not None else "",
                f"{peak:.1f}" if peak is not None else "",
                f"{r.wall_s:.0f}" if r.wall_s is not None else "",
                _clip(r.reason, 70),
            ]
        )
    return out


HEADERS = ["cell", "status", "steps", "tok/s/GPU", "s/step", "resp len", "NVML peak GiB", "wall s", "reason"]


def table(outcomes: Sequence[CellOutcome]) -> str:
    return tabulate(rows(outcomes), headers=HEADERS, tablefmt="github", disable_numparse=True)
