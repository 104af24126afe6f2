"""The memory model's arithmetic against hand-computed cases, its monotonicity, and the seed expectations."""

from __future__ import annotations

from dataclasses import replace

import pytest

from suite.memory.calibration import default_calibration
from suite.memory.model import (
    GIB,
    embedding_parameters,
    layer_parameters,
    lora_parameters,
    model_states,
    predict,
    vllm_budget,
)
from suite.memory.settings import MemorySettings
from suite.models.archs import ARCHS

CAL = default_calibration()
Q05, Q32 = ARCHS["qwen2.5-0.5b"], ARCHS["qwen2.5-32b"]


def small(**kw) -> MemorySettings:
    """The shared/gpu/README.md 0.5B run: 1x H100, LoRA r8, 16 prompts x 4 responses x 128 tokens, util 0.3."""
    base = dict(
        arch=Q05, gpu="h100", gpu_memory_gib=79.2, n_gpus=1, backend="fsdp", lora_rank=8,
        train_batch_size=16, ppo_mini_batch_size=16, rollout_n=4, prompt_length=128, response_length=128,
        ppo_micro_batch_size_per_gpu=4, log_prob_micro_batch_size_per_gpu=8,
        ref_log_prob_micro_batch_size_per_gpu=8, use_kl_loss=True, gpu_memory_utilization=0.3, enforce_eager=True,
    )  # fmt: skip
    return MemorySettings(**{**base, **kw})


def seed(**kw) -> MemorySettings:
    """The seed recipe (DESIGN.md): 32B LoRA r32 on 4x H100, param+optimizer offload, TP4, 180 prompts."""
    base = dict(
        arch=Q32, gpu="h100", gpu_memory_gib=79.2, n_gpus=4, backend="fsdp", lora_rank=32,
        param_offload=True, optimizer_offload=True, ref_param_offload=True, rollout_tp=4, ulysses_sp=2,
        train_batch_size=180, ppo_mini_batch_size=180, rollout_n=5, prompt_length=512, response_length=1024,
        ppo_micro_batch_size_per_gpu=15, log_prob_micro_batch_size_per_gpu=15,
        ref_log_prob_micro_batch_size_per_gpu=15, use_kl_loss=True, gpu_memory_utilization=0.3,
        max_model_len=1536, max_num_batched_tokens=1536,
    )  # fmt: skip
    return MemorySettings(**{**base, **kw})


def component(pred, phase: str, name: str) -> float:
    return next(p for p in pred.phases if p.name == phase).components.get(name, 0.0)


# --- hand-computed arithmetic --------------------------------------------------------------------------------


def test_lora_parameter_count_by_hand():
    # Qwen2.5-0.5B: h 896, i 4864, kv 2 heads x 64 = 128; rank 8 on all 7 linears of 24 layers.
    per_layer = 8 * ((896 + 896) + (896 + 128) * 2 + (896 + 896) + (896 + 4864) * 2 + (4864 + 896))
    assert lora_parameters(Q05, 8, ("all-linear",)) == per_layer * 24 == 4_399_104
    # Only q and v: rank x (in + out) of those two.
    assert lora_parameters(Q05, 8, ("q_proj", "v_proj")) == 8 * ((896 + 896) + (896 + 128)) * 24
    # Megatron's fused names cover the same linears as all-linear.
    fused = ("linear_qkv", "linear_proj", "linear_fc1", "linear_fc2")
    assert lora_parameters(Q05, 8, fused) == lora_parameters(Q05, 8, ("all-linear",))
    assert lora_parameters(Q05, 0, ("all-linear",)) == 0


def test_layer_and_embedding_parameters_add_up():
    for arch in (Q05, Q32):
        total = layer_parameters(arch) * arch.num_hidden_layers + embedding_parameters(arch) + arch.hidden_size
        assert total == arch.num_parameters


def test_fsdp_full_finetune_states_by_hand():
    # fp32 master weights (verl's model_dtype default), fp32 grads, Adam m+v fp32, all sharded over 4 GPUs.
    s = seed(lora_rank=0, param_offload=False, optimizer_offload=False)
    ms = model_states(s, CAL)
    n = Q32.num_parameters
    assert ms.params == pytest.approx(n * 4 / 4)
    assert ms.grads == pytest.approx(n * 4 / 4)
    assert ms.optimizer == pytest.approx(n * 8 / 4)
    # Sharding divides by the world size: 8 GPUs hold half of what 4 hold.
    ms8 = model_states(replace(s, n_gpus=8), CAL)
    assert ms8.params == pytest.approx(ms.params / 2) and ms8.optimizer == pytest.approx(ms.optimizer / 2)


