"""The format-credit GSM8K reward: verl's strict scorer for `acc`, format credit only in the training score."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest

from suite.data.rewards import gsm8k_format

ROOT = Path(__file__).resolve().parents[1]
DUMP = (
    ROOT
    / "baselines"
    / "evidence"
    / "2026-11-28-h200x2"
    / "host-a"
    / "h100"
    / "smollm2-135m-instruct"
    / "h100x1"
    / "fsdp"
    / "full-off_none-tp1-rb32"
    / "validation"
    / "0.jsonl.xz"
)


@pytest.mark.parametrize(
    ("text", "gt", "score", "acc"),
    [
        ("so 3 + 4 = 7\n#### 7", "7", 1.0, 1.0),
        ("#### 1,234", "1234", 1.0, 1.0),  # verl strips commas
        ("#### 8", "7", 0.1, 0.0),  # well-formed, wrong: format credit only
        ("The answer is 7.", "7", 0.0, 0.0),  # right number, not in the form the strict scorer reads
        ("#### 5 then later #### 7", "7", 1.0, 1.0),  # the last one counts
        ("", "7", 0.0, 0.0),
    ],
)
def test_scores(text, gt, score, acc):
    r = gsm8k_format("openai/gsm8k", text, gt)
    assert r["score"] == pytest.approx(score) and r["acc"] == acc
    assert r["formatted"] == (1.0 if "####" in text else 0.0)


def test_acc_is_verls_strict_score_and_format_credit_is_configurable():
    from verl.utils.reward_score import gsm8k

    cases = [("#### 7", "7"), ("#### 8", "7"), ("7", "7"), ("x" * 400 + "#### 7", "7"), ("#### 7" + "x" * 400, "7")]
    for text, gt in cases:
        assert gsm8k_format("openai/gsm8k", text, gt)["acc"] == gsm8k.compute_score(text, gt)
    assert gsm8k_format("openai/gsm8k", "#### 8", "7", format_score=0.0)["score"] == 0.0
    assert gsm8k_format("openai/gsm8k", "#### 8", "7", format_score=0.5)["score"] == 0.5


def test_other_sources_get_verls_default_score():
    from verl.utils.reward_score import default_compute_score

    r = gsm8k_format("lighteval/MATH", "\\boxed{2}", "2")
    assert r["score"] == default_compute_score("lighteval/MATH", "\\boxed{2}", "2")


def test_on_the_real_smollm2_answers_of_2026_11_28():
    # 256 answers of SmolLM2-135M-Instruct before training, as verl dumped them with its default reward.
    with lzma.open(DUMP, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    assert len(rows) == 256
    scored = [gsm8k_format("openai/gsm8k", r["output"], r["gts"]) for r in rows]
    # accuracy unchanged: what verl recorded (0 of 256)
    assert sum(s["acc"] for s in scored) == sum(float(r["acc"]) for r in rows) == 0
    # but the well-formed answers now earn a reward: the gradient GRPO lacked
    from verl.utils.reward_score import gsm8k

    formatted = sum(s["formatted"] for s in scored)
    assert formatted == sum(gsm8k.extract_solution(r["output"]) is not None for r in rows)
    assert 10 <= formatted <= 40  # 20 of the 256 answers contain "####" at all
    assert sum(s["score"] for s in scored) == pytest.approx(0.1 * formatted)


def test_verl_loads_it_by_module_path_and_calls_it_with_the_configured_kwargs():
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    cfg = OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": "pkg://suite.data.rewards",
                    "name": "gsm8k_format",
                    "reward_kwargs": {"format_score": 0.25},
                }
            }
        }
    )
    fn = get_custom_reward_fn(cfg)
    r = fn(data_source="openai/gsm8k", solution_str="#### 8", ground_truth="7", extra_info={})
    assert r == {"score": 0.25, "acc": 0.0, "formatted": 1.0}
