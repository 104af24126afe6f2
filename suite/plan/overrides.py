"""One cell's settings -> verl 0.9.1 Hydra overrides (ordered dict key -> value) and their argv form.

Every key here was checked against verl 0.9.1's packaged config (`verl/trainer/config`); the plan composes
each cell's overrides with Hydra before it is called ok, so a key verl dropped shows up as an invalid cell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from suite.data.paths import dataset_files
from suite.data.subset import Subset, train_rows
from suite.matrix.offload import backend_overrides
from suite.matrix.schema import Matrix, Profile
from suite.models.paths import model_path
from suite.plan.cell import (
    ACTOR_DTYPE_KEY,
    ALLOC_CONF_KEY,
    CHECKPOINT_KEY,
    EXTERNAL_MODULES_KEY,
    FLASH_CE_KEY,
    FSDP_COPIES_KEY,
    LOGGER_ENV,
    LOGGER_KEY,
    PAGEABLE_COPIES_MODULE,
    REF_DTYPE_KEY,
    ROPE_FP32_MODULE,
    VALIDATION_KEY,
    VLLM_COPIES_KEY,
    external_modules,
    is_sixteen_bit,
)
from suite.plan.hydra import Override, format_value, split_key

ENTRY = ["python3", "-m", "verl.trainer.main_ppo"]
REWARD_MODULE = "pkg://suite.data.rewards"
VERL_MAX_NUM_SEQS = 256  # verl 0.9.1's rollout.max_num_seqs (trainer/config/rollout/rollout.yaml)


def resolve_model(model: str) -> str:
    """Path verl loads: synthetic models through the cache, local paths with `~` expanded, HF ids as is."""
    if model.startswith(("~", "/", "./")):
        return str(Path(model).expanduser())
    return model_path(model)


def cell_overrides(
    m: Matrix,
    point: dict[str, Any],
    profile: Profile,
    *,
    cell_dir: Path,
    experiment: str,
    data_root: str | None = None,
) -> dict[str, Any]:
    """All overrides of one cell, in a readable order; `[overrides]` of the file win over generated keys."""
    b, mx = m.base_for(point), m.matrix
    lora, offload, tp, rb = point["lora_rank"], point["offload"], point["tp"], point["rollout_batch"]
    inputs = cell_inputs(m, point, profile, cell_dir=cell_dir, data_root=data_root)
    train_files, val_files = dataset_files(mx.dataset, data_root)
    train_files = next((d for d in inputs if d.endswith(TRAIN_SUBSET)), train_files)
    val_files = next((d for d in inputs if d.endswith(VAL_SUBSET)), val_files)
    megatron = mx.backend == "megatron"
    actor, ref, rollout, model = (
        "actor_rollout_ref.actor",
        "actor_rollout_ref.ref",
        "actor_rollout_ref.rollout",
        "actor_rollout_ref.model",
    )
    o: dict[str, Any] = {}
    if megatron:
        # Top-level group choice: swaps actor/ref/critic for their Megatron configs (ppo_trainer.yaml).
        o["model_engine"] = "megatron"
    o["algorithm.adv_estimator"] = "grpo"
    o["algorithm.use_kl_in_reward"] = False
    o["data.train_files"] = train_files
    o["data.val_files"] = val_files
    o["data.train_batch_size"] = rb
    o["data.max_prompt_length"] = b.prompt_length
    o["data.max_response_length"] = b.response_length
    o["data.filter_overlong_prompts"] = True
    o["data.truncation"] = "error"
    o["data.dataloader_num_workers"] = b.dataloader_num_workers
    o["data.seed"] = b.seed
    if profile.val_max_samples > 0:
        o["data.val_max_samples"] = profile.val_max_samples

    o[f"{model}.path"] = resolve_model(mx.model)
    o[f"{model}.use_remove_padding"] = b.use_remove_padding
    o[f"{model}.enable_gradient_checkpointing"] = b.enable_gradient_checkpointing
    if b.use_fused_kernels:
        # verl patches the model's forward only for a named backend; 'torch' needs no extra package
        o[f"{model}.use_fused_kernels"] = True
        o[f"{model}.fused_kernel_options.impl_backend"] = "torch"
    if b.use_shm:
        o[f"{model}.use_shm"] = True
    if b.attn_implementation:
        # override_config is an empty dict in verl's config: a new key needs Hydra's '+'.
        o[f"+{model}.override_config.attn_implementation"] = b.attn_implementation
    if lora > 0:
        if megatron:
            o[f"{model}.lora.rank"] = lora
            o[f"{model}.lora.alpha"] = b.lora_alpha
            # Megatron names its linear layers differently (linear_qkv, ...); verl's default: all.
            if b.target_modules != "all-linear":
                o[f"{model}.lora.target_modules"] = b.target_modules
        else:
            o[f"{model}.lora_rank"] = lora
            o[f"{model}.lora_alpha"] = b.lora_alpha
            o[f"{model}.target_modules"] = b.target_modules

    if not megatron:
        o[f"{actor}.strategy"] = b.strategy  # ref.strategy follows it (${actor_rollout_ref.actor.strategy})
    o[f"{actor}.optim.lr"] = b.lr
    o[f"{actor}.ppo_mini_batch_size"] = b.mini_batch(rb)
    o[f"{actor}.ppo_micro_batch_size_per_gpu"] = b.ppo_micro_batch_size_per_gpu
    o[f"{actor}.use_kl_loss"] = b.use_kl_loss
    o[f"{actor}.kl_loss_coef"] = b.kl_loss_coef
    o[f"{actor}.kl_loss_type"] = "low_var_kl"
    o[f"{actor}.entropy_coeff"] = b.entropy_coeff
    o[f"{actor}.use_torch_compile"] = profile.torch_compile
    if megatron:
        o[f"{actor}.megatron.tensor_model_parallel_size"] = tp
        o[f"{actor}.megatron.pipeline_model_parallel_size"] = b.pp
        if b.megatron_attention_backend:  # the reference model follows the actor's (ref/megatron_ref.yaml)
            o[f"{actor}.megatron.override_transformer_config.attention_backend"] = b.megatron_attention_backend
        # ++: the key is not in verl's override_transformer_config defaults (the ref only runs forward)
        o[f"++{actor}.megatron.override_transformer_config.gradient_accumulation_fusion"] = (
            b.megatron_gradient_accumulation_fusion
        )
    else:
        o[f"{actor}.ulysses_sequence_parallel_size"] = b.ulysses_sp
        o[f"{actor}.fsdp_config.use_torch_compile"] = profile.torch_compile
        o[f"{ref}.fsdp_config.use_torch_compile"] = profile.torch_compile
    o.update(backend_overrides(offload, mx.backend))
    o[f"{ref}.log_prob_micro_batch_size_per_gpu"] = b.log_prob_micro_batch_size_per_gpu

    o[f"{rollout}.name"] = "vllm"
    o[f"{rollout}.mode"] = "async"  # the only mode verl 0.9.1 accepts
    o[f"{rollout}.tensor_model_parallel_size"] = tp
    o[f"{rollout}.n"] = b.rollout_n
    o[f"{rollout}.gpu_memory_utilization"] = b.gpu_memory_utilization
    o[f"{rollout}.log_prob_micro_batch_size_per_gpu"] = b.log_prob_micro_batch_size_per_gpu
    o[f"{rollout}.temperature"] = b.temperature
    eager = profile.enforce_eager if b.enforce_eager is None else b.enforce_eager
    o[f"{rollout}.enforce_eager"] = eager
    o[f"{rollout}.ignore_eos"] = profile.ignore_eos
    if lora > 0 and b.layered_summon:
        o[f"{rollout}.layered_summon"] = True
    if b.load_format:
        o[f"{rollout}.load_format"] = b.load_format
    if b.max_num_batched_tokens:
        o[f"{rollout}.max_num_batched_tokens"] = b.max_num_batched_tokens
    if b.max_model_len:
        o[f"{rollout}.max_model_len"] = b.max_model_len
    if b.max_num_seqs:
        o[f"{rollout}.max_num_seqs"] = b.max_num_seqs
    elif profile.fit_max_num_seqs and not eager:  # eager vLLM captures nothing: leave verl's default
        o[f"{rollout}.max_num_seqs"] = min(rb * b.rollout_n, VERL_MAX_NUM_SEQS)
    o[f"{rollout}.agent.num_workers"] = b.agent_num_workers
    o[f"{rollout}.val_kwargs.n"] = profile.val_n
    o[f"{rollout}.val_kwargs.temperature"] = profile.val_temperature
    o[f"{rollout}.val_kwargs.do_sample"] = profile.val_do_sample
    o["reward.num_workers"] = b.reward_num_workers
    if b.tq_storage_units:
        o["transfer_queue.backend.SimpleStorage.num_data_storage_units"] = b.tq_storage_units
    if b.reward == "gsm8k-format":
        # a module path, not a file path: the plan stays valid on another machine or in a container
        o["reward.custom_reward_function.path"] = REWARD_MODULE
        o["reward.custom_reward_function.name"] = "gsm8k_format"
        o["+reward.custom_reward_function.reward_kwargs.format_score"] = b.format_score

    o["trainer.critic_warmup"] = 0
    o["trainer.logger"] = ["console", "file"]
    o["trainer.project_name"] = f"grpo-suite-{mx.name}"
    o["trainer.experiment_name"] = experiment
    o["trainer.n_gpus_per_node"] = mx.gpus_per_node
    o["trainer.nnodes"] = mx.nnodes
    o["trainer.total_training_steps"] = profile.total_steps
    o["trainer.total_epochs"] = 1000  # steps, not epochs, end the run
    o["trainer.save_freq"] = profile.save_freq
    o["trainer.test_freq"] = profile.test_freq
    o["trainer.val_before_train"] = profile.val_before_train
    o["trainer.resume_mode"] = "disable"  # a rerun into the same cell dir must not resume a checkpoint
    o[CHECKPOINT_KEY] = str(cell_dir / "ckpt")
    o[VALIDATION_KEY] = str(cell_dir / "validation")
    o["+ray_kwargs.ray_init.include_dashboard"] = False
    o[f"+{LOGGER_KEY}"] = str(cell_dir / "metrics.jsonl")
    if b.pinned_round_max_mb is not None:
        o[f"+{ALLOC_CONF_KEY}"] = f"pinned_max_round_threshold_mb:{b.pinned_round_max_mb}"
    if mx.flash_attn is False:
        # the log-probs then take verl's torch path even where flash-attn is installed: the stack the matrix
        # declares is the one measured, and the one its memory is predicted for
        o[f"+{FLASH_CE_KEY}"] = "1"

    # Raw overrides replace generated keys; a raw-key axis value replaces both (it is what the cell sweeps).
    for k, v in [*m.overrides.items(), *m.raw_axes(point).items()]:
        # A raw override replaces a generated one of the same key (with or without Hydra's +/++ prefix).
        bare = k.lstrip("+~")
        for existing in _keys(o, bare):
            del o[existing]
        o[k] = v
    if keeps_rope_fp32(mx, o):
        _add_external_module(o, ROPE_FP32_MODULE)
    if b.pageable_host_copies or b.registered_host_copies:
        _add_external_module(o, PAGEABLE_COPIES_MODULE)
    if b.registered_host_copies:
        o[f"+{FSDP_COPIES_KEY}"] = "registered"
        o[f"+{VLLM_COPIES_KEY}"] = "registered"
    return o


def _keys(o: dict[str, Any], bare: str) -> list[str]:
    """The keys of `o` that name `bare`, with or without Hydra's +/++/~ prefix."""
    return [k for k in o if k.lstrip("+~") == bare]