def test_fsdp_lora_states_by_hand():
    s = seed(param_offload=False, optimizer_offload=False)
    ms = model_states(s, CAL)
    n, lora = Q32.num_parameters, lora_parameters(Q32, 32, ("all-linear",))
    assert ms.params == pytest.approx((n + lora) * 4 / 4)  # frozen base + adapters, fp32, sharded
    assert ms.grads == pytest.approx(lora * 4 / 4)  # only adapters train
    assert ms.optimizer == pytest.approx(lora * 8 / 4)
    assert ms.ref_params == 0  # LoRA: the reference is the actor without adapters


def test_bf16_model_dtype_halves_fsdp_weights():
    a = model_states(seed(param_offload=False), CAL)
    b = model_states(seed(param_offload=False, model_dtype="bf16"), CAL)
    assert b.params == pytest.approx(a.params / 2)


def test_megatron_states_by_hand():
    # 8x H20, TP 8, PP 1 -> DP 1: bf16 params, fp32 grads, 12-byte distributed optimizer, each / 8.
    s = seed(backend="megatron", gpu="h20", gpu_memory_gib=95.6, n_gpus=8, lora_rank=0, megatron_tp=8,
             rollout_tp=8, ulysses_sp=1, ref_param_offload=False)  # fmt: skip
    ms = model_states(s, CAL)
    n = Q32.num_parameters
    assert ms.params == pytest.approx(n * 2 / 8)
    assert ms.grads == pytest.approx(n * 4 / 8)
    assert ms.optimizer == pytest.approx(n * 12 / 8)
    assert ms.ref_params == pytest.approx(n * 2 / 8) == ms.ref_resident  # full FT + KL: a second copy
    # TP 4 -> DP 2: params per GPU double, the distributed optimizer is also split over DP.
    ms4 = model_states(replace(s, megatron_tp=4), CAL)
    assert ms4.params == pytest.approx(n * 2 / 4)
    assert ms4.optimizer == pytest.approx(n * 12 / (4 * 2))


def test_offload_moves_state_out_of_the_rollout_phase_only():
    on = predict(seed(), CAL)
    off = predict(seed(param_offload=False, optimizer_offload=False), CAL)
    ms = model_states(seed(param_offload=False, optimizer_offload=False), CAL)
    diff = (component(off, "rollout", "actor_params") + component(off, "rollout", "actor_optimizer")) * GIB
    assert diff == pytest.approx(ms.params + ms.optimizer)
    assert component(on, "rollout", "actor_params") == 0 and component(on, "rollout", "actor_optimizer") == 0
    # verl's train mode loads everything offload moved out: the update phase is the same.
    assert component(on, "actor_update", "actor_optimizer") == component(off, "actor_update", "actor_optimizer")


def test_vllm_pool_is_a_fraction_of_total_memory():
    s = small()
    assert component(predict(s, CAL), "rollout", "vllm_pool") == pytest.approx(0.3 * 79.2)
    vb = vllm_budget(seed(), CAL)
    assert vb.weights == pytest.approx((Q32.num_parameters + lora_parameters(Q32, 32, ("all-linear",))) * 2 / 4)


def test_peak_is_the_worst_phase_not_the_sum():
    p = predict(seed(), CAL)
    totals = [ph.total_gib for ph in p.phases]
    assert p.peak_gib == max(totals) < sum(totals)
    assert p.phase == max(p.phases, key=lambda ph: ph.total_gib).name
    assert sum(p.breakdown.values()) == pytest.approx(p.peak_gib, abs=0.1)


def test_measured_small_cell_within_ten_percent():
    # shared/gpu/README.md: Qwen2.5-0.5B-shaped, LoRA r8, util 0.3 on 1x H100 -> NVML peak 28.6 GiB.
    p = predict(small(), CAL)
    assert abs(p.peak_gib - 28.6) / 28.6 < 0.10
    assert p.phase == "rollout" and p.fits


# --- monotonicity --------------------------------------------------------------------------------------------

CASES = [small(), small(lora_rank=0), seed(), seed(lora_rank=0, param_offload=False)]


