"""The speed planner against the measured runs a report reads: each run's step predicted by constants fitted
without its cell (suite.speed.fit.leave_one_out), so the table is an out-of-sample test, never a fit shown to
agree with itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SpeedCheck:
    gpu: str
    model: str
    run: str  # matrix/cell
    flash_attn: bool
    steps: int
    measured_s: float
    predicted_s: float
    measured_tps: float
    predicted_tps: float

    @property
    def error(self) -> float:
        return self.predicted_s / self.measured_s - 1.0


@dataclass(frozen=True)
class SpeedChecks:
    rows: tuple[SpeedCheck, ...]
    median_abs_error: float
    within_10: int
    run_median_abs_error: float | None

    @property
    def summary(self) -> str:
        runs = (
            f"; the run's wall time, where it ended ok: {self.run_median_abs_error:.1%}"
            if self.run_median_abs_error is not None
            else ""
        )
        return (
            f"{len(self.rows)} runs, each predicted without its cell: median |error| of s/step "
            f"{self.median_abs_error:.1%}, {self.within_10} within 10 %{runs}."
        )


def speed_checks(paths: Iterable[Path]) -> SpeedChecks | None:
    """The check over every measured FSDP run under `paths` (store and evidence folders); None without one."""
    from suite.results.collect import load_results
    from suite.speed.constants import default_constants
    from suite.speed.fit import leave_one_out, samples_from_results, summarize

    results = [r for _, r in load_results(list(paths), baselines=True, skip_evidence=False, on_error="skip")]
    samples = samples_from_results(results)
    if not samples:
        return None
    rows = leave_one_out(samples, prompt_tokens=default_constants().prompt_tokens)
    s = summarize(rows)
    return SpeedChecks(
        rows=tuple(
            SpeedCheck(
                gpu=r.gpu,
                model=r.model,
                run=r.key.split(":", 1)[1].split("@")[0],
                flash_attn=r.flash_attn,
                steps=r.steps,
                measured_s=r.measured_s,
                predicted_s=r.predicted_s,
                measured_tps=r.measured_tps,
                predicted_tps=r.predicted_tps,
            )
            for r in sorted(rows, key=lambda r: (r.gpu, r.model, r.key))
        ),
        median_abs_error=s.median_abs_error,
        within_10=s.within_10,
        run_median_abs_error=s.run_median_abs_error,
    )
