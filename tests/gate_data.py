"""The ONE source of test data for the gate: `base_results()`, the committed H100 baselines of the 2026-11-28
gate matrices (`baselines/h100/{h100-1gpu-graphs,h100-1gpu-oom}/**/*.json`: real per-step samples from 1x H100,
see baselines/evidence/2026-11-28-h100x4-short/). Later H100 baselines (heavy models) are not gate test data:
the tests' expectations were written against these cells, so they are selected by matrix, not by folder.

Every other helper here derives test inputs from those results (shift, resample, perturb); none invents a
throughput distribution of its own. The real baselines hold one run per cell; `with_runs()` adds repeats whose
measured steps are drawn with replacement from the real ones, for tests about pooling several runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from suite.gate.store import Baseline, baseline_path, read_baseline  # noqa: E402
from suite.results.schema import Result  # noqa: E402
from suite.results.sentinels import PROBS_DIFF_MEAN  # noqa: E402

REAL_BASELINES = ROOT / "baselines" / "h100"
GATE_MATRICES = ("h100-1gpu-graphs", "h100-1gpu-oom")
# The host-memory tests' data: the 7B cells of 2026-12-06 (1x H100), whose runs recorded their process tree's
# host peak (the 2026-11-28 cells predate the host sampler)
HOST_MATRIX = "h100-1gpu-7b-fa"


def real_baseline_paths() -> list[Path]:
    return sorted(p for m in GATE_MATRICES for p in (REAL_BASELINES / m).rglob("*.json"))


def real_baselines() -> list[Baseline]:
    return [read_baseline(p) for p in real_baseline_paths()]


def base_results() -> list[list[Result]]:
    """Per cell, the runs of its committed baseline (status ok only)."""
    real = [b.results for b in real_baselines() if b.results[0].status == "ok"]
    if not real:
        raise RuntimeError(f"no committed baselines under {REAL_BASELINES}: the gate tests are built on them")
    return real


def host_results() -> list[list[Result]]:
    """Per cell of HOST_MATRIX, the runs of its committed baseline: the recipe (offloaded, ~109 GiB of host
    memory) first, then the cell without offload (~54 GiB)."""
    runs = [read_baseline(p).results for p in sorted((REAL_BASELINES / HOST_MATRIX).rglob("*.json"))]
    runs = [r for r in runs if r[0].status == "ok" and r[0].host_peak_memory_gb is not None]
    if len(runs) < 2:
        raise RuntimeError(f"no committed baselines with host peaks under {REAL_BASELINES / HOST_MATRIX}")
    return sorted(runs, key=lambda r: -(r[0].host_peak_memory_gb or 0.0))


def with_runs(runs: list[Result], n: int = 3, seed: int = 20261128) -> list[Result]:
    """`runs` plus repeats up to n runs: each repeat keeps the first run's warm-up steps and draws its measured
    steps with replacement from the real measured steps (what a repeat of the bench could look like)."""
    rng = np.random.default_rng(seed)
    out = list(runs)
    while len(out) < n:
        out.extend(resampled(runs[:1], rng))
    return out


# --- derived inputs -------------------------------------------------------------------------------------


def scaled(run: Result, factor: float, *, memory_gb: float = 0.0) -> Result:
    """The same run with every measured step's throughput x factor (step time / factor)."""
    steps = [
        s.model_copy(update={"throughput": s.throughput * factor, "time_per_step": s.time_per_step / factor})
        if s.step > run.warmup_steps
        else s
        for s in run.steps
    ]
    peaks = [p + memory_gb for p in run.peak_memory_gb]
    return run.model_copy(update={"steps": steps, "peak_memory_gb": peaks})


def host_shifted(run: Result, gib: float, *, system_fraction: float | None = None) -> Result:
    """The same run with its process tree's host peak + gib (and the host's used peak at `system_fraction` of its
    total, when given)."""
    assert run.host_peak_memory_gb is not None and run.host_memory_total_gb is not None
    update: dict = {"host_peak_memory_gb": round(run.host_peak_memory_gb + gib, 3)}
    if system_fraction is not None:
        update["host_system_peak_memory_gb"] = round(system_fraction * run.host_memory_total_gb, 3)
    return run.model_copy(update=update)


def drifted(run: Result, factor: float, key: str = PROBS_DIFF_MEAN, value: float | None = None) -> Result:
    """`run` with one per-step metric scaled by `factor` (or set to `value`) in every step: a drifting rollout."""
    steps = [
        s.model_copy(update={"extra": {**s.extra, key: value if value is not None else s.extra[key] * factor}})
        for s in run.steps
    ]
    return run.model_copy(update={"steps": steps})


def resampled(runs: list[Result], rng: np.random.Generator, factor: float = 1.0) -> list[Result]:
    """New runs of the same shape whose measured steps are drawn with replacement from all the runs'
    measured steps (x factor): what a repeat of the bench would look like if steps were exchangeable."""
    pool = [s for r in runs for s in r.measured_steps()]
    out = []
    for run in runs:
        measured = [pool[i] for i in rng.integers(0, len(pool), size=len(run.measured_steps()))]
        warm = [s for s in run.steps if s.step <= run.warmup_steps]
        steps = warm + [
            s.model_copy(
                update={
                    "step": run.warmup_steps + 1 + i,
                    "throughput": s.throughput * factor,
                    "time_per_step": s.time_per_step / factor,
                }
            )
            for i, s in enumerate(measured)
        ]
        out.append(run.model_copy(update={"steps": steps}))
    return out


def write_results(runs: list[Result], folder: Path) -> list[Path]:
    paths = []
    for i, run in enumerate(runs):
        path = folder / f"run{i}" / run.id / "result.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run.to_json())
        paths.append(path)
    return paths


def write_baseline(runs: list[Result], root: Path) -> Path:
    """The runs as one baseline at the store layout `<root>/<gen>/<matrix>/<full id>.json`."""
    path = baseline_path(root, runs[0].gpu, runs[0].matrix, runs[0].id)
    path.parent.mkdir(parents=True, exist_ok=True)
    baseline = Baseline(id=runs[0].id, gpu=runs[0].gpu, promoted_at="2026-11-28T00:00:00+00:00", results=runs)
    path.write_text(baseline.to_json())
    return path
