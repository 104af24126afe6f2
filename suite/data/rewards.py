"""Reward functions verl loads by module path: `reward.custom_reward_function.path=pkg://suite.data.rewards`.

Runs inside verl's reward workers, so it imports verl's own scorer and nothing else of the suite. The result's
accuracy stays verl's strict GSM8K accuracy (the `acc` key, which the suite counts from the validation dumps);
only the training reward changes."""

from __future__ import annotations

from typing import Any

GSM8K_SOURCES = ("openai/gsm8k",)


def gsm8k_format(
    data_source: str, solution_str: str, ground_truth: str, extra_info: Any = None, format_score: float = 0.1, **_: Any
) -> dict[str, float]:
    """verl's strict GSM8K score plus `format_score` for a well-formed but wrong `#### <number>` answer.

    A small instruct model that never answers right under the strict scorer (SmolLM2-135M: 0 of 256 on
    2026-11-28) gives GRPO all-zero rewards and nothing to learn; the format credit gives it a gradient
    toward answers the scorer can read. Other data sources get verl's default scoring unchanged."""
    from verl.utils.reward_score import default_compute_score, gsm8k

    if data_source not in GSM8K_SOURCES:
        return _as_dict(default_compute_score(data_source, solution_str, ground_truth, extra_info))
    answer = gsm8k.extract_solution(solution_str, method="strict")
    correct = answer is not None and answer == ground_truth
    formatted = answer is not None
    score = 1.0 if correct else (format_score if formatted else 0.0)
    return {"score": score, "acc": float(correct), "formatted": float(formatted)}


def _as_dict(result: Any) -> dict[str, float]:
    if isinstance(result, dict):
        return result
    return {"score": float(result), "acc": float(result)}