@pytest.mark.parametrize("s", CASES)
def test_more_rollout_batch_or_response_never_lowers_the_peak(s):
    base = predict(s, CAL).peak_gib
    more_batch = replace(s, train_batch_size=s.train_batch_size * 2, ppo_mini_batch_size=s.ppo_mini_batch_size * 2)
    assert predict(more_batch, CAL).peak_gib >= base
    assert predict(replace(s, response_length=s.response_length * 2), CAL).peak_gib >= base
    assert predict(replace(s, ppo_micro_batch_size_per_gpu=s.ppo_micro_batch_size_per_gpu * 2), CAL).peak_gib >= base


@pytest.mark.parametrize("s", CASES)
def test_offload_never_raises_the_peak(s):
    bare = replace(s, param_offload=False, optimizer_offload=False, ref_param_offload=False)
    p0 = predict(bare, CAL).peak_gib
    for kw in ({"param_offload": True}, {"optimizer_offload": True}, {"param_offload": True, "optimizer_offload": True},
               {"offload_policy": True}, {"activation_offload": True}):  # fmt: skip
        assert predict(replace(bare, **kw), CAL).peak_gib <= p0 + 1e-9, kw


@pytest.mark.parametrize("s", CASES)
def test_higher_tp_never_raises_per_gpu_weights_or_peak(s):
    tps = [t for t in (1, 2, 4) if t <= s.n_gpus]
    weights = [vllm_budget(replace(s, rollout_tp=t), CAL).weights for t in tps]
    peaks = [predict(replace(s, rollout_tp=t), CAL).peak_gib for t in tps]
    assert weights == sorted(weights, reverse=True)
    assert peaks == sorted(peaks, reverse=True)


def test_higher_megatron_tp_never_raises_per_gpu_states():
    s = seed(backend="megatron", gpu="h20", gpu_memory_gib=95.6, n_gpus=8, lora_rank=0, ulysses_sp=1)
    prev = None
    for tp in (1, 2, 4, 8):
        ms = model_states(replace(s, megatron_tp=tp, rollout_tp=tp), CAL)
        cur = ms.params + ms.grads + ms.optimizer
        assert prev is None or cur <= prev
        prev = cur


def test_gradient_checkpointing_never_raises_the_peak():
    for s in CASES:
        assert predict(s, CAL).peak_gib <= predict(replace(s, gradient_checkpointing=False), CAL).peak_gib


# --- the seed and its neighbours (4x H100 80GB) --------------------------------------------------------------


def test_seed_cell_fits():
    p = predict(seed(), CAL)
    assert p.fits, p.reason()
    assert p.peak_gib < 79.2 - CAL.overhead.fit_headroom_gib


def test_seed_full_finetune_neighbours_do_not_fit():
    # 32B full FT on 4 GPUs: fp32 weights + grads + Adam = 16 bytes x 32.8B / 4 ~ 122 GiB per GPU in the update,
    # with or without param/optimizer offload (verl's train mode loads them back).
    for kw in ({"param_offload": False, "optimizer_offload": False}, {}):
        p = predict(seed(lora_rank=0, **kw), CAL)
        assert not p.fits and p.phase == "actor_update"
        assert "actor_update" in (p.reason() or "")


def test_seed_low_tp_neighbours_do_not_fit():
    # 0.3 x 79.2 GiB of pool cannot hold a 61 GiB (TP1) or 31 GiB (TP2) bf16 shard of the 32B weights.
    for tp in (1, 2):
        p = predict(seed(rollout_tp=tp), CAL)
        assert not p.fits
        assert any("vLLM pool" in x for x in p.problems)


def test_megatron_h20_recipe_fits_and_without_offload_does_not():
    s = seed(backend="megatron", gpu="h20", gpu_memory_gib=95.6, n_gpus=8, lora_rank=0, megatron_tp=8, rollout_tp=8,
             ulysses_sp=1, train_batch_size=512, ppo_mini_batch_size=256, ppo_micro_batch_size_per_gpu=1,
             log_prob_micro_batch_size_per_gpu=1, ref_log_prob_micro_batch_size_per_gpu=1, prompt_length=2048,
             response_length=6144, gpu_memory_utilization=0.6, max_model_len=None, max_num_batched_tokens=None)  # fmt: skip
    assert predict(s, CAL).fits, predict(s, CAL).reason()
    bare = predict(replace(s, param_offload=False, optimizer_offload=False, ref_param_offload=False), CAL)
    assert not bare.fits and bare.phase == "rollout"
