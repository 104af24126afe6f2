"""Per-GPU memory of one verl 0.9.1 GRPO step, phase by phase. Pure arithmetic over `MemorySettings` and a
`Calibration`; every component is in bytes here and GiB in the `Prediction`.

What lives on a GPU in each phase (read off verl 0.9.1: workers/engine_workers.py, workers/engine/fsdp/
transformer_impl.py, workers/engine/base.py, workers/engine/megatron/transformer_impl.py):

- rollout: vLLM is awake and holds its whole pool (gpu_memory_utilization x total: weights shard, activations,
  KV cache). The trainer keeps what offload does not move: actor parameters unless param_offload, optimizer
  state unless optimizer_offload (gradients are freed by zero_grad after each update).
- weight_sync: vLLM's weights are resumed (KV cache not yet), the actor parameters are on the GPU to be
  gathered tensor by tensor into buckets, then offloaded if param_offload.
- old_log_prob / ref_log_prob: vLLM asleep (free_cache_engine). The actor is loaded (eval mode loads params),
  forward only. With LoRA the reference is the actor with adapters disabled (ref_in_actor): no second copy.
  For full fine-tuning an FSDP reference is forced to CPU offload (forward_only), Megatron's is a bf16 copy.
- actor_update: parameters, gradients and optimizer state are all loaded (train mode loads whatever offload
  moved out), plus activations (gradient checkpointing) and logits of one micro batch. FSDP2 CPUOffloadPolicy
  ("policy") keeps parameters, gradients and the optimizer step on the CPU instead.

The peak is the worst phase, never the sum."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from suite.memory.calibration import Calibration, default_calibration
from suite.memory.settings import MemorySettings
from suite.models.archs import Arch

GIB = 1024**3

# Megatron's fused linear names -> the HF linears they stand for (for LoRA parameter counts).
_MEGATRON_LINEARS = {
    "linear_qkv": ("q_proj", "k_proj", "v_proj"),
    "linear_proj": ("o_proj",),
    "linear_fc1": ("gate_proj", "up_proj"),
    "linear_fc2": ("down_proj",),
}


@dataclass(frozen=True)
class Phase:
    """One phase of a step (GPU) or of a run (host): what is held then, by component."""

    name: str
    components: dict[str, float]  # GiB per component

    @property
    def total_gib(self) -> float:
        return sum(self.components.values())


# components of a phase that are not the trainer's torch allocations
NOT_TRAINER_TENSORS = ("vllm_pool", "vllm_weights", "vllm_asleep", "runtime_overhead", "fragmentation")


@dataclass(frozen=True)
class Prediction:
    peak_gib: float
    phase: str  # the worst phase
    phases: tuple[Phase, ...]
    capacity_gib: float  # the GPU's memory
    usable_gib: float  # capacity minus the fit headroom
    fits: bool
    problems: tuple[str, ...] = ()  # why it does not fit (empty when it does)
    notes: tuple[str, ...] = field(default=())

    @property
    def breakdown(self) -> dict[str, float]:
        """Components of the worst phase, GiB rounded to 0.01 (what `Cell.memory_breakdown` stores)."""
        worst = next(p for p in self.phases if p.name == self.phase)
        return {k: round(v, 2) for k, v in worst.components.items() if v > 0}

    @property
    def trainer_tensors_gib(self) -> float:
        """The trainer process's torch tensors at their worst phase: what `torch.cuda.max_memory_allocated` reports
        there (verl logs it as actor/perf/max_memory_allocated_gb). vLLM's pool and weights live in its own
        process; contexts and the caching allocator's slack are not allocations."""
        return max(sum(v for k, v in p.components.items() if k not in NOT_TRAINER_TENSORS) for p in self.phases)

    def phase_totals(self) -> dict[str, float]:
        return {p.name: round(p.total_gib, 2) for p in self.phases}

    def reason(self) -> str | None:
        """A one-line reason for `status: predicted-oom`, built from the breakdown."""
        if self.fits:
            return None
        top = sorted(self.breakdown.items(), key=lambda kv: -kv[1])[:4]
        parts = ", ".join(f"{k} {v:.1f}" for k, v in top)
        return "; ".join(self.problems) + f" [{self.phase}: {parts} GiB]"


# --- parameter counts --------------------------------------------------------------------------------------


