"""Rules that verl, vLLM, Megatron or the hardware would enforce at run time, checked at plan time.

Each rule returns None or a reason that names the rule and the numbers. The batch rules follow verl 0.9.1:
`verl/utils/config.py:validate_config`, `ActorConfig.validate`, the V1 trainer's batch padding
(`_get_required_batch_multiple`: lcm(dp, mini x n)) and the engine's micro-batch split
(`prepare_micro_batches`: per-rank data divisible by micro_batch_size_per_gpu)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from suite.matrix.offload import FSDP_ONLY, parse_offload
from suite.matrix.schema import Base, Matrix
from suite.models.archs import Arch, arch_for_model

# vLLM's MaxLoRARanks (verl rounds a rank up to one of these; above the last one it refuses).
VLLM_MAX_LORA_RANK = 512
BYPASS_KEY = "algorithm.rollout_correction.bypass_mode"


@dataclass(frozen=True)
class Ctx:
    world: int
    gpus_per_node: int
    backend: str
    base: Base
    arch: Arch | None
    lora: int
    offload: str
    tp: int
    rb: int
    raw: Mapping[str, Any] = field(default_factory=dict)  # raw verl keys: [overrides], then raw-key axes
    flash_attn: bool | None = None  # [matrix] flash_attn

    @property
    def dp(self) -> int:
        """Data-parallel size of the actor (what verl splits mini batches over)."""
        if self.backend == "megatron":
            return self.world // (self.tp * self.base.pp) if self.world % (self.tp * self.base.pp) == 0 else 0
        return self.world // self.base.ulysses_sp if self.world % self.base.ulysses_sp == 0 else 0


def _rollout_tp(c: Ctx) -> str | None:
    if c.world % c.tp:
        return f"tp-divides-gpus: rollout tp {c.tp} does not divide the {c.world} GPUs (nnodes x gpus_per_node)"
    # A vLLM TP group lives inside one node (its all-reduce is NVLink/PCIe, not the network), and groups
    # must tile each node exactly.
    if c.gpus_per_node % c.tp:
        return (
            f"tp-within-node: rollout tp {c.tp} does not divide gpus_per_node {c.gpus_per_node} "
            f"(a vLLM tensor-parallel group must fit inside one node)"
        )
    return None


def _heads(c: Ctx) -> str | None:
    """vLLM shards attention heads over TP: heads % tp == 0; KV heads are split when kv % tp == 0 or
    replicated when tp % kv == 0 (vLLM's QKVParallelLinear). megatron-core 0.18 (verl 0.9.1's pin) takes the same
    rule for its query groups (TransformerConfig: a multiple or divisor of the TP size)."""
    a = c.arch
    if a is None:
        return None
    h, kv = a.num_attention_heads, a.num_key_value_heads
    if h % c.tp:
        return f"tp-divides-heads: tp {c.tp} does not divide {a.key}'s {h} attention heads"
    if kv % c.tp and c.tp % kv:
        return f"tp-vs-kv-heads: tp {c.tp} neither divides nor is a multiple of {a.key}'s {kv} KV heads"
    sp = c.base.ulysses_sp
    if c.backend == "fsdp" and sp > 1 and (h % sp or (kv % sp and sp % kv)):
        return f"ulysses-divides-heads: ulysses_sp {sp} vs {a.key}'s {h} heads / {kv} KV heads"
    return None


def _parallel(c: Ctx) -> str | None:
    b = c.base
    if c.backend == "megatron":
        if c.world % (c.tp * b.pp):
            return (
                f"megatron-tp-pp-dp: TP {c.tp} x PP {b.pp} x DP must equal the {c.world} GPUs; "
                f"{c.tp * b.pp} does not divide {c.world}"
            )
        if b.pp > 1 and c.arch and c.arch.num_hidden_layers % b.pp:
            layers = c.arch.num_hidden_layers
            return f"pp-divides-layers: PP {b.pp} does not divide {c.arch.key}'s {layers} layers"
        if b.ulysses_sp > 1:
            return f"ulysses-fsdp-only: ulysses_sp {b.ulysses_sp} is FSDP-only (Megatron: context parallel)"
    else:
        if c.world % b.ulysses_sp:
            return f"ulysses-divides-gpus: ulysses_sp {b.ulysses_sp} does not divide the {c.world} GPUs"
        if b.ulysses_sp > 1 and not b.use_remove_padding:
            return f"ulysses-needs-remove-padding: ulysses_sp {b.ulysses_sp} needs use_remove_padding = true"
        if b.pp > 1:
            return f"pp-megatron-only: pp {b.pp} needs the megatron backend"
    return None


def _batches(c: Ctx) -> str | None:
    b, n, world = c.base, c.base.rollout_n, c.world
    mini = b.mini_batch(c.rb)
    if mini == 0:
        return f"mini-batch-split: ppo_mini_batch_size {b.ppo_mini_batch_size!r} does not split rb {c.rb}"
    if c.rb < mini:
        return f"train-batch-vs-mini-batch: rollout_batch {c.rb} < ppo_mini_batch_size {mini} (verl ActorConfig)"
    real = c.rb * n
    dp = c.dp
    minimal = dp * b.ppo_micro_batch_size_per_gpu if c.backend == "megatron" else world
    if real % minimal:
        return (
            f"train-batch-divisible: rollout_batch {c.rb} x n {n} = {real} responses not divisible by "
            f"{minimal} ({'DP x micro batch' if c.backend == 'megatron' else 'GPUs'}; verl validate_config)"
        )
    mini_resp = mini * n
    if mini_resp % dp:
        return f"mini-batch-vs-dp: mini batch {mini} x n {n} = {mini_resp} responses not divisible by DP {dp}"
    per_rank = mini_resp // dp
    if per_rank % b.ppo_micro_batch_size_per_gpu:
        return (
            f"mini-vs-micro-batch: {per_rank} responses/GPU per mini batch ({mini} x n {n} / DP {dp}) not "
            f"divisible by ppo_micro_batch_size_per_gpu {b.ppo_micro_batch_size_per_gpu}"
        )
    multiple = math.lcm(dp, mini_resp)
    padded = -(-real // multiple) * multiple
    if (padded // dp) % b.log_prob_micro_batch_size_per_gpu:
        return (
            f"log-prob-micro-batch: {padded // dp} responses per GPU ({padded} / DP {dp}) not divisible by "
            f"log_prob_micro_batch_size_per_gpu {b.log_prob_micro_batch_size_per_gpu}"
        )
    return None


def _lora(c: Ctx) -> str | None:
    if c.lora == 0:
        return None
    if c.lora > VLLM_MAX_LORA_RANK:
        return f"lora-rank-vllm: LoRA rank {c.lora} > {VLLM_MAX_LORA_RANK}, the largest vLLM serves"
    if c.backend == "fsdp" and c.world == 1 and c.base.strategy == "fsdp":
        # verl 0.9.1's layered summon finds no LoRA tensor in FSDP1's NO_SHARD units and falls back to a full
        # summon with offload_to_cpu, which torch refuses for NO_SHARD (tests/test_verl_logprob_paths.py)
        return "lora-1gpu-needs-fsdp2: LoRA on 1 GPU fails with FSDP1 (NO_SHARD); set strategy = 'fsdp2'"
    return None


def _fused_kernels(c: Ctx) -> str | None:
    """verl 0.9.1's fused forward reads lm_head.weight without calling lm_head; FSDP2 wraps an untied lm_head as
    a unit of its own, so the weight is still a sharded DTensor there and the first forward fails
    (`aten.mm.default got mixed torch.Tensor and DTensor`). With tied embeddings lm_head is not wrapped apart."""
    b, a = c.base, c.arch
    if not (b.use_fused_kernels and c.backend == "fsdp" and b.strategy == "fsdp2") or a is None:
        return None
    if a.tie_word_embeddings:
        return None
    # FSDP1 runs the fused forward, but not LoRA on one GPU (_lora)
    way_out = "" if c.lora and c.world == 1 else " or strategy = 'fsdp'"
    return (
        f"fused-kernels-fsdp2-untied: use_fused_kernels = true on FSDP2 fails for {a.key} (untied embeddings: "
        f"FSDP2 shards lm_head apart and verl's fused forward reads its weight as a DTensor); set "
        f"use_fused_kernels = false{way_out}"
    )


def _bypass_lora_ref(c: Ctx) -> str | None:
    """Measured (baselines/evidence/2026-12-03-h200-heavy-4, verl 0.9.1, peft 0.21, torch 2.11): with LoRA verl's
    reference is the actor with its adapter disabled, and peft's disable sets requires_grad False on the
    adapter. Bypass skips the old log-prob pass, so the ref forward becomes the actor's first call; FSDP2's lazy
    init then sees no trainable parameter, keeps no reduce dtype, and the first update's bf16 gradient is refused
    by the fp32 LoRA shard. Without a reference (no KL loss) the same bypass runs."""
    if not (c.lora and c.backend == "fsdp" and c.base.strategy == "fsdp2" and c.base.use_kl_loss):
        return None
    if c.raw.get(BYPASS_KEY) is not True:
        return None
    return (
        f"bypass-lora-ref-first: {BYPASS_KEY} = true with a LoRA actor and use_kl_loss = true crashes in the "
        "first update (verl 0.9.1 on FSDP2: the reference pass, adapter disabled, is the actor's first call and "
        "FSDP2 keeps no reduce dtype); set use_kl_loss = false or bypass_mode = false"
    )


def _megatron_attention(c: Ctx) -> str | None:
    """verl 0.9.1 sets Megatron's attention backend to 'flash' (engine/megatron.yaml), which makes
    TransformerEngine require the flash-attn package; a matrix says it has none with `flash_attn = false`, or
    (when it leaves flash_attn out) by running the model on one of torch's attentions (sdpa, eager, flex_attention):
    the signal the memory planner reads too (`MemorySettings.flash_attn_cross_entropy`: no flash-attn unless
    flash_attention_2/3 or `flash_attn = true`), so the two agree on where such a matrix runs."""
    b = c.base
    if c.backend != "megatron" or b.megatron_attention_backend not in (None, "flash"):
        return None
    if c.flash_attn is False:
        says = "flash_attn = false"
    elif c.flash_attn is None and b.attn_implementation in ("sdpa", "eager", "flex_attention"):
        says = f"attn_implementation = {b.attn_implementation!r} (no flash-attn)"
    else:
        return None
    return (
        f"megatron-attention-needs-flash-attn: Megatron's attention backend "
        f"{b.megatron_attention_backend or 'flash (verl default)'} needs flash-attn, and this matrix sets {says}; "
        "set megatron_attention_backend = 'fused' (cuDNN through TransformerEngine)"
    )


def _offload(c: Ctx) -> str | None:
    comps = parse_offload(c.offload) or frozenset()
    if c.backend == "megatron" and comps & FSDP_ONLY:
        return f"offload-backend: offload {c.offload!r} uses {'+'.join(sorted(comps & FSDP_ONLY))}, FSDP only"
    if "policy" in comps and c.base.strategy != "fsdp2":
        return "offload-policy-needs-fsdp2: offload 'policy' is FSDP2's CPUOffloadPolicy; set strategy = 'fsdp2'"
    return None


def _lengths(c: Ctx) -> str | None:
    b = c.base
    total = b.prompt_length + b.response_length
    if b.max_model_len is not None and total > b.max_model_len:
        return (
            f"length-vs-max-model-len: prompt {b.prompt_length} + response {b.response_length} = {total} > "
            f"max_model_len {b.max_model_len}"
        )
    limit = c.arch.max_position_embeddings if c.arch else None
    if limit and max(total, b.max_model_len or 0) > limit:
        return f"length-vs-context: {max(total, b.max_model_len or 0)} tokens > {c.arch.key}'s context {limit}"
    max_seqs = b.max_num_seqs or 256  # verl's rollout.max_num_seqs default
    if b.max_num_batched_tokens is not None and b.max_num_batched_tokens < max_seqs:
        return (
            f"batched-tokens-vs-seqs: max_num_batched_tokens {b.max_num_batched_tokens} < "
            f"max_num_seqs {max_seqs} "
            "(vLLM scheduler)"
        )
    return None


def _fsdp_attention(c: Ctx) -> str | None:
    """transformers' flash_attention_2/3 (verl's default on FSDP) import flash-attn's kernels: a matrix that says
    its environment has none must run the model on a torch attention."""
    attn = c.base.attn_implementation
    if c.backend != "fsdp" or c.flash_attn is not False or attn not in (None, "flash_attention_2"):
        return None
    return (
        f"fsdp-attention-needs-flash-attn: attn_implementation {attn or 'flash_attention_2 (verl default)'} needs "
        "flash-attn, and this matrix sets flash_attn = false; set attn_implementation = 'sdpa', 'flex_attention' "
        "or 'eager'"
    )


def _host_copies(c: Ctx) -> str | None:
    if c.base.pageable_host_copies and c.base.registered_host_copies:
        return (
            "pageable_host_copies and registered_host_copies are both true: set one (pageable: host copies of their "
            "own size made again every step; registered: of their own size, pinned once and reused)"
        )
    return None


RULES: tuple[Callable[[Ctx], str | None], ...] = (
    _rollout_tp,
    _parallel,
    _heads,
    _offload,
    _megatron_attention,
    _fsdp_attention,
    _lora,
    _fused_kernels,
    _bypass_lora_ref,
    _batches,
    _lengths,
    _host_copies,
)


def check_cell(m: Matrix, point: dict) -> str | None:
    """The first broken rule's reason for one point of the matrix, or None."""
    mx = m.matrix
    c = Ctx(
        world=mx.nnodes * mx.gpus_per_node,
        gpus_per_node=mx.gpus_per_node,
        backend=mx.backend,
        base=m.base_for(point),
        arch=arch_for_model(mx.model),
        lora=point["lora_rank"],
        offload=point["offload"],
        tp=point["tp"],
        rb=point["rollout_batch"],
        # an axis value wins over the same key in [overrides], as in the cell's command
        raw={k.lstrip("+"): v for src in (m.overrides, m.raw_axes(point)) for k, v in src.items()},
        flash_attn=mx.flash_attn,
    )
    for rule in RULES:
        reason = rule(c)
        if reason:
            return reason
    return None
