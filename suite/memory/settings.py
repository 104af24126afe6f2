"""What the memory model needs to know about one cell, as a plain frozen dataclass.

The single source of truth is the verl command itself: `settings_from_overrides` reads verl 0.9.1's Hydra keys
(the same keys `suite/plan/overrides.py` writes: a planned cell's typed overrides, or a result's recorded
`provenance.argv`), falling back to verl's own defaults for keys a command leaves out. So a prediction for a
planned cell, a raw `[overrides]` entry of a matrix and a measured result all go through one path."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from suite.errors import InputError
from suite.gpus import get_gpu
from suite.matrix.offload import backend_overrides
from suite.models.archs import Arch, arch_for_model
from suite.plan.cell import (
    ALLOC_CONF_KEY,
    EXTERNAL_MODULES_KEY,
    FLASH_CE_KEY,
    FSDP_COPIES_KEY,
    PAGEABLE_COPIES_MODULE,
    VLLM_COPIES_KEY,
    external_modules,
)
from suite.plan.hydra import split_argv

if TYPE_CHECKING:
    from suite.plan.cell import Cell

AR = "actor_rollout_ref"


@dataclass(frozen=True)
class MemorySettings:
    arch: Arch
    gpu: str  # generation key (suite/gpus.py)
    gpu_memory_gib: float
    n_gpus: int  # world size
    backend: str  # fsdp | megatron
    lora_rank: int = 0
    target_modules: tuple[str, ...] = ("all-linear",)
    param_offload: bool = False
    optimizer_offload: bool = False
    ref_param_offload: bool = False
    offload_policy: bool = False  # FSDP2 CPUOffloadPolicy: actor state lives on CPU for the whole step
    activation_offload: bool = False
    rollout_tp: int = 1
    megatron_tp: int = 1
    megatron_pp: int = 1
    ulysses_sp: int = 1
    train_batch_size: int = 1024  # prompts per step (the rollout_batch axis)
    rollout_n: int = 1
    prompt_length: int = 512
    response_length: int = 512
    ppo_mini_batch_size: int = 256  # prompts
    ppo_micro_batch_size_per_gpu: int = 1  # responses
    log_prob_micro_batch_size_per_gpu: int = 1
    ref_log_prob_micro_batch_size_per_gpu: int = 1
    use_dynamic_bsz: bool = False
    ppo_max_token_len_per_gpu: int = 16384
    log_prob_max_token_len_per_gpu: int = 16384
    gradient_checkpointing: bool = True
    use_remove_padding: bool = True
    attn_implementation: str = "flash_attention_2"  # verl 0.9.1's default (workers/config/model.py)
    # Whether the environment has flash-attn (`[matrix] flash_attn`; a result: whether it recorded its version);
    # None: not said, and then the attention implementation tells (see flash_attn_cross_entropy)
    flash_attn: bool | None = None
    # VERL_DISABLE_FLASH_ATTN_CE=1 in the workers' environment (what `flash_attn = false` plans): torch log-softmax
    flash_ce_disabled: bool = False
    # model.use_fused_kernels on FSDP: log-probs from hidden states in chunks of FUSED_CHUNK_TOKENS, no full logits
    fused_kernels: bool = False
    megatron_recompute: bool = False  # override_transformer_config.recompute_granularity == "full"
    use_kl_loss: bool = False  # with use_kl_in_reward: a reference policy is computed
    entropy_coeff: float = 0.0
    # algorithm.rollout_correction.bypass_mode: the rollout's log-probs stand in for the old log-prob pass
    bypass_old_log_prob: bool = False
    model_dtype: str | None = None  # FSDP actor weights (fsdp_config.model_dtype); None: verl's default
    gpu_memory_utilization: float = 0.5
    free_cache_engine: bool = True
    enforce_eager: bool = False
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    max_model_len: int | None = None
    # Host memory (suite/memory/host.py): what decides the host RAM of one node.
    gpus_per_node: int | None = None  # None: all n_gpus on one node
    fsdp_strategy: str = "fsdp"  # actor.strategy: fsdp (FSDP1 flat params) | fsdp2 (per-parameter DTensors)
    lora_merge: bool = False  # model.lora.merge: vLLM gets merged weights, not an adapter (sleep level 2)
    ref_model_dtype: str | None = None  # FSDP reference weights (ref.fsdp_config.model_dtype); None: verl's fp32
    load_format: str = "dummy"  # rollout.load_format: "dummy" makes the first LoRA sync send the base weights
    layered_summon: bool = False
    agent_num_workers: int = 8  # rollout.agent.num_workers (Ray actors)
    reward_num_workers: int = 8  # reward.num_workers (Ray actors)
    dataloader_num_workers: int = 8  # data.dataloader_num_workers (processes forked from the TaskRunner)
    # verl 0.9.1's v1 trainer (trainer.use_v1, the default) keeps the batch in TransferQueue: a controller and
    # transfer_queue.backend.SimpleStorage.num_data_storage_units storage actors
    use_v1: bool = True
    tq_storage_units: int = 8
    # torch's pinned-allocator settings in the workers' PYTORCH_ALLOC_CONF (or PYTORCH_CUDA_ALLOC_CONF), MiB;
    # None: torch's default (no limit: every block rounded up to a power of two and cached)
    pinned_round_max_mib: float | None = None  # pinned_max_round_threshold_mb
    pinned_cache_max_mib: float | None = None  # pinned_max_cached_size_mb
    # suite/run/pageable_copies.py in the workers' VERL_USE_EXTERNAL_MODULES: FSDP2 parameter and optimizer
    # offload and vLLM's sleep backup in pageable memory (never rounded)
    pageable_copies: bool = False
    # the same module with GRPO_SUITE_FSDP_HOST_COPIES=registered: FSDP2 parameter and optimizer offload into
    # exact-size buffers pinned in place (never rounded)
    registered_copies: bool = False
    # GRPO_SUITE_VLLM_HOST_COPIES=registered: vLLM's sleep backup in such buffers too (never rounded)
    vllm_registered: bool = False
    notes: tuple[str, ...] = field(default=(), compare=False)  # assumptions made while reading the command

    @property
    def lora(self) -> bool:
        return self.lora_rank > 0

    @property
    def flash_attn_cross_entropy(self) -> bool:
        """verl 0.9.1 computes log-probs with flash-attn's Triton cross entropy wherever flash-attn imports
        (utils/torch_functional.py logprobs_from_logits) unless VERL_DISABLE_FLASH_ATTN_CE=1; flash_attention_2/3
        cannot run without it."""
        if self.flash_ce_disabled:
            return False
        if self.flash_attn is not None:
            return self.flash_attn
        return self.attn_implementation in ("flash_attention_2", "flash_attention_3")

    @property
    def seq_length(self) -> int:
        return self.prompt_length + self.response_length

    @property
    def node_gpus(self) -> int:
        """GPUs of one node (the busiest: every node holds the same number)."""
        return max(1, min(self.n_gpus, self.gpus_per_node or self.n_gpus))

    @property
    def nnodes(self) -> int:
        return max(1, -(-self.n_gpus // self.node_gpus))


# --- a recorded command --------------------------------------------------------------------------------------


def overrides_from_argv(argv: list[str]) -> dict[str, Any]:
    """`key=value` items of a recorded verl command (a result's provenance) -> {key: value}, prefixes dropped."""
    return {o.key: o.value for o in split_argv(argv)[1]}


# --- overrides -> settings --------------------------------------------------------------------------------


# torch reads PYTORCH_ALLOC_CONF first and falls back to the older name
ALLOC_CONF_KEYS = (ALLOC_CONF_KEY, ALLOC_CONF_KEY.replace("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF"))
_PINNED_LIMIT = re.compile(
    r"(?:^|,)\s*(pinned_max_round_threshold_mb|pinned_max_cached_size_mb)\s*:\s*([0-9]+)\s*(?=,|$)"
)


def pinned_limits(conf: str | None) -> tuple[float | None, float | None]:
    """(pinned_max_round_threshold_mb, pinned_max_cached_size_mb) of a torch allocator config string such as
    "expandable_segments:True,pinned_max_round_threshold_mb:1"; None for a key it does not set."""
    found = {k: float(v) for k, v in _PINNED_LIMIT.findall(conf or "")}
    return found.get("pinned_max_round_threshold_mb"), found.get("pinned_max_cached_size_mb")


def _get(o: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if k in o and o[k] is not None:
            return o[k]
    return default


def _int_or_none(o: dict[str, Any], key: str, notes: list[str]) -> int | None:
    """An optional integer setting; a value that is not one (e.g. `<redacted>` in results recorded before
    provenance stopped redacting *_tokens keys) counts as unset, with a note."""
    v = _get(o, key)
    if v is None or isinstance(v, bool):
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        notes.append(f"{key.rsplit('.', 1)[-1]}={v!r} is not a number: verl's default assumed")
        return None


def settings_from_overrides(
    overrides: dict[str, Any],
    *,
    model: str,
    gpu: str,
    n_gpus: int,
    backend: str | None = None,
    gpus_per_node: int | None = None,
    flash_attn: bool | None = None,
) -> MemorySettings:
    """Settings of a verl 0.9.1 command given as {hydra key: value}; absent keys take verl's defaults.
    `gpus_per_node` (the cell's or result's layout) wins over the command's `trainer.n_gpus_per_node`;
    `flash_attn`: whether the environment has flash-attn, which the command does not say."""
    arch = arch_for_model(model)
    if arch is None:
        raise InputError(f"no known architecture for model {model!r}: memory cannot be predicted", field="model")
    gen = get_gpu(gpu)
    o = {k.lstrip("+~"): v for k, v in overrides.items()}
    megatron = (backend or ("megatron" if o.get("model_engine") == "megatron" else "fsdp")) == "megatron"
    eng = f"{AR}.actor.megatron" if megatron else f"{AR}.actor.fsdp_config"
    ref_eng = f"{AR}.ref.megatron" if megatron else f"{AR}.ref.fsdp_config"
    notes: list[str] = []

    lora_rank = int(_get(o, f"{AR}.model.lora.rank", f"{AR}.model.lora_rank", default=0))
    targets = _get(o, f"{AR}.model.lora.target_modules", f"{AR}.model.target_modules", default="all-linear")
    target_modules = tuple(targets) if isinstance(targets, list) else (str(targets),)

    micro = _get(o, f"{AR}.actor.ppo_micro_batch_size_per_gpu")
    lp_micro = _get(o, f"{AR}.rollout.log_prob_micro_batch_size_per_gpu")
    ref_micro = _get(o, f"{AR}.ref.log_prob_micro_batch_size_per_gpu", default=lp_micro)
    dynamic = bool(_get(o, f"{AR}.actor.use_dynamic_bsz", default=False))
    if not dynamic and (micro is None or lp_micro is None):
        # verl asserts both are set without dynamic batch sizes; 1 is the smallest (most optimistic) value.
        notes.append("micro batch size unset: assumed 1")
    ppo_max_tok = int(_get(o, f"{AR}.actor.ppo_max_token_len_per_gpu", default=16384))

    recompute = _get(o, f"{eng}.override_transformer_config.recompute_granularity")
    model_dtype = _get(o, f"{eng}.model_dtype")
    ref_dtype = None if megatron else _get(o, f"{ref_eng}.model_dtype")
    copies = PAGEABLE_COPIES_MODULE in external_modules(_get(o, EXTERNAL_MODULES_KEY, default=""))
    vllm_copies = str(_get(o, VLLM_COPIES_KEY, default="pageable"))
    round_max, cache_max = pinned_limits(None if (conf := _get(o, *ALLOC_CONF_KEYS)) is None else str(conf))

    return MemorySettings(
        arch=arch,
        gpu=gen.key,
        gpu_memory_gib=gen.memory_gib,
        n_gpus=n_gpus,
        backend="megatron" if megatron else "fsdp",
        lora_rank=lora_rank,
        target_modules=target_modules,
        param_offload=bool(_get(o, f"{eng}.param_offload", default=False)),
        optimizer_offload=bool(_get(o, f"{eng}.optimizer_offload", default=False)),
        ref_param_offload=bool(_get(o, f"{ref_eng}.param_offload", default=False)),
        offload_policy=not megatron and bool(_get(o, f"{eng}.offload_policy", default=False)),
        activation_offload=bool(_get(o, f"{AR}.model.enable_activation_offload", default=False)),
        rollout_tp=int(_get(o, f"{AR}.rollout.tensor_model_parallel_size", default=1 if not megatron else 2)),
        megatron_tp=int(_get(o, f"{AR}.actor.megatron.tensor_model_parallel_size", default=1)) if megatron else 1,
        megatron_pp=int(_get(o, f"{AR}.actor.megatron.pipeline_model_parallel_size", default=1)) if megatron else 1,
        ulysses_sp=int(_get(o, f"{AR}.actor.ulysses_sequence_parallel_size", default=1)) if not megatron else 1,
        train_batch_size=int(_get(o, "data.train_batch_size", default=1024)),
        rollout_n=int(_get(o, f"{AR}.rollout.n", default=1)),
        prompt_length=int(_get(o, "data.max_prompt_length", default=512)),
        response_length=int(_get(o, "data.max_response_length", default=512)),
        ppo_mini_batch_size=int(_get(o, f"{AR}.actor.ppo_mini_batch_size", default=256)),
        ppo_micro_batch_size_per_gpu=int(micro or 1),
        log_prob_micro_batch_size_per_gpu=int(lp_micro or 1),
        ref_log_prob_micro_batch_size_per_gpu=int(ref_micro or 1),
        use_dynamic_bsz=dynamic,
        ppo_max_token_len_per_gpu=ppo_max_tok,
        log_prob_max_token_len_per_gpu=int(
            _get(o, f"{AR}.rollout.log_prob_max_token_len_per_gpu", default=ppo_max_tok)
        ),
        gradient_checkpointing=bool(_get(o, f"{AR}.model.enable_gradient_checkpointing", default=True)),
        use_remove_padding=bool(_get(o, f"{AR}.model.use_remove_padding", default=True)),
        attn_implementation=str(
            _get(o, f"{AR}.model.override_config.attn_implementation", default="flash_attention_2")
        ),
        flash_attn=flash_attn,
        flash_ce_disabled=str(_get(o, FLASH_CE_KEY, default="0")).strip() == "1",
        fused_kernels=not megatron
        and bool(_get(o, f"{AR}.model.use_fused_kernels", default=False))
        and _get(o, f"{AR}.model.fused_kernel_options.impl_backend", default="torch") in ("torch", "triton", "liger"),
        megatron_recompute=megatron and str(recompute).lower() == "full",
        use_kl_loss=bool(_get(o, f"{AR}.actor.use_kl_loss", default=False))
        or bool(_get(o, "algorithm.use_kl_in_reward", default=False)),
        entropy_coeff=float(_get(o, f"{AR}.actor.entropy_coeff", default=0.0)),
        bypass_old_log_prob=bool(_get(o, "algorithm.rollout_correction.bypass_mode", default=False)),
        model_dtype=None if model_dtype is None else str(model_dtype),
        gpu_memory_utilization=float(_get(o, f"{AR}.rollout.gpu_memory_utilization", default=0.5)),
        free_cache_engine=bool(_get(o, f"{AR}.rollout.free_cache_engine", default=True)),
        enforce_eager=bool(_get(o, f"{AR}.rollout.enforce_eager", default=False)),
        max_num_batched_tokens=_int_or_none(o, f"{AR}.rollout.max_num_batched_tokens", notes),
        max_num_seqs=_int_or_none(o, f"{AR}.rollout.max_num_seqs", notes),
        max_model_len=_int_or_none(o, f"{AR}.rollout.max_model_len", notes),
        gpus_per_node=gpus_per_node or _int_or_none(o, "trainer.n_gpus_per_node", notes),
        fsdp_strategy=str(_get(o, f"{AR}.actor.strategy", default="fsdp")),
        lora_merge=bool(_get(o, f"{AR}.model.lora.merge", default=False)),
        ref_model_dtype=None if ref_dtype is None else str(ref_dtype),
        load_format=str(_get(o, f"{AR}.rollout.load_format", default="dummy")),
        layered_summon=bool(_get(o, f"{AR}.rollout.layered_summon", default=False)),
        agent_num_workers=int(_get(o, f"{AR}.rollout.agent.num_workers", default=8)),
        # verl 0.9.1 reward_loop.py: a set reward_model.num_workers (the older key) replaces reward.num_workers
        reward_num_workers=int(_get(o, "reward_model.num_workers", "reward.num_workers", default=8)),
        dataloader_num_workers=int(_get(o, "data.dataloader_num_workers", default=8)),
        use_v1=bool(_get(o, "trainer.use_v1", default=True)),
        tq_storage_units=int(_get(o, "transfer_queue.backend.SimpleStorage.num_data_storage_units", default=8)),
        pinned_round_max_mib=round_max,
        pinned_cache_max_mib=cache_max,
        pageable_copies=copies and vllm_copies == "pageable",
        registered_copies=copies and str(_get(o, FSDP_COPIES_KEY, default="pageable")) == "registered",
        vllm_registered=copies and vllm_copies == "registered",
        notes=tuple(notes),
    )


def settings_from_argv(
    argv: list[str],
    *,
    model: str,
    gpu: str,
    n_gpus: int,
    backend: str | None = None,
    gpus_per_node: int | None = None,
) -> MemorySettings:
    return settings_from_overrides(
        overrides_from_argv(argv), model=model, gpu=gpu, n_gpus=n_gpus, backend=backend, gpus_per_node=gpus_per_node
    )


def settings_from_cell(cell: Cell | Any) -> MemorySettings:
    """A planned cell, from its typed overrides (no command line is read back); anything else with model, gpu,
    n_gpus and backend is read from its recorded `argv` (a result's command, e.g. to check a committed prediction)."""
    overrides = getattr(cell, "overrides", None)
    values = {o.key: o.value for o in overrides} if overrides is not None else overrides_from_argv(list(cell.argv))
    return settings_from_overrides(
        values,
        model=cell.model,
        gpu=cell.gpu,
        n_gpus=cell.n_gpus,
        backend=cell.backend,
        gpus_per_node=getattr(cell, "gpus_per_node", None),
        flash_attn=getattr(cell, "flash_attn", None),
    )


def flash_attn_recorded(result: Any) -> bool | None:
    """Whether a result's environment had flash-attn: its provenance records the versions of the packages that
    decide a run (suite/packages.py), flash-attn's where it is installed; None for a result that recorded none."""
    versions = getattr(result.provenance, "versions", None)
    return ("flash-attn" in versions) if versions else None


def settings_from_result(result: Any) -> MemorySettings:
    """A `suite.results.schema.Result`: its recorded verl command, else its axes over verl's defaults; whether
    flash-attn was there, from the package versions it recorded."""
    argv = list(result.provenance.argv or [])
    o = overrides_from_argv(argv)
    if not argv:
        o.update(axes_overrides(dict(result.axes), result.backend))
    nnodes = max(1, int(getattr(result, "nnodes", 1) or 1))
    return settings_from_overrides(
        o,
        model=result.model,
        gpu=result.gpu,
        n_gpus=result.n_gpus,
        backend=result.backend,
        gpus_per_node=max(1, result.n_gpus // nnodes),
        flash_attn=flash_attn_recorded(result),
    )


def axes_overrides(axes: dict[str, Any], backend: str) -> dict[str, Any]:
    """verl keys of the four matrix axes (for results that carry no command)."""
    o: dict[str, Any] = {}
    if "lora_rank" in axes:
        o[f"{AR}.model.lora.rank" if backend == "megatron" else f"{AR}.model.lora_rank"] = int(axes["lora_rank"])
    if "offload" in axes:
        o.update(backend_overrides(str(axes["offload"]), backend))
    if "tp" in axes:
        o[f"{AR}.rollout.tensor_model_parallel_size"] = int(axes["tp"])
        if backend == "megatron":
            o[f"{AR}.actor.megatron.tensor_model_parallel_size"] = int(axes["tp"])
    if "rollout_batch" in axes:
        o["data.train_batch_size"] = int(axes["rollout_batch"])
    return o
