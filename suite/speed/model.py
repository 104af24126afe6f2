"""Predicted seconds per step, by phase, and tokens/s/GPU: each phase a non-negative combination of its work
features (suite/speed/work.py) with the fitted constants; the run around the steps (start-up to verl's
`fit`, step 1's extra, the end) the same way, so a profile's whole run has a predicted wall time."""

from __future__ import annotations

from dataclasses import dataclass

from suite.memory.calibration import Calibration, default_calibration
from suite.memory.settings import MemorySettings
from suite.speed.constants import RUN_FEATURES, Constants, default_constants
from suite.speed.work import HOST_LINK_BYTES_S, PHASES, Lengths, Work, work


@dataclass(frozen=True)
class SpeedPrediction:
    phases_s: dict[str, float]  # PHASES -> seconds
    step_s: float
    tokens_per_s_per_gpu: float
    kv_waves: float
    to_fit_s: float  # process start to verl's `fit`
    first_step_s: float  # the warm-up step
    teardown_s: float

    def run_s(self, total_steps: int) -> float:
        """Process start to process end for a run of `total_steps` steps (the first one warm-up)."""
        return self.to_fit_s + self.first_step_s + max(0, total_steps - 1) * self.step_s + self.teardown_s


def combine(constants: dict[str, float], features: dict[str, float]) -> float:
    return sum(constants[k] * v for k, v in features.items())


def run_features(s: MemorySettings, step_s: float) -> dict[str, dict[str, float]]:
    """Features of the run around the steps: the checkpoint read into the actor and vLLM, the actor's offload
    at start-up; step 1's extra grows with the step (compile, cold caches)."""
    ckpt = s.arch.num_parameters * 2 / HOST_LINK_BYTES_S
    offload = s.arch.num_parameters * 4 / HOST_LINK_BYTES_S if (s.param_offload or s.optimizer_offload) else 0.0
    out = {
        "to_fit": {"fixed": 1.0, "checkpoint": ckpt, "offload": offload},
        "warmup_extra": {"fixed": 1.0, "step": step_s},
        "teardown": {"fixed": 1.0},
    }
    for part, names in RUN_FEATURES.items():
        assert tuple(out[part]) == names, part
    return out


def predict_work(w: Work, s: MemorySettings, constants: Constants) -> SpeedPrediction:
    phases = {p: combine(constants.phases[p], w.features[p]) for p in PHASES}
    step = sum(phases.values())
    rf = run_features(s, step)
    return SpeedPrediction(
        phases_s=phases,
        step_s=step,
        tokens_per_s_per_gpu=w.tokens_per_gpu / step if step > 0 else 0.0,
        kv_waves=w.kv_waves,
        to_fit_s=combine(constants.run["to_fit"], rf["to_fit"]),
        first_step_s=step + combine(constants.run["warmup_extra"], rf["warmup_extra"]),
        teardown_s=combine(constants.run["teardown"], rf["teardown"]),
    )


def predict_speed(
    s: MemorySettings,
    *,
    constants: Constants | None = None,
    calibration: Calibration | None = None,
    lengths: Lengths | None = None,
) -> SpeedPrediction:
    """A cell's predicted step. Without `lengths`, prompts are as long as the committed runs' data on average
    and every response runs to `response_length` (what a bench run of a synthetic model does)."""
    k = constants or default_constants()
    c = calibration or default_calibration()
    ln = lengths or Lengths(prompt=min(k.prompt_tokens, s.prompt_length), response=s.response_length)
    return predict_work(work(s, c, ln), s, k)


__all__ = ["SpeedPrediction", "predict_speed", "predict_work", "run_features"]