def keeps_rope_fp32(mx: Any, o: dict[str, Any]) -> bool:
    """Whether a cell's workers load suite/run/rope_fp32.py: `[matrix] keep_rope_fp32`, or where it is left out,
    an FSDP actor or reference stored in 16 bits (the cast that puts RoPE's frequencies in 16 bits)."""
    if mx.backend != "fsdp" or mx.keep_rope_fp32 is False:
        return False
    dtypes = [o[k] for key in (ACTOR_DTYPE_KEY, REF_DTYPE_KEY) for k in _keys(o, key)]
    return mx.keep_rope_fp32 is True or any(is_sixteen_bit(d) for d in dtypes)


def _add_external_module(o: dict[str, Any], module: str) -> None:
    """Name `module` in verl's external-modules variable, after any the matrix names itself."""
    key = next(iter(_keys(o, EXTERNAL_MODULES_KEY)), None)
    if key is None:
        o[f"+{EXTERNAL_MODULES_KEY}"] = module
    elif module not in external_modules(o[key]):
        o[key] = ",".join([*external_modules(o[key]), module])


TRAIN_SUBSET, VAL_SUBSET = "inputs/train.parquet", "inputs/val.parquet"
VAL_SUBSET_ROWS = 16  # verl builds a validation dataloader even when it never validates: keep it tiny


