"""The speed planner against the measured runs a report reads: each run's step predicted by constants fitted
without its cell (suite.speed.fit.leave_one_out), so the table is an out-of-sample test, never a fit shown to
agree with itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from suite.speed.fit import SpeedRow, SpeedSummary


@dataclass(frozen=True)
class SpeedChecks:
    rows: tuple[SpeedRow, ...]  # by GPU, model, then run
    stats: SpeedSummary

    @property
    def summary(self) -> str:
        s = self.stats
        runs = (
            f"; the run's wall time, where it ended ok: {s.run_median_abs_error:.1%}"
            if s.run_median_abs_error is not None
            else ""
        )
        return (
            f"{len(self.rows)} runs, each predicted without its cell: median |error| of s/step "
            f"{s.median_abs_error:.1%}, {s.within_10} within 10 %{runs}."
        )


def speed_checks(paths: Iterable[Path]) -> SpeedChecks | None:
    """The check over every measured FSDP run under `paths` (store and evidence folders); None without one."""
    from suite.speed.constants import default_constants
    from suite.speed.fit import leave_one_out, measured_samples, summarize

    samples = measured_samples(paths)
    if not samples:
        return None
    rows = leave_one_out(samples, prompt_tokens=default_constants().prompt_tokens)
    return SpeedChecks(tuple(sorted(rows, key=lambda r: (r.gpu, r.model, r.key))), summarize(rows))
