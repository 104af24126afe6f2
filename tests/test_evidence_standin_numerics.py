"""baselines/evidence/2026-12-07-cpu-standin-numerics: the README's tables are the committed JSON's, and its claims
hold against it and against the GPU runs it explains (the 7B fp32-actor run and the failed 14B bf16-actor run)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from evidence_helpers import EVIDENCE

from suite.results.io import read_result
from suite.results.sentinels import PEARSON, PROBS_DIFF_MEAN

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import standin_numerics as sn  # noqa: E402

FOLDER = EVIDENCE / "2026-12-07-cpu-standin-numerics"
DOC = json.loads((FOLDER / "standin-numerics.json").read_text())
MODELS = {m["model"].split(":")[1]: m for m in DOC["models"]}
SEVEN = EVIDENCE / "2026-12-07-h100-heavy/h100-1gpu-7b-fa-mb5"
FOURTEEN = EVIDENCE / "2026-12-07-h100-heavy-2/h100-1gpu-14b-bf16"


def _final(model: str, pair: str) -> dict:
    return MODELS[model]["final"][pair]


def _gpu_step1(folder: Path) -> dict:
    (cell,) = [p for p in folder.iterdir() if p.is_dir()]
    return read_result(cell / "result.json").steps[0].extra


def test_the_readme_table_is_the_scripts_markdown_of_the_json() -> None:
    readme = (FOLDER / "README.md").read_text()
    for line in sn.markdown(DOC).splitlines():
        assert line in readme, line
    assert DOC["provenance"]["torch"] == "2.13.0+cpu" and DOC["provenance"]["suite_commit"] in readme
    assert DOC["streams"]["bf16-flex-rope16"] == {"dtype": "bfloat16", "attn": "flex_attention", "rope": "bfloat16"}


def test_the_seeds_shape_every_layer_and_every_pair() -> None:
    assert list(MODELS) == ["qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-7b", "qwen2.5-14b"]
    for m in MODELS.values():
        assert (m["prompt_tokens"], m["response_tokens"]) == (187, 1024)
        assert [r["layer"] for r in m["per_layer"]] == list(range(1, m["layers"] + 1))
        assert m["final"]["layers"] == m["layers"] and m["final"] is not None
        assert {f"{a}|{b}" for a, b in sn.PAIRS} <= set(m["final"])


def test_with_fp32_frequencies_every_stand_in_passes_the_sentinel() -> None:
    for key in MODELS:
        for pair in ("bf16|bf16-eager", "bf16|bf16-flex", "bf16|fp32"):
            assert _final(key, pair)["pearson"] > 0.95, (key, pair)
    assert _final("qwen2.5-14b", "bf16|bf16-flex")["pearson"] > 0.99


def test_with_bf16_frequencies_the_agreement_falls_with_size() -> None:
    got = [_final(k, "bf16|bf16-flex-rope16")["pearson"] for k in MODELS]
    assert got == sorted(got, reverse=True) and got[0] > 0.99 and got[-1] < 0.6
    assert _final("qwen2.5-7b", "bf16|bf16-flex-rope16")["pearson"] < 0.95  # a 7B bf16 actor would fail too


def test_the_cpu_pairs_reproduce_the_gpu_runs() -> None:
    seven, fourteen = _gpu_step1(SEVEN), _gpu_step1(FOURTEEN)
    ok = _final("qwen2.5-7b", "bf16|bf16-flex")
    assert ok["pearson"] == pytest.approx(seven[PEARSON], abs=0.005)
    assert ok["probs_diff_mean"] == pytest.approx(seven[PROBS_DIFF_MEAN], rel=0.25)
    assert ok["log_ppl_a"] == pytest.approx(seven["rollout_corr/rollout_log_ppl"], abs=0.1)
    bad = _final("qwen2.5-14b", "bf16|bf16-flex-rope16")
    assert bad["pearson"] == pytest.approx(fourteen[PEARSON], abs=0.06)
    assert bad["probs_diff_mean"] == pytest.approx(fourteen[PROBS_DIFF_MEAN], rel=0.1)
    assert bad["log_ppl_a"] == pytest.approx(fourteen["rollout_corr/rollout_log_ppl"], abs=0.02)
    assert bad["log_ratio_mean"] == pytest.approx(fourteen["rollout_corr/kl"], abs=0.25)
    # the fix's stream at 14B sits where the 7B runs do, far from the GPU's failure
    assert _final("qwen2.5-14b", "bf16|bf16-flex")["log_ratio_mean"] < 0.01 < fourteen["rollout_corr/kl"]