def cell_inputs(
    m: Matrix, point: dict[str, Any], profile: Profile, *, cell_dir: Path, data_root: str | None = None
) -> dict[str, Subset]:
    """The files a cell's run cuts from the dataset before it starts (none unless the profile subsets)."""
    if not profile.subset_data:
        return {}
    train, val = dataset_files(m.matrix.dataset, data_root)
    out: dict[str, Subset] = {
        str(cell_dir / TRAIN_SUBSET): {"source": train, "rows": train_rows(profile.total_steps, point["rollout_batch"])}
    }
    if not profile.validates:
        out[str(cell_dir / VAL_SUBSET)] = {"source": val, "rows": VAL_SUBSET_ROWS}
    return out


LORA_SYNC_LOG_ENV = "VERL_LOGGING_LEVEL"


def cell_env(cell_dir: Path, *, lora: bool = False) -> dict[str, str]:
    env = {LOGGER_ENV: str(cell_dir / "metrics.jsonl")}
    if lora:
        # verl logs each LoRA adapter sync to vLLM only at INFO: the sentinel's evidence that the adapter arrived
        env[LORA_SYNC_LOG_ENV] = "INFO"
    return env


def as_overrides(o: dict[str, Any]) -> tuple[Override, ...]:
    """{"+a.b": v} (the key as Hydra spells it) -> typed overrides, in order."""
    out = []
    for k, v in o.items():
        prefix, key = split_key(k)
        out.append(Override(key, v, prefix))
    return tuple(out)


__all__ = ["ENTRY", "as_overrides", "cell_env", "cell_inputs", "cell_overrides", "format_value", "resolve_model"]
