"""The planner's activation and logits terms against what benchmarks/activation_probe.py measured (committed under
baselines/evidence/2026-12-04-cpu-activation-probe/), and a live re-measurement of one shape with transformers +
peft on this CPU."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from suite.memory.calibration import default_calibration
from suite.memory.model import (
    effective_seq_length,
    layer_activation_bytes_per_token,
    logits_bytes,
)
from suite.memory.settings import MemorySettings
from suite.models.archs import Arch

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "baselines" / "evidence" / "2026-12-04-cpu-activation-probe" / "activation-probe.json"
C = default_calibration()
A = C.activations


def _arch(h: int = 256, i: int = 768, heads: int = 8, kv_heads: int = 2) -> Arch:
    return Arch(
        key="probe",
        hf_id="probe",
        model_type="qwen2",
        hidden_size=h,
        intermediate_size=i,
        num_hidden_layers=3,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        vocab_size=512,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )


def _settings(arch: Arch | None = None, **kw: object) -> MemorySettings:
    base = MemorySettings(arch=arch or _arch(), gpu="h200", gpu_memory_gib=139.8, n_gpus=1, backend="fsdp")
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def probe() -> dict:
    return json.loads(PROBE.read_text())


def test_the_probe_evidence_records_its_provenance(probe: dict) -> None:
    p = probe["provenance"]
    assert p["versions"]["verl"] == "0.9.1" and p["versions"]["transformers"].startswith("5.")
    assert p["host"]["machine"] and p["date"].startswith("2026-12-04")
    assert len(probe["layers"]) == 6 * 3 * 2  # shapes x (full, rank 8, rank 32) x (packed, masked)
    assert {r["layout"] for r in probe["logits"]} == {"packed", "padded"}


def test_layer_coefficients_are_the_measured_fits(probe: dict) -> None:
    f = probe["layer_fits"]
    assert f["full-packed"]["h"] == pytest.approx(A.layer_h, abs=0.1)
    assert f["full-packed"]["kv"] == pytest.approx(A.layer_kv, abs=0.1)
    assert f["full-packed"]["i"] == pytest.approx(A.layer_i, abs=0.1)
    assert f["lora-packed"]["h"] == pytest.approx(A.layer_h + A.lora_norm_h, abs=0.1)
    # all-linear: 7 adapted linears per Qwen2 layer
    assert f["lora-packed"]["rank"] == pytest.approx(7 * A.lora_rank_bytes, abs=0.2)
    for kind in ("full", "lora"):
        packed, masked = f[f"{kind}-packed"], f[f"{kind}-masked"]
        assert masked["h"] - packed["h"] == pytest.approx(A.masked_repeat_kv, abs=0.2)
        assert masked["kv"] - packed["kv"] == pytest.approx(-A.masked_repeat_kv, abs=0.6)
    assert all(fit["max_residual_bytes"] < 64 for fit in f.values())  # a per-token constant (log-sum-exp, mask)


def test_logits_factors_are_the_measured_peaks(probe: dict) -> None:
    lg = C.logits
    got = {(r["layout"], r["mode"]): r["peak_units"] for r in probe["logits"]}
    # the old log-prob pass holds 3.0 copies on CPU; on CUDA, under autocast, more (7.0 in the CUDA probe), and the
    # planner's forward_factor is fitted to the GPU phases between the two (calibration.toml [logits])
    assert got[("packed", "old_log_prob")] == got[("padded", "old_log_prob")] == pytest.approx(3.0, abs=0.05)
    assert 3.0 < lg.forward_factor < 7.0
    assert got[("packed", "ref_log_prob")] == pytest.approx(lg.ref_factor, abs=0.05)
    assert got[("padded", "ref_log_prob")] == pytest.approx(lg.ref_factor + lg.padded_copy, abs=0.05)
    assert got[("packed", "update")] == pytest.approx(lg.train_factor, abs=0.05)
    assert got[("padded", "update")] == pytest.approx(lg.train_factor + lg.padded_copy, abs=0.05)
    extra = lg.train_factor + lg.train_entropy_extra
    assert got[("packed", "update_entropy")] == pytest.approx(extra, abs=0.05)
    assert got[("padded", "update_entropy")] == pytest.approx(extra + lg.padded_copy, abs=0.05)


def test_the_layer_model_reproduces_every_measured_shape(probe: dict) -> None:
    for r in probe["layers"]:
        # the model reads only the widths h and kv: a head_dim of 32 gives those of every probed shape
        arch = _arch(r["h"], r["i"], r["h"] // 32, r["kv"] // 32)
        s = _settings(arch, lora_rank=r["rank"], attn_implementation="sdpa" if r["masked"] else "flex_attention")
        got = layer_activation_bytes_per_token(s, C)
        assert got == pytest.approx(r["bytes_per_token"], rel=0.02), r


def test_live_saved_tensor_count_matches_the_model() -> None:
    # transformers + peft on this CPU, one shape: LoRA r16 with a mask, the case the heavy sdpa cells are in
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from activation_probe import BATCH, SEQ, saved_bytes

    h, i, heads, kvh = 320, 896, 10, 2
    per = (
        saved_bytes(h, i, heads, kvh, 3, rank=16, masked=True) - saved_bytes(h, i, heads, kvh, 2, rank=16, masked=True)
    ) / (BATCH * SEQ)
    s = _settings(_arch(h, i, heads, kvh), lora_rank=16, attn_implementation="sdpa")
    assert per == pytest.approx(layer_activation_bytes_per_token(s, C), rel=0.02)
    # and without the adapter, no mask: the full fine-tuning coefficients
    full = (
        saved_bytes(h, i, heads, kvh, 3, rank=0, masked=False) - saved_bytes(h, i, heads, kvh, 2, rank=0, masked=False)
    ) / (BATCH * SEQ)
    assert full == pytest.approx(layer_activation_bytes_per_token(_settings(_arch(h, i, heads, kvh)), C), rel=0.02)


def test_lora_on_fewer_linears_saves_fewer_rank_tensors() -> None:
    all_linear = layer_activation_bytes_per_token(_settings(lora_rank=32), C)
    qv = layer_activation_bytes_per_token(_settings(lora_rank=32, target_modules=("q_proj", "v_proj")), C)
    assert all_linear - qv == pytest.approx(5 * 32 * A.lora_rank_bytes)


def test_megatron_layers_take_the_full_coefficients_whatever_the_attention() -> None:
    s = _settings(backend="megatron", lora_rank=32, attn_implementation="sdpa")
    h, kv, i = 256, 64, 768
    assert layer_activation_bytes_per_token(s, C) == A.layer_h * h + A.layer_kv * kv + A.layer_i * i


def test_the_trainer_sees_real_prompt_lengths_with_or_without_remove_padding() -> None:
    # verl 0.9.1 drops the padding before every log-prob and update pass
    for rmpad in (True, False):
        s = _settings(prompt_length=512, response_length=1024, use_remove_padding=rmpad)
        assert effective_seq_length(s, C) == A.dataset_prompt_tokens + 1024
    short = _settings(prompt_length=128, response_length=256)
    assert effective_seq_length(short, C) == 128 + 256  # data.max_prompt_length still caps it


def test_dataset_prompt_tokens_is_the_longest_prompt_the_runs_logged() -> None:
    longest = 0.0
    for f in (ROOT / "baselines").rglob("metrics.jsonl"):
        for line in f.read_text().splitlines():
            data = json.loads(line).get("data", {})
            longest = max(longest, data.get("prompt_length/max", 0.0))
    assert longest == A.dataset_prompt_tokens


def test_logits_multiples_by_pass_and_layout() -> None:
    lg = C.logits
    unit = 1000 * 512 * lg.fsdp_bytes
    # the probe's stack: verl's torch log-softmax, no flash-attn
    packed = _settings(flash_attn=False)
    padded = _settings(use_remove_padding=False, flash_attn=False)
    assert logits_bytes(packed, C, 1000, train=False) == unit * lg.forward_factor
    assert logits_bytes(packed, C, 1000, train=False, entropy=False) == unit * lg.ref_factor
    assert logits_bytes(padded, C, 1000, train=False, entropy=False) == unit * (lg.ref_factor + lg.padded_copy)
    assert logits_bytes(padded, C, 1000, train=False) == unit * lg.forward_factor
    assert logits_bytes(packed, C, 1000, train=True) == unit * lg.train_factor
    assert logits_bytes(padded, C, 1000, train=True) == unit * (lg.train_factor + lg.padded_copy)
    ent = _settings(entropy_coeff=0.01, flash_attn=False)
    assert logits_bytes(ent, C, 1000, train=True) == unit * (lg.train_factor + lg.train_entropy_extra)


def test_flash_attn_changes_the_updates_logits_only() -> None:
    """flash-attn's cross entropy: the update holds train_factor_flash_attn copies; the no-grad passes, the padded
    copy and the entropy term are the same on both stacks."""
    lg = C.logits
    unit = 1000 * 512 * lg.fsdp_bytes
    assert lg.train_factor_flash_attn < lg.train_factor
    fa, fa_padded = _settings(flash_attn=True), _settings(flash_attn=True, use_remove_padding=False)
    torch_only = _settings(flash_attn=False)
    assert logits_bytes(fa, C, 1000, train=True) == unit * lg.train_factor_flash_attn
    assert logits_bytes(fa_padded, C, 1000, train=True) == unit * (lg.train_factor_flash_attn + lg.padded_copy)
    ent = _settings(flash_attn=True, entropy_coeff=0.01)
    assert logits_bytes(ent, C, 1000, train=True) == unit * (lg.train_factor_flash_attn + lg.train_entropy_extra)
    for entropy in (True, False):
        assert logits_bytes(fa, C, 1000, train=False, entropy=entropy) == logits_bytes(
            torch_only, C, 1000, train=False, entropy=entropy
        )
    # not said: flash_attention_2/3 cannot run without flash-attn; sdpa, flex and eager say nothing of it
    assert _settings().flash_attn is None and _settings().flash_attn_cross_entropy
    assert _settings(attn_implementation="flash_attention_3").flash_attn_cross_entropy
    for attn in ("sdpa", "flex_attention", "eager"):
        assert not _settings(attn_implementation=attn).flash_attn_cross_entropy
        assert _settings(attn_implementation=attn, flash_attn=True).flash_attn_cross_entropy
    assert not _settings(flash_attn=False).flash_attn_cross_entropy  # said, wins over the attention
    # Megatron's vocab-parallel cross entropy and verl's fused kernels never take flash-attn's
    mega = _settings(backend="megatron", flash_attn=True)
    assert logits_bytes(mega, C, 1000, train=True) == 1000 * 512 * lg.megatron_bytes * lg.train_factor
    fused = _settings(fused_kernels=True, flash_attn=True)
    assert logits_bytes(fused, C, 1000, train=True) == logits_bytes(
        replace(fused, flash_attn=False), C, 1000, train=True
    )


def test_validate_compares_the_trainers_torch_peak_with_the_predicted_tensors() -> None:
    from suite.memory.validate import markdown, summarize, validate_results
    from suite.results.io import read_result

    heavy = ROOT / "baselines" / "evidence"
    paths = sorted(heavy.glob("2026-12-04-h200-heavy-4/h200-*/*/result.json"))
    rows = validate_results((str(p), read_result(p)) for p in paths)
    flex = next(r for r in rows if "attnflex" in r.cell)
    # verl's actor/perf/max_memory_allocated_gb of the run, and the update's tensors without vLLM, contexts, slack
    assert flex.torch_measured_gib == pytest.approx(69.1, abs=0.05)
    assert flex.torch_predicted_gib == pytest.approx(71.2, abs=0.05)
    assert flex.torch_error == pytest.approx((71.2 - 69.1) / 69.1, abs=0.002)
    assert flex.torch_predicted_gib < flex.predicted_gib - 3  # runtime overhead, fragmentation, sleeping vLLM
    s = summarize(rows)
    assert (s.torch_measured, s.torch_within) == (2, 2)
    text = markdown(rows, s)
    assert "| torch measured GiB | torch predicted GiB |" in text.splitlines()[0]
    assert "trainer tensors (torch max_memory_allocated, logged by verl): 2 of 2" in text


def test_a_crash_has_no_torch_error() -> None:
    from suite.memory.validate import validate_results
    from suite.results.io import read_result

    p = next((ROOT / "baselines" / "evidence").glob("2026-12-03-h200-heavy-4/h200-*/*/result.json"))
    (row,) = validate_results([(str(p), read_result(p))])
    assert row.status == "crash" and row.torch_error is None and row.torch_predicted_gib is not None
