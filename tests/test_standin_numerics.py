"""benchmarks/standin_numerics.py on a tiny Qwen2 and on made-up distributions: its streams see one set of
weights, its pair metrics are verl's definitions, and its flex stream keeps attention causal."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import standin_numerics as sn  # noqa: E402

from suite.models.archs import Arch  # noqa: E402

pytestmark = pytest.mark.slow  # flex attention compiles its kernel on first use

TINY = Arch("tiny", "none", "qwen2", 64, 128, 3, 4, 2, 151936, 4096, False)


def test_identical_distributions_agree_exactly() -> None:
    logp = torch.log_softmax(torch.randn(32, 50, generator=torch.Generator().manual_seed(0)), -1)
    m = sn._pair_metrics(logp, logp.clone(), torch.Generator().manual_seed(1))
    assert m["pearson"] == pytest.approx(1.0) and m["probs_diff_mean"] == 0
    assert m["log_ratio_mean"] == 0 and m["kl_full"] == 0 and m["log_ppl_a"] == m["log_ppl_b"] > 0


def test_pair_metrics_follow_verls_definitions() -> None:
    """kl: mean of log pA - log pB over tokens sampled from A (rollout_corr/kl); probs: exp of the sampled
    tokens' log-probs (training/rollout_actor_probs_pearson_corr, rollout_probs_diff_mean)."""
    a = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]))
    b = torch.log(torch.tensor([[0.25, 0.75], [0.8, 0.2], [0.3, 0.7]]))
    gen = torch.Generator().manual_seed(3)
    tok = torch.multinomial(a.exp(), 1, generator=torch.Generator().manual_seed(3)).squeeze(1)
    m = sn._pair_metrics(a, b, gen)
    la, lb = a[torch.arange(3), tok], b[torch.arange(3), tok]
    assert m["log_ratio_mean"] == pytest.approx((la - lb).mean().item(), abs=1e-5)
    assert m["probs_diff_mean"] == pytest.approx((la.exp() - lb.exp()).abs().mean().item(), rel=1e-3)
    kl = sum(
        sum(math.exp(x) * (x - y) for x, y in zip(ra, rb, strict=True))
        for ra, rb in zip(a.tolist(), b.tolist(), strict=True)
    )
    assert m["kl_full"] == pytest.approx(kl / 3, abs=1e-5)
    assert m["log_ppl_a"] == pytest.approx(-la.mean().item(), abs=1e-4)


@pytest.mark.parametrize("attn", ["sdpa", "eager", "flex_attention"])
def test_causal_masks_hide_the_future(attn: str) -> None:
    mask = sn._causal_mask(attn, 8, torch.float32)
    if attn == "flex_attention":
        dense = mask.to_dense()[0, 0]  # blocks of 128 cover all 8 tokens: one partial block
        assert dense.shape == (1, 1) and dense.item() == 1
        assert mask.mask_mod(0, 0, torch.tensor(2), torch.tensor(3)).item() is False
        assert mask.mask_mod(0, 0, torch.tensor(3), torch.tensor(3)).item() is True
    else:
        m = mask[0, 0]
        assert m.shape == (8, 8) and (m.triu(1) < -1e30).sum().item() == 28 and (m.tril() == 0).all()


@pytest.fixture(scope="module")
def tiny() -> dict:
    return sn.probe(TINY, prompt=8, response=24, every=2, seed=0)


def test_a_tiny_stand_in_agrees_across_streams(tiny: dict) -> None:
    assert (tiny["model"], tiny["layers"], tiny["hidden_size"]) == ("synthetic:tiny", 3, 64)
    assert (tiny["prompt_tokens"], tiny["response_tokens"]) == (8, 24)
    assert [p["layers"] for p in tiny["probes"]] == [2, 3]  # every 2 layers, and the last
    assert tiny["final"] is tiny["probes"][-1]
    for a, b in sn.PAIRS:
        r = tiny["final"][f"{a}|{b}"]
        # near-uniform next-token distributions of a random model, and two passes of it that barely differ
        assert 11.0 < r["log_ppl_a"] < 12.0 and abs(r["log_ppl_a"] - r["log_ppl_b"]) < 0.01
        assert r["pearson"] > 0.999 and abs(r["log_ratio_mean"]) < 0.01 and 0 <= r["kl_full"] < 1e-3


def test_the_streams_share_weights_but_not_arithmetic(tiny: dict) -> None:
    layers = tiny["per_layer"]
    assert [row["layer"] for row in layers] == [1, 2, 3]
    for row in layers:
        rms = row["rms"]
        assert set(rms) == set(sn.STREAMS)
        # one set of weights: the streams' hidden states are the same size to bf16's precision...
        assert max(rms.values()) - min(rms.values()) < 0.01 * rms["fp32"]
        # ...and bf16 is not fp32: a rounding-sized distance, not zero
        assert 0 < row["rel_dist"]["bf16|fp32"] < 0.05
    assert layers[-1]["rms"]["fp32"] > layers[0]["rms"]["fp32"]  # the residual stream grows with depth


def test_markdown_has_a_row_per_model_and_pair(tiny: dict) -> None:
    doc = {"models": [tiny]}
    lines = sn.markdown(doc).splitlines()
    assert len(lines) == 2 + len(sn.PAIRS)
    assert lines[2].startswith("| synthetic:tiny | 3 | 64 | bf16 vs bf16-eager | ")


def test_a_stream_subset_scores_only_its_pairs_and_the_table_skips_the_rest() -> None:
    m = sn.probe(TINY, prompt=4, response=8, every=3, seed=1, streams=("bf16", "bf16-flex-rope16"))
    assert set(m["final"]) == {"layers", "bf16|bf16-flex-rope16"}
    assert set(m["per_layer"][0]["rms"]) == {"bf16", "bf16-flex-rope16"}
    lines = sn.markdown({"models": [m]}).splitlines()
    assert len(lines) == 3 and "| bf16 vs bf16-flex-rope16 |" in lines[2]


def test_the_rope16_stream_holds_ropes_frequencies_in_bf16_and_the_others_in_fp32() -> None:
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding

    cfg = sn._config(TINY, "sdpa")
    for name, stream in sn.STREAMS.items():
        r = sn._rotary(Qwen2RotaryEmbedding(cfg), stream.rope)
        assert r.inv_freq.dtype == (torch.bfloat16 if name == "bf16-flex-rope16" else torch.float32), name


def test_an_unknown_stream_is_refused_naming_the_allowed_ones(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["standin_numerics.py", "--streams", "bf16,fp8"])
    with pytest.raises(SystemExit) as e:
        sn.main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--streams: unknown fp8" in err and "allowed: fp32, bf16, bf16-eager, bf16-flex, bf16-flex-rope16" in err