def lora_targets(arch: Arch, target_modules: tuple[str, ...]) -> set[str]:
    """The linears of one decoder layer that carry an adapter."""
    shapes = arch.linear_shapes()
    names: set[str] = set()
    for t in target_modules:
        if t == "all-linear":
            names.update(shapes)
        elif t in _MEGATRON_LINEARS:
            names.update(_MEGATRON_LINEARS[t])
        elif t in shapes:
            names.add(t)
    return names


def lora_parameters(arch: Arch, rank: int, target_modules: tuple[str, ...]) -> int:
    """Trainable LoRA parameters: rank x (in + out) for each adapted linear of every decoder layer."""
    if rank <= 0:
        return 0
    shapes = arch.linear_shapes()
    per_layer = sum(rank * (shapes[n][0] + shapes[n][1]) for n in lora_targets(arch, target_modules))
    return per_layer * arch.num_hidden_layers


def embedding_parameters(arch: Arch) -> int:
    """Embedding plus a separate lm_head (none when tied)."""
    return arch.vocab_size * arch.hidden_size * (1 if arch.tie_word_embeddings else 2)


def layer_parameters(arch: Arch) -> int:
    return (arch.num_parameters - embedding_parameters(arch) - arch.hidden_size) // arch.num_hidden_layers


# --- building blocks (bytes per GPU) -----------------------------------------------------------------------


def _kv_width(arch: Arch) -> int:
    return arch.num_key_value_heads * arch.head_dim


# attention implementations that hand SDPA a mask when a micro batch holds sequences of several lengths (padded or
# packed), so transformers repeats k and v to every head instead of using SDPA's GQA
MASKED_ATTENTION = ("sdpa", "eager")


def layer_activation_bytes_per_token(s: MemorySettings, c: Calibration) -> float:
    """Bytes one decoder layer saves for backward per token (transformers' Qwen2/Llama layer, bf16)."""
    a, arch = c.activations, s.arch
    h, kv = arch.hidden_size, _kv_width(arch)
    per = a.layer_h * h + a.layer_kv * kv + a.layer_i * arch.intermediate_size
    if s.backend == "megatron":
        return per
    if s.lora:
        per += a.lora_norm_h * h + a.lora_rank_bytes * s.lora_rank * len(lora_targets(arch, s.target_modules))
    if s.attn_implementation in MASKED_ATTENTION:
        per += a.masked_repeat_kv * (h - kv)
    return per


def effective_seq_length(s: MemorySettings, c: Calibration) -> int:
    """Tokens of one sample as the trainer sees them. verl 0.9.1's v1 trainer stores every sample unpadded
    (trainer/ppo/v1/agent_loop_tq.py: prompt + response into TransferQueue; the v0 trainer strips the padding with
    left_right_2_no_padding), so the engine gets nested micro batches with or without use_remove_padding (without
    it, a micro batch is padded to its own longest sequence only): prompts are as long as the data makes them."""
    return min(s.prompt_length, c.activations.dataset_prompt_tokens) + s.response_length


