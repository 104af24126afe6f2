"""Measured steps as fitting samples, the fit itself (non-negative least squares on relative errors, one phase
at a time) and the comparison of predictions with measurements, in sample or leaving each cell out."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from suite.errors import InputError
from suite.memory.calibration import Calibration, default_calibration
from suite.memory.settings import MemorySettings, settings_from_result
from suite.results.schema import Result
from suite.speed.constants import RUN_FEATURES, Constants
from suite.speed.model import SpeedPrediction, predict_work, run_features
from suite.speed.work import FEATURES, PHASES, Lengths, Work, work

# a phase's error is relative to its time plus this many seconds, so a phase that takes ~0 s (no reference
# pass) neither dominates the fit nor reads as an infinite miss
FLOOR_S = 1.0


@dataclass(frozen=True)
class Sample:
    """One measured run: its work and the medians of its measured steps."""

    key: str  # gpu:matrix/cell@start time
    group: str  # the cell, whatever run measured it: left out together
    matrix: str
    cell: str
    model: str
    gpu: str
    flash_attn: bool
    settings: MemorySettings
    lengths: Lengths
    work: Work
    phases_s: dict[str, float]
    step_s: float
    tokens_per_s_per_gpu: float
    steps: int
    to_fit_s: float | None
    warmup_extra_s: float | None
    teardown_s: float | None
    total_steps: int  # steps the run logged, warm-up included
    wall_s: float | None  # process start to end, for a run that ended ok

    def run_parts_s(self) -> dict[str, float | None]:
        """The measured parts of the run around the steps, by RUN_FEATURES' names (None: not measured)."""
        return {"to_fit": self.to_fit_s, "warmup_extra": self.warmup_extra_s, "teardown": self.teardown_s}


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def sample_from_result(r: Result, calibration: Calibration, *, prompt_tokens: float) -> Sample | None:
    """None for a run the model does not cover (Megatron, an unknown architecture) or without measured steps
    that carry verl's phase timings."""
    steps = [s for s in r.measured_steps() if s.timing_s.get("step") and s.timing_s.get("gen") is not None]
    if not steps or r.backend != "fsdp":
        return None
    try:
        st = settings_from_result(r)
    except InputError:
        return None
    prompts = [s.extra["prompt_length/mean"] for s in steps if "prompt_length/mean" in s.extra]
    lengths = Lengths(
        prompt=_median(prompts) if prompts else min(prompt_tokens, st.prompt_length),
        response=_median([s.response_length_mean for s in steps]),
    )
    named = {p: _median([s.timing_s.get(p, 0.0) for s in steps]) for p in PHASES if p != "other"}
    step = _median([s.timing_s["step"] for s in steps])
    named["other"] = max(0.0, step - sum(named.values()))
    warm = [s for s in r.steps if 1 <= s.step <= r.warmup_steps]
    extra = warm[0].time_per_step - step if warm else None
    last_seen = max((s.seen_s for s in r.steps if s.seen_s is not None), default=None)
    teardown = r.wall_s - last_seen if (r.wall_s and last_seen and r.status == "ok") else None
    fa = bool(st.flash_attn_cross_entropy)
    cell = r.id.split("/")[-1]
    return Sample(
        key=f"{r.gpu}:{r.matrix}/{cell}@{r.provenance.start_time or r.wall_s}",
        group=f"{r.gpu}:{r.model}:{cell}:{'fa' if fa else 'nofa'}",
        matrix=r.matrix,
        cell=cell,
        model=r.model.split(":")[-1].split("/")[-1],
        gpu=r.gpu,
        flash_attn=fa,
        settings=st,
        lengths=lengths,
        work=work(st, calibration, lengths),
        phases_s=named,
        step_s=step,
        tokens_per_s_per_gpu=_median([s.throughput for s in steps]),
        steps=len(steps),
        to_fit_s=r.startup_breakdown_s.get("ready_to_fit"),
        warmup_extra_s=extra,
        teardown_s=teardown,
        total_steps=sum(1 for s in r.steps if s.step >= 1),
        wall_s=r.wall_s if r.status == "ok" else None,
    )


def samples_from_results(
    results: Iterable[Result], calibration: Calibration | None = None, *, prompt_tokens: float = 89.0
) -> list[Sample]:
    """One sample per run (a run kept both as evidence and in the store counts once), in key order."""
    c = calibration or default_calibration()
    out: dict[str, Sample] = {}
    for r in results:
        s = sample_from_result(r, c, prompt_tokens=prompt_tokens)
        if s is not None:
            out.setdefault(s.key, s)
    return [out[k] for k in sorted(out)]


def measured_samples(paths: Iterable[str | Path]) -> list[Sample]:
    """Every measured FSDP run under `paths` as a sample: result files, the store's baselines and evidence folders
    (a run that is not a baseline still measured its steps); a file that does not read is skipped with a warning."""
    from suite.results.collect import load_results

    return samples_from_results(r for _, r in load_results(paths, baselines=True, on_error="skip"))


