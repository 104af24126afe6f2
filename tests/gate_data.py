"""The ONE source of test data for the gate: `base_results()`.

It loads the committed H100 baselines (`baselines/h100/**/*.json`) when there are any. Until they land it
falls back to a STAND-IN: one cell shaped after the Qwen2.5-0.5B run recorded in ../shared/gpu/README.md
(H100, LoRA r8, 16 prompts x 4 responses x 128 tokens: 630-714 tokens/s/GPU, 15.2-17.3 s/step, NVML peak
28.6 GiB), 3 runs x 10 steps (2 warm-up) with seeded noise. Stand-in numbers are not GPU measurements: once
real baselines are committed, delete `_stand_in()` and the fallback.

Every other helper here derives test inputs from those results (shift, resample, perturb); none invents a
throughput distribution of its own.

`python tests/gate_data.py DIR` writes the stand-in as a baseline store under DIR (for trying
benchmarks/gate_power.py before real baselines exist).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from suite.gate.store import Baseline, read_baseline  # noqa: E402
from suite.results.schema import Provenance, Result, Step  # noqa: E402

REAL_BASELINES = ROOT / "baselines" / "h100"
STAND_IN_ID = "qwen2.5-0.5b/h100x1/fsdp/lora8-off_none-tp1-rb16"


def real_baselines() -> list[Baseline]:
    return [read_baseline(p) for p in sorted(REAL_BASELINES.rglob("*.json"))] if REAL_BASELINES.is_dir() else []


def using_stand_in() -> bool:
    return not real_baselines()


def base_results() -> list[list[Result]]:
    """Per cell, the runs of its baseline: the real committed ones, else the labelled stand-in."""
    real = real_baselines()
    if real:
        return [b.results for b in real if b.results[0].status == "ok"]
    return [_stand_in()]


def _stand_in(n_runs: int = 3, n_steps: int = 10, warmup: int = 2, seed: int = 20261128) -> list[Result]:
    rng = np.random.default_rng(seed)
    tokens = 16 * 4 * (40 + 128)  # prompt (~40) + response (128) tokens per step, one GPU
    runs = []
    for _ in range(n_runs):
        offset = rng.normal(0.0, 0.01)  # run-to-run (process start, clocks), ~1 %
        steps = []
        for i in range(1, n_steps + 1):
            # First steps are slower (allocator, vLLM warm-up): that is why warm-up is excluded.
            warm = 0.85 if i <= warmup else 1.0
            tput = 670.0 * warm * math.exp(offset + rng.normal(0.0, 0.025))
            t = tokens / tput
            steps.append(
                Step(
                    step=i,
                    throughput=round(tput, 2),
                    time_per_step=round(t, 3),
                    response_length_mean=128.0,
                    total_num_tokens=float(tokens),
                    timing_s={"gen": round(0.52 * t, 3), "update_actor": round(0.28 * t, 3)},
                )
            )
        runs.append(
            Result(
                id=STAND_IN_ID,
                matrix="bench-h100",
                profile="bench",
                gpu="h100",
                n_gpus=1,
                model="synthetic:qwen2.5-0.5b",
                backend="fsdp",
                axes={"lora": 8, "offload": "none", "tp": 1, "rb": 16},
                status="ok",
                steps=steps,
                warmup_steps=warmup,
                peak_memory_gb=[round(28.6 + rng.normal(0.0, 0.05), 2)],
                nvml_sample_hz=10.0,
                provenance=Provenance(
                    gpu_name="NVIDIA H100 80GB HBM3",
                    gpu_count=1,
                    versions={"verl": "0.9.1", "vllm": "0.25.1", "torch": "2.11.0+cu130"},
                    host="stand-in",
                    extra={"stand_in": "tests/gate_data.py, not a GPU measurement"},
                ),
            )
        )
    return runs


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
    path = root / runs[0].gpu / (runs[0].id + ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    baseline = Baseline(id=runs[0].id, gpu=runs[0].gpu, promoted_at="2026-11-28T00:00:00+00:00", results=runs)
    path.write_text(baseline.to_json())
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python tests/gate_data.py DIR  (writes the stand-in baseline store)")
    print(write_baseline(_stand_in(), Path(sys.argv[1])))
