"""The work one GRPO step does, per GPU and per phase, as the quantities its time scales with.

Each phase of verl's step (its `timing_s` keys) gets a few features, each a plain number of seconds at a
stated rate: FLOPs over the GPU's peak, bytes over its HBM bandwidth, launches, tokens. A phase's time is a
non-negative combination of its features (`suite.speed.model`), so the constants that combine them are
dimensionless efficiencies or per-item costs, fitted on measured steps (`suite.speed.fit`).

Everything here is a pure function of `MemorySettings` (the verl command, read the one way the memory
planner reads it) and the memory calibration (vLLM's KV-cache budget), plus the mean prompt and response
lengths: measured where a result has them, assumed for a planned cell."""

from __future__ import annotations

import math
from dataclasses import dataclass

from suite.errors import InputError
from suite.gpus import get_gpu
from suite.memory.calibration import Calibration
from suite.memory.model import lora_parameters, vllm_budget
from suite.memory.settings import MemorySettings

# verl's timing_s keys the model predicts; `other` is the step less the four (advantages, reward, the weight
# sync to vLLM, vLLM's sleep and wake, the dataloader)
PHASES: tuple[str, ...] = ("gen", "old_log_prob", "ref", "update_actor", "other")

# FEATURES[phase]: the names of its features, in the order the constants are stored
FEATURES: dict[str, tuple[str, ...]] = {
    # decode iterations x layers (kernel launches, eager or with CUDA graphs), weights read once an iteration,
    # the KV cache read, the decode's matmuls, the prompts' prefill
    "gen": ("fixed", "launch_eager", "launch_graphs", "weights_read", "kv_read", "decode", "prefill"),
    # a forward over every token; verl's per-token log-prob loop without flash-attn's cross entropy; the
    # actor's parameters brought back from the host; per-micro-batch overhead (launches per layer)
    "old_log_prob": ("fixed", "forward", "logprob_loop", "param_load", "micro_batches"),
    "ref": ("fixed", "forward", "logprob_loop", "param_load", "micro_batches"),
    # forward + backward, the recompute of gradient checkpointing, the same loop, parameter and optimizer
    # state moved to and from the host, per-micro-batch overhead
    "update_actor": ("fixed", "train", "recompute", "logprob_loop", "offload_moves", "micro_batches"),
    # a fixed cost per step, per sample (reward, advantages), vLLM's weights moved on sleep / wake and sync
    "other": ("fixed", "samples", "vllm_weights"),
}

# host <-> GPU copies run at roughly PCIe Gen5 x16's practical rate; the fitted constants absorb the difference
HOST_LINK_BYTES_S = 25e9


@dataclass(frozen=True)
class Lengths:
    """Mean prompt and response lengths of one step's samples, tokens."""

    prompt: float
    response: float


@dataclass(frozen=True)
class Work:
    """What one step asks of one GPU. `features[phase][name]` in seconds at the nominal rate."""

    seqs: float  # rollout samples per vLLM replica (= per GPU for TP 1)
    trainer_tokens: float  # tokens one trainer GPU runs through a forward pass (padding included)
    kv_waves: float  # how many times the rollout's tokens fill vLLM's KV cache (>= 1)
    tokens_per_gpu: float  # prompt + response tokens of the step per GPU: the throughput's numerator
    features: dict[str, dict[str, float]]