def _solve(rows: list[dict[str, float]], targets: list[float], names: tuple[str, ...]) -> dict[str, float]:
    """Non-negative constants minimising the squared relative errors; a feature no row uses gets 0."""
    if not rows:
        return dict.fromkeys(names, 0.0)
    a = np.array([[r[n] for n in names] for r in rows], dtype=float)
    b = np.array(targets, dtype=float)
    w = 1.0 / (b + FLOOR_S)
    scale = np.abs(a).max(axis=0)
    scale[scale == 0] = 1.0
    x, _ = nnls((a / scale) * w[:, None], b * w)
    return {n: float(v / s) for n, v, s in zip(names, x, scale, strict=True)}


def fit(samples: Sequence[Sample], *, prompt_tokens: float | None = None) -> Constants:
    if not samples:
        raise InputError("nothing to fit: no measured FSDP run with verl's phase timings")
    phases = {
        p: _solve([s.work.features[p] for s in samples], [s.phases_s[p] for s in samples], names)
        for p, names in FEATURES.items()
    }
    run: dict[str, dict[str, float]] = {}
    for part, names in RUN_FEATURES.items():
        have = [(s, v) for s in samples if (v := s.run_parts_s()[part]) is not None]
        run[part] = _solve([run_features(s.settings, s.step_s)[part] for s, _ in have], [v for _, v in have], names)
    mean_prompt = prompt_tokens if prompt_tokens is not None else _median([s.lengths.prompt for s in samples])
    return Constants(
        phases=phases,
        run=run,
        prompt_tokens=mean_prompt,
        max_gpus=max(s.settings.n_gpus for s in samples),
        fitted_on=tuple(s.key for s in samples),
    )


@dataclass(frozen=True)
class SpeedRow:
    """A measured run against its prediction."""

    key: str
    matrix: str
    cell: str
    model: str
    gpu: str
    flash_attn: bool
    steps: int
    measured_s: float
    predicted_s: float
    measured_phases_s: dict[str, float]
    predicted_phases_s: dict[str, float]
    measured_tps: float
    predicted_tps: float
    kv_waves: float
    out_of_sample: bool
    measured_run_s: float | None  # the run's wall time, where it ended ok
    predicted_run_s: float  # the model's for the same number of steps

    @property
    def error(self) -> float:
        """Predicted over measured step time, less one."""
        return self.predicted_s / self.measured_s - 1.0

    @property
    def run_error(self) -> float | None:
        if not self.measured_run_s:
            return None
        return self.predicted_run_s / self.measured_run_s - 1.0


def row(s: Sample, p: SpeedPrediction, *, out_of_sample: bool) -> SpeedRow:
    return SpeedRow(
        key=s.key,
        matrix=s.matrix,
        cell=s.cell,
        model=s.model,
        gpu=s.gpu,
        flash_attn=s.flash_attn,
        steps=s.steps,
        measured_s=s.step_s,
        predicted_s=p.step_s,
        measured_phases_s=dict(s.phases_s),
        predicted_phases_s=dict(p.phases_s),
        measured_tps=s.tokens_per_s_per_gpu,
        predicted_tps=p.tokens_per_s_per_gpu,
        kv_waves=p.kv_waves,
        out_of_sample=out_of_sample,
        measured_run_s=s.wall_s,
        predicted_run_s=p.run_s(s.total_steps),
    )


def compare(samples: Sequence[Sample], constants: Constants) -> list[SpeedRow]:
    """Each sample against the given constants (out of sample where they were not fitted on it)."""
    fitted = set(constants.fitted_on)
    return [row(s, predict_work(s.work, s.settings, constants), out_of_sample=s.key not in fitted) for s in samples]


def leave_one_out(samples: Sequence[Sample], *, prompt_tokens: float) -> list[SpeedRow]:
    """Each cell predicted by constants fitted on every other cell (all runs of the cell left out)."""
    rows = []
    for s in samples:
        rest = [o for o in samples if o.group != s.group]
        k = replace(fit(rest, prompt_tokens=prompt_tokens), fitted_on=())
        rows.append(row(s, predict_work(s.work, s.settings, k), out_of_sample=True))
    return rows


@dataclass(frozen=True)
class SpeedSummary:
    n: int
    median_abs_error: float
    worst_error: float
    within_10: int
    within_20: int
    runs: int = 0  # rows with a measured wall time
    run_median_abs_error: float | None = None


def summarize(rows: Sequence[SpeedRow]) -> SpeedSummary:
    if not rows:
        return SpeedSummary(0, math.nan, math.nan, 0, 0)
    errs = [r.error for r in rows]
    run_errs = [abs(e) for r in rows if (e := r.run_error) is not None]
    return SpeedSummary(
        n=len(rows),
        median_abs_error=_median([abs(e) for e in errs]),
        worst_error=max(errs, key=abs),
        within_10=sum(abs(e) <= 0.10 for e in errs),
        within_20=sum(abs(e) <= 0.20 for e in errs),
        runs=len(run_errs),
        run_median_abs_error=_median(run_errs) if run_errs else None,
    )