def _dp_size(s: MemorySettings) -> int:
    if s.backend == "megatron":
        return max(1, s.n_gpus // (s.megatron_tp * s.megatron_pp))
    return max(1, s.n_gpus // s.ulysses_sp)


def samples_per_gpu_per_minibatch(s: MemorySettings) -> int:
    return max(1, math.ceil(s.ppo_mini_batch_size * s.rollout_n / _dp_size(s)))


def micro_batches_per_minibatch(s: MemorySettings, c: Calibration) -> int:
    samples = samples_per_gpu_per_minibatch(s)
    if s.use_dynamic_bsz:
        tokens = samples * effective_seq_length(s, c) / _seq_split(s)
        return max(1, math.ceil(tokens / s.ppo_max_token_len_per_gpu))
    return max(1, math.ceil(samples / s.ppo_micro_batch_size_per_gpu))


def _seq_split(s: MemorySettings) -> int:
    """How many GPUs share one sequence's tokens: Ulysses SP (FSDP) or sequence parallel over TP (Megatron)."""
    return s.megatron_tp if s.backend == "megatron" else s.ulysses_sp


def micro_batch_tokens(s: MemorySettings, c: Calibration, *, micro: int, max_tokens: int) -> float:
    """Tokens one GPU holds for one micro batch (the sequence split over SP/TP already applied)."""
    seq = effective_seq_length(s, c)
    if s.use_dynamic_bsz:
        return max(max_tokens, seq / _seq_split(s))
    return micro * seq / _seq_split(s)


@dataclass(frozen=True)
class ModelStates:
    """Actor (and reference) state per GPU while loaded, in bytes, and what stays resident during rollout."""

    params: float
    grads: float
    optimizer: float
    unsharded_grad_accum: float  # FSDP no_sync gradient accumulation over micro batches
    ref_params: float  # a separate reference copy on the GPU while it computes (0: none / CPU-offloaded)
    ref_resident: float  # ... and while it does not (Megatron without ref param offload)
    resident_params: float  # kept on the GPU during rollout
    resident_optimizer: float


def model_states(s: MemorySettings, c: Calibration) -> ModelStates:
    n, lora = s.arch.num_parameters, lora_parameters(s.arch, s.lora_rank, s.target_modules)
    trainable = lora if s.lora else n
    needs_separate_ref = s.use_kl_loss and not s.lora  # verl: ref_in_actor when lora_rank > 0
    if s.backend == "megatron":
        d = c.dtypes
        shards = s.megatron_tp * s.megatron_pp
        params = (n + lora) * d.megatron_param_bytes / shards
        grads = trainable * d.megatron_grad_bytes / shards
        optim = trainable * d.megatron_optim_bytes / (shards * _dp_size(s))
        accum = 0.0  # the fp32 main-grad buffer already accumulates in place
        ref = n * d.megatron_param_bytes / shards if needs_separate_ref else 0.0
        ref_resident = 0.0 if s.ref_param_offload else ref
    else:
        dtype = s.model_dtype or c.dtypes.fsdp_default_model_dtype
        pbytes = 4 if dtype in ("fp32", "float32") else 2
        params = (n + lora) * pbytes / s.n_gpus
        grads = trainable * pbytes / s.n_gpus
        optim = trainable * c.dtypes.adam_states * pbytes / s.n_gpus
        accum = 0.0
        if c.fsdp.unsharded_grad_accumulation and micro_batches_per_minibatch(s, c) > 1:
            accum = trainable * c.fsdp.unsharded_grad_bytes
        ref, ref_resident = 0.0, 0.0  # forward_only FSDP ref is forced to CPU offload; unsharded layers count below
        if s.offload_policy:
            params, grads, optim, accum = 0.0, 0.0, 0.0, 0.0  # all on the CPU, optimizer steps there
    resident_params = 0.0 if s.param_offload else params
    resident_optim = 0.0 if s.optimizer_offload else optim
    return ModelStates(params, grads, optim, accum, ref, ref_resident, resident_params, resident_optim)


def fsdp_unsharded_bytes(s: MemorySettings, c: Calibration, *, with_grads: bool) -> float:
    """Decoder layers gathered at once (bf16), the root module's embedding/lm_head, and their gradients."""
    if s.backend == "megatron":
        return 0.0
    b = c.dtypes.compute_bytes
    layers = c.fsdp.unsharded_layers * layer_parameters(s.arch) * b
    root = embedding_parameters(s.arch) * b if c.fsdp.root_unsharded else 0.0
    total = layers + root
    if with_grads and not s.lora:
        total *= 2
    return total


def activation_bytes(s: MemorySettings, c: Calibration, tokens: float, *, train: bool) -> float:
    arch = s.arch
    layer = layer_activation_bytes_per_token(s, c)
    if s.backend == "megatron":
        layers = arch.num_hidden_layers / s.megatron_pp
        in_flight = min(s.megatron_pp, micro_batches_per_minibatch(s, c)) if train else 1
        if not train:
            return tokens * layer
        if s.megatron_recompute:
            return in_flight * tokens * c.activations.checkpoint_h * arch.hidden_size * layers + tokens * layer
        return in_flight * tokens * layer * layers
    if not train:
        return tokens * layer  # no grad: one layer's tensors at a time
    if not s.gradient_checkpointing:
        return tokens * layer * arch.num_hidden_layers
    ckpt = (
        0.0 if s.activation_offload else tokens * c.activations.checkpoint_h * arch.hidden_size * arch.num_hidden_layers
    )
    return ckpt + tokens * layer


# verl 0.9.1's FusedLinearForPPO (torch backend) materialises the logits of this many tokens at a time
FUSED_CHUNK_TOKENS = 512


def logits_bytes(s: MemorySettings, c: Calibration, tokens: float, *, train: bool, entropy: bool = True) -> float:
    """`entropy`: a no-grad pass that computes the entropy too (verl: old log-probs yes, reference log-probs no).
    Without use_remove_padding verl concatenates the real tokens' logits into a copy first (one more tensor
    wherever the entropy's temporaries do not already dominate)."""
    lg = c.logits
    megatron = s.backend == "megatron"
    fused = s.fused_kernels and not megatron
    if fused:
        tokens = min(tokens, FUSED_CHUNK_TOKENS)
    if megatron:
        per = tokens * s.arch.vocab_size / s.megatron_tp * lg.megatron_bytes
    else:
        per = tokens * s.arch.vocab_size * lg.fsdp_bytes
    copy = lg.padded_copy if not (megatron or fused or s.use_remove_padding) else 0.0
    if not train:
        # the reference factor is measured on verl's FSDP code; Megatron's vocab-parallel pass keeps the old one
        return per * (lg.forward_factor if entropy or megatron else lg.ref_factor + copy)
    # flash-attn's cross entropy writes the gradient into the logits in place (FSDP; Megatron's is vocab-parallel)
    factor = lg.train_factor_flash_attn if s.flash_attn_cross_entropy and not (megatron or fused) else lg.train_factor
    return per * (factor + copy + (lg.train_entropy_extra if s.entropy_coeff else 0.0))


@dataclass(frozen=True)
class VllmBudget:
    pool: float
    weights: float
    activations: float
    kv_cache: float  # what is left for the KV cache inside the pool
    kv_needed: float  # one max_model_len sequence


def vllm_budget(s: MemorySettings, c: Calibration) -> VllmBudget:
    arch, v, tp = s.arch, c.vllm, s.rollout_tp
    pool = s.gpu_memory_utilization * s.gpu_memory_gib * GIB
    lora = lora_parameters(arch, s.lora_rank, s.target_modules)
    weights = (arch.num_parameters + lora) * c.dtypes.compute_bytes / tp
    mnbt = s.max_num_batched_tokens or v.default_max_num_batched_tokens
    seqs = s.max_num_seqs or v.default_max_num_seqs
    act = mnbt * (v.act_h * arch.hidden_size + v.act_i_per_tp * arch.intermediate_size / tp)
    act += seqs * arch.vocab_size * 4 * v.sampler_factor
    if not s.enforce_eager:
        act += v.cuda_graph_gib * GIB
    kv_heads = max(1, math.ceil(arch.num_key_value_heads / tp))
    kv_per_token = 2 * arch.num_hidden_layers * kv_heads * arch.head_dim * c.dtypes.compute_bytes
    max_len = s.max_model_len or arch.max_position_embeddings
    return VllmBudget(pool, weights, act, pool - weights - act, max_len * kv_per_token)


# --- phases ------------------------------------------------------------------------------------------------


def _gib(components: dict[str, float]) -> dict[str, float]:
    return {k: v / GIB for k, v in components.items()}


def _with_fragmentation(parts: dict[str, float], dynamic: tuple[str, ...], c: Calibration) -> dict[str, float]:
    frag = c.overhead.fragmentation * sum(parts.get(k, 0.0) for k in dynamic)
    return {**parts, "fragmentation": frag}


def phases(s: MemorySettings, c: Calibration) -> tuple[Phase, ...]:
    ms = model_states(s, c)
    vb = vllm_budget(s, c)
    overhead = c.overhead.runtime_gib * GIB + (c.overhead.nccl_gib_multi_gpu * GIB if s.n_gpus > 1 else 0.0)
    if not s.enforce_eager:
        overhead += c.overhead.cuda_graphs_gib * GIB
    asleep = c.overhead.vllm_asleep_gib * GIB if s.free_cache_engine else vb.pool
    dyn = ("activations", "logits", "unsharded_layers", "batch")

    rollout = {
        "vllm_pool": vb.pool,
        "actor_params": ms.resident_params,
        "actor_optimizer": ms.resident_optimizer,
        "ref_params": ms.ref_resident,
        "runtime_overhead": overhead,
    }
    sync = {
        "vllm_weights": vb.weights,
        "actor_params": ms.params,
        "actor_optimizer": ms.resident_optimizer,
        "ref_params": ms.ref_resident,
        "sync_bucket": c.vllm.sync_bucket_gib * GIB,
        "runtime_overhead": overhead,
    }

    def forward_phase(micro: int, *, ref_copy: bool, ref_pass: bool) -> dict[str, float]:
        tokens = micro_batch_tokens(s, c, micro=micro, max_tokens=s.log_prob_max_token_len_per_gpu)
        parts = {
            "vllm_asleep": asleep,
            "actor_params": ms.params if not ref_copy else ms.resident_params,
            "actor_optimizer": ms.resident_optimizer,
            "ref_params": ms.ref_params if ref_copy else ms.ref_resident,
            "unsharded_layers": fsdp_unsharded_bytes(s, c, with_grads=False),
            "activations": activation_bytes(s, c, tokens, train=False),
            "logits": logits_bytes(s, c, tokens, train=False, entropy=not ref_pass),
            "runtime_overhead": overhead,
        }
        return _with_fragmentation(parts, dyn, c)

    tokens = micro_batch_tokens(s, c, micro=s.ppo_micro_batch_size_per_gpu, max_tokens=s.ppo_max_token_len_per_gpu)
    update = _with_fragmentation(
        {
            "vllm_asleep": asleep,
            "actor_params": ms.params,
            "actor_grads": ms.grads,
            "grad_accumulation": ms.unsharded_grad_accum,
            "actor_optimizer": ms.optimizer,
            "ref_params": ms.ref_resident,
            "unsharded_layers": fsdp_unsharded_bytes(s, c, with_grads=True),
            "activations": activation_bytes(s, c, tokens, train=True),
            "logits": logits_bytes(s, c, tokens, train=True),
            "batch": samples_per_gpu_per_minibatch(s)
            * effective_seq_length(s, c)
            * c.activations.batch_bytes_per_token,
            "runtime_overhead": overhead,
        },
        dyn,
        c,
    )
    out = [
        Phase("rollout", _gib(rollout)),
        Phase("weight_sync", _gib(sync)),
        Phase("old_log_prob", _gib(forward_phase(s.log_prob_micro_batch_size_per_gpu, ref_copy=False, ref_pass=False))),
    ]
    if s.use_kl_loss:
        # LoRA: the actor without adapters (same memory as old_log_prob); full FT: a separate reference model.
        micro = s.ref_log_prob_micro_batch_size_per_gpu
        out.append(Phase("ref_log_prob", _gib(forward_phase(micro, ref_copy=not s.lora, ref_pass=True))))
    out.append(Phase("actor_update", _gib(update)))
    return tuple(out)


def predict(s: MemorySettings, c: Calibration | None = None) -> Prediction:
    """Peak NVML memory per GPU (GiB) of one cell: the worst phase, with its breakdown and whether it fits."""
    c = c or default_calibration()
    ph = phases(s, c)
    worst = max(ph, key=lambda p: p.total_gib)
    usable = s.gpu_memory_gib - c.overhead.fit_headroom_gib
    problems: list[str] = []
    if worst.total_gib > usable:
        problems.append(f"predicted peak {worst.total_gib:.1f} GiB > {usable:.1f} GiB usable on {s.gpu}")
    vb = vllm_budget(s, c)
    if vb.kv_cache < vb.kv_needed:
        problems.append(
            f"vLLM pool {vb.pool / GIB:.1f} GiB (gpu_memory_utilization {s.gpu_memory_utilization}) cannot hold "
            f"weights {vb.weights / GIB:.1f} GiB (tp {s.rollout_tp}) + activations {vb.activations / GIB:.1f} GiB "
            f"+ KV cache for one {s.max_model_len or s.arch.max_position_embeddings}-token sequence "
            f"{vb.kv_needed / GIB:.2f} GiB"
        )
    return Prediction(
        peak_gib=worst.total_gib,
        phase=worst.name,
        phases=ph,
        capacity_gib=s.gpu_memory_gib,
        usable_gib=usable,
        fits=not problems,
        problems=tuple(problems),
        notes=s.notes,
    )