def _dp(s: MemorySettings) -> int:
    if s.backend == "megatron":
        return max(1, s.n_gpus // (s.megatron_tp * s.megatron_pp))
    return max(1, s.n_gpus // s.ulysses_sp)


def _matmul_params(s: MemorySettings) -> float:
    """Parameters a token multiplies through: decoder layers, adapters and the LM head (the embedding is a
    lookup)."""
    a = s.arch
    embed = a.vocab_size * a.hidden_size
    head = embed  # tied or not, the LM head is a vocab x hidden matmul
    untied_extra = 0 if a.tie_word_embeddings else embed
    return a.num_parameters - embed - untied_extra + head + lora_parameters(a, s.lora_rank, s.target_modules)


def _kv_bytes_per_token(s: MemorySettings, c: Calibration) -> float:
    a = s.arch
    kv_heads = max(1, math.ceil(a.num_key_value_heads / s.rollout_tp))
    return 2 * a.num_hidden_layers * kv_heads * a.head_dim * c.dtypes.compute_bytes


def _param_bytes(s: MemorySettings, c: Calibration) -> float:
    dtype = s.model_dtype or c.dtypes.fsdp_default_model_dtype
    return s.arch.num_parameters * (2 if dtype in ("bf16", "bfloat16", "fp16", "float16") else 4) / s.n_gpus


def work(s: MemorySettings, c: Calibration, lengths: Lengths) -> Work:
    a, gpu = s.arch, get_gpu(s.gpu)
    peak, bw = gpu.bf16_tflops * 1e12, gpu.bandwidth_tbs * 1e12
    layers, hidden = a.num_hidden_layers, a.hidden_size
    p, r = lengths.prompt, lengths.response
    samples = s.train_batch_size * s.rollout_n
    replicas = max(1, s.n_gpus // max(1, s.rollout_tp))
    seqs = samples / replicas
    n_mat = _matmul_params(s)

    # --- rollout: decode iterations are the response length times the KV cache's waves
    budget = vllm_budget(s, c)
    kv_per_token = _kv_bytes_per_token(s, c)
    if budget.kv_cache < kv_per_token * (p + r):
        raise InputError(
            f"vLLM's pool ({budget.pool / 2**30:.1f} GiB at gpu_memory_utilization {s.gpu_memory_utilization}) "
            f"leaves no KV cache for one sequence beside its {budget.weights / 2**30:.1f} GiB of weights: "
            "no rollout to predict"
        )
    kv_tokens = budget.kv_cache / kv_per_token
    max_seqs = s.max_num_seqs or c.vllm.default_max_num_seqs
    waves = max(1.0, seqs * (p + r) / kv_tokens, seqs / max_seqs)
    iterations = r * waves
    launches = iterations * layers
    eager = 1.0 if s.enforce_eager else 0.0
    weights_bytes = n_mat * c.dtypes.compute_bytes / max(1, s.rollout_tp)
    # each decoded token reads its context's KV once: prompt plus half the response on average
    kv_read = seqs * r * (p + r / 2) * kv_per_token
    gen = {
        "fixed": 1.0,
        "launch_eager": launches * eager,
        "launch_graphs": launches * (1.0 - eager),
        "weights_read": iterations * weights_bytes / bw,
        "kv_read": kv_read / bw,
        "decode": 2 * n_mat / max(1, s.rollout_tp) * seqs * r / peak,
        "prefill": 2 * n_mat / max(1, s.rollout_tp) * seqs * p / peak,
    }

    # --- trainer passes over the step's samples on one data-parallel rank
    dp = _dp(s)
    per_rank = samples / dp
    # without remove-padding a micro batch is padded to its longest sample: about the data's longest prompt
    seq_len = (p + r) if s.use_remove_padding else min(s.prompt_length, c.activations.dataset_prompt_tokens) + r
    tokens = per_rank * seq_len
    attn = 2 * layers * hidden * per_rank * seq_len**2  # causal QK^T and AV, forward
    forward = (2 * n_mat * tokens + attn) / peak / max(1, s.megatron_tp if s.backend == "megatron" else 1)
    loop = 0.0 if s.flash_attn_cross_entropy else per_rank * r
    param_bytes = _param_bytes(s, c)

    def micro(size: int) -> float:
        return math.ceil(per_rank / max(1, size)) * layers

    log_prob = {
        "fixed": 1.0,
        "forward": forward,
        "logprob_loop": loop,
        "param_load": param_bytes / HOST_LINK_BYTES_S if s.param_offload else 0.0,
        "micro_batches": micro(s.log_prob_micro_batch_size_per_gpu),
    }
    ref = dict(log_prob)
    if s.bypass_old_log_prob:
        log_prob = dict.fromkeys(log_prob, 0.0)
    ref["micro_batches"] = micro(s.ref_log_prob_micro_batch_size_per_gpu)
    # with LoRA the reference is the actor with its adapters off (verl's ref_in_actor)
    ref_offloaded = s.param_offload if s.lora else s.ref_param_offload
    ref["param_load"] = param_bytes / HOST_LINK_BYTES_S if ref_offloaded else 0.0
    if not s.use_kl_loss:
        ref = dict.fromkeys(ref, 0.0)
    trainable = lora_parameters(a, s.lora_rank, s.target_modules) if s.lora else a.num_parameters
    optim_bytes = trainable * 4 * c.dtypes.adam_states / s.n_gpus
    moves = (2 * param_bytes if s.param_offload else 0.0) + (2 * optim_bytes if s.optimizer_offload else 0.0)
    update = {
        "fixed": 1.0,
        "train": 3 * forward,
        "recompute": forward if s.gradient_checkpointing else 0.0,
        "logprob_loop": loop,
        "offload_moves": moves / HOST_LINK_BYTES_S,
        "micro_batches": micro(s.ppo_micro_batch_size_per_gpu),
    }
    other = {"fixed": 1.0, "samples": seqs, "vllm_weights": weights_bytes / HOST_LINK_BYTES_S}
    features = {"gen": gen, "old_log_prob": log_prob, "ref": ref, "update_actor": update, "other": other}
    for phase, names in FEATURES.items():
        assert tuple(features[phase]) == names, phase
    return Work(
        seqs=seqs,
        trainer_tokens=tokens,
        kv_waves=waves,
        tokens_per_gpu=samples * (p + r) / s.n_gpus,
        features=features,
    )
