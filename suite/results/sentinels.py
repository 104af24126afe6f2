"""Correctness sentinels a result records: verl's rollout-vs-actor log-prob mismatch per step, and what can
be said about a LoRA adapter reaching vLLM. Pure functions over a `Result`.

Where the numbers come from (verl 0.9.1, checked in its source):

- `verl/utils/debug/metrics.py::calculate_debug_metrics`, called every step when the rollout returns its
  log-probs (`actor_rollout_ref.rollout.calculate_log_probs`, true by default in 0.9.1's config), logs
  `training/rollout_probs_diff_{mean,max,std}`: |exp(actor log-prob) - exp(rollout log-prob)| over the
  response tokens (a difference of probabilities, despite the name), `training/rollout_actor_probs_pearson_corr`
  and `training/rollout_probs_diff_valid` (0 when the batch had no response token: the others are NaN then).
- `verl/trainer/ppo/rollout_corr_helper.py` logs `rollout_corr/*` (kl, k3_kl, log_ppl_diff, ...) when
  rollout correction is configured.

The suite keeps every numeric verl metric of a step verbatim in `Step.extra`, so each result carries these per
step under verl's own key names; this module is the one place that reads them.

A LoRA adapter that never reaches vLLM (verl #7495) leaves vLLM sampling from the base model while the actor
scores with base + adapter: the mismatch grows once the adapter has changed. Before the first update that
changed it (`actor/grad_norm` > 0) a missed sync is invisible, because the adapter starts as a no-op (LoRA's
B matrix is zero). verl logs the sync itself only at INFO (`LoRA adapter sync: ...` in
`vllm_rollout/utils.py`, logger level `VERL_LOGGING_LEVEL`, WARN by default), so the committed logs hold no
such line.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Literal

from suite.plan.cell import ACTOR_DTYPE_KEY, EXTERNAL_MODULES_KEY, ROPE_FP32_MODULE, external_modules, is_sixteen_bit
from suite.results.schema import Result, Step

PROBS_DIFF_MEAN = "training/rollout_probs_diff_mean"
PROBS_DIFF_MAX = "training/rollout_probs_diff_max"
PROBS_DIFF_STD = "training/rollout_probs_diff_std"
PROBS_DIFF_VALID = "training/rollout_probs_diff_valid"
PEARSON = "training/rollout_actor_probs_pearson_corr"
GRAD_NORM = "actor/grad_norm"
# verl/workers/rollout/vllm_rollout/utils.py logs this once per adapter sync (INFO), before the new adapter lands
SYNC_LINE = "LoRA adapter sync: remove old lora and prepare new lora"
MISMATCH_KEYS = (PROBS_DIFF_MEAN, PROBS_DIFF_MAX, PROBS_DIFF_STD, PROBS_DIFF_VALID, PEARSON)


@dataclass(frozen=True)
class Mismatch:
    """One step's rollout-vs-actor mismatch."""

    step: int
    probs_diff_mean: float
    probs_diff_max: float | None
    pearson: float | None


def step_mismatch(step: Step) -> Mismatch | None:
    """The step's mismatch, or None when verl logged none or marked the batch invalid."""
    mean = step.extra.get(PROBS_DIFF_MEAN)
    if mean is None or step.extra.get(PROBS_DIFF_VALID, 1.0) != 1.0:
        return None
    return Mismatch(step.step, mean, step.extra.get(PROBS_DIFF_MAX), step.extra.get(PEARSON))


def mismatch_series(result: Result) -> list[Mismatch]:
    """Every training step's mismatch, warm-up included: a correctness signal, not a timing one."""
    return [m for s in result.steps if (m := step_mismatch(s)) is not None]


def probs_diff_median(result: Result) -> float | None:
    series = mismatch_series(result)
    return statistics.median(m.probs_diff_mean for m in series) if series else None


def count_adapter_syncs(log_lines: list[str]) -> int | None:
    """How many adapter syncs verl logged; None when it logged none (INFO is off by default, so absence is
    no evidence of a missed sync)."""
    n = sum(1 for line in log_lines if SYNC_LINE in line)
    return n or None


def is_lora(result: Result) -> bool:
    rank = result.axes.get("lora_rank", 0)
    try:
        return float(rank) > 0
    except (TypeError, ValueError):
        return False


Evidence = Literal["logged", "consistent", "unmeasurable", "not-recorded"]


@dataclass(frozen=True)
class AdapterEvidence:
    """What a LoRA result says about its adapter reaching vLLM after weight syncs."""

    kind: Evidence
    updates: int  # steps whose actor update changed the adapter (grad_norm > 0)
    checked: int  # steps after such an update whose mismatch was recorded
    text: str


def adapter_evidence(result: Result) -> AdapterEvidence:
    """`logged`: verl's log shows the syncs. `consistent`: steps after the adapter changed were measured and the mismatch can be checked against the
    thresholds (a missed sync would raise it). `unmeasurable`: the adapter never changed (grad_norm 0 in every
    step, as in bench cells whose rewards are all zero), so a missed sync looks exactly like a good one.
    `not-recorded`: verl logged no mismatch or no grad norm."""
    if result.lora_adapter_syncs:
        return AdapterEvidence(
            "logged", 0, 0, f"verl logged {result.lora_adapter_syncs} adapter sync(s) to vLLM ('{SYNC_LINE}')"
        )
    series = {m.step: m for m in mismatch_series(result)}
    norms = [(s.step, s.extra[GRAD_NORM]) for s in result.steps if GRAD_NORM in s.extra]
    if not series or not norms:
        return AdapterEvidence("not-recorded", 0, 0, "no rollout/actor mismatch or grad norm recorded")
    changed = [step for step, norm in norms if norm > 0]
    if not changed:
        return AdapterEvidence(
            "unmeasurable",
            0,
            0,
            f"not measurable: actor/grad_norm is 0 in all {len(norms)} steps, so the adapter never changed "
            "and a sync that never reached vLLM would look the same",
        )
    after = [s for s in series if s > changed[0]]
    if not after:
        return AdapterEvidence(
            "unmeasurable", len(changed), 0, "not measurable: no step with a recorded mismatch after the first update"
        )
    return AdapterEvidence(
        "consistent",
        len(changed),
        len(after),
        f"{len(after)} step(s) after the adapter changed (first update at step {changed[0]}) checked for mismatch",
    )


def rope_cast_unfixed(result: Result) -> str | None:
    """The 16-bit dtype a result's FSDP actor was stored in, where its workers did not load suite/run/rope_fp32.py:
    verl 0.9.1's `module.to()` then left RoPE's frequencies in 16 bits and the trainer's angles off vLLM's
    (docs/matrix.md, keep_rope_fp32). None for an fp32 actor, a fixed one, or a result that recorded no command."""
    from suite.plan.hydra import split_argv

    if not result.provenance.argv:
        return None
    given = {o.key.lstrip("+~"): o.value for o in split_argv(list(result.provenance.argv))[1]}
    dtype = given.get(ACTOR_DTYPE_KEY)
    if (
        dtype is None
        or not is_sixteen_bit(dtype)
        or ROPE_FP32_MODULE in external_modules(given.get(EXTERNAL_MODULES_KEY))
    ):
        return None
    return str(dtype)
