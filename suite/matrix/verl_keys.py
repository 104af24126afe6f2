"""Which verl 0.9.1 keys each readable name of [base] / [axes] sets (suite/plan/overrides.py writes them).

Two uses: a raw verl key given as an axis is read as the readable setting it is (its values typed, the plan-time
rules applied to them), and a raw `[overrides]` key that sets what a readable name in the file already sets is an
input error instead of a silent winner. `tests/test_matrix_verl_keys.py` checks this table against the keys the
planner writes."""

from __future__ import annotations

_AR = "actor_rollout_ref"
_ROLLOUT, _ACTOR, _MODEL, _MEGATRON = f"{_AR}.rollout", f"{_AR}.actor", f"{_AR}.model", f"{_AR}.actor.megatron"
_BOTH = ("fsdp", "megatron")

# readable name -> {backend: the verl keys that ARE this setting}. A key the planner only derives from a name
# (Megatron's actor TP from `tp`, the reference model's offload from `offload`) is not listed: a raw override
# of it refines the plan instead of contradicting it.
_SAME: dict[str, dict[str, tuple[str, ...]]] = {
    "lora_rank": {"fsdp": (f"{_MODEL}.lora_rank",), "megatron": (f"{_MODEL}.lora.rank",)},
    "lora_alpha": {"fsdp": (f"{_MODEL}.lora_alpha",), "megatron": (f"{_MODEL}.lora.alpha",)},
    "target_modules": {"fsdp": (f"{_MODEL}.target_modules",), "megatron": (f"{_MODEL}.lora.target_modules",)},
    "tp": {b: (f"{_ROLLOUT}.tensor_model_parallel_size",) for b in _BOTH},
    "rollout_batch": {b: ("data.train_batch_size",) for b in _BOTH},
    "prompt_length": {b: ("data.max_prompt_length",) for b in _BOTH},
    "response_length": {b: ("data.max_response_length",) for b in _BOTH},
    "dataloader_num_workers": {b: ("data.dataloader_num_workers",) for b in _BOTH},
    "seed": {b: ("data.seed",) for b in _BOTH},
    "rollout_n": {b: (f"{_ROLLOUT}.n",) for b in _BOTH},
    "gpu_memory_utilization": {b: (f"{_ROLLOUT}.gpu_memory_utilization",) for b in _BOTH},
    "temperature": {b: (f"{_ROLLOUT}.temperature",) for b in _BOTH},
    "enforce_eager": {b: (f"{_ROLLOUT}.enforce_eager",) for b in _BOTH},
    "layered_summon": {b: (f"{_ROLLOUT}.layered_summon",) for b in _BOTH},
    "load_format": {b: (f"{_ROLLOUT}.load_format",) for b in _BOTH},
    "max_num_batched_tokens": {b: (f"{_ROLLOUT}.max_num_batched_tokens",) for b in _BOTH},
    "max_model_len": {b: (f"{_ROLLOUT}.max_model_len",) for b in _BOTH},
    "max_num_seqs": {b: (f"{_ROLLOUT}.max_num_seqs",) for b in _BOTH},
    "agent_num_workers": {b: (f"{_ROLLOUT}.agent.num_workers",) for b in _BOTH},
    "log_prob_micro_batch_size_per_gpu": {
        b: (f"{_ROLLOUT}.log_prob_micro_batch_size_per_gpu", f"{_AR}.ref.log_prob_micro_batch_size_per_gpu")
        for b in _BOTH
    },
    "lr": {b: (f"{_ACTOR}.optim.lr",) for b in _BOTH},
    "ppo_mini_batch_size": {b: (f"{_ACTOR}.ppo_mini_batch_size",) for b in _BOTH},
    "ppo_micro_batch_size_per_gpu": {b: (f"{_ACTOR}.ppo_micro_batch_size_per_gpu",) for b in _BOTH},
    "use_kl_loss": {b: (f"{_ACTOR}.use_kl_loss",) for b in _BOTH},
    "kl_loss_coef": {b: (f"{_ACTOR}.kl_loss_coef",) for b in _BOTH},
    "entropy_coeff": {b: (f"{_ACTOR}.entropy_coeff",) for b in _BOTH},
    "strategy": {"fsdp": (f"{_ACTOR}.strategy",)},
    "ulysses_sp": {"fsdp": (f"{_ACTOR}.ulysses_sequence_parallel_size",)},
    "pp": {"megatron": (f"{_MEGATRON}.pipeline_model_parallel_size",)},
    "megatron_attention_backend": {"megatron": (f"{_MEGATRON}.override_transformer_config.attention_backend",)},
    "megatron_gradient_accumulation_fusion": {
        "megatron": (f"{_MEGATRON}.override_transformer_config.gradient_accumulation_fusion",)
    },
    "use_remove_padding": {b: (f"{_MODEL}.use_remove_padding",) for b in _BOTH},
    "enable_gradient_checkpointing": {b: (f"{_MODEL}.enable_gradient_checkpointing",) for b in _BOTH},
    "use_shm": {b: (f"{_MODEL}.use_shm",) for b in _BOTH},
    "attn_implementation": {b: (f"{_MODEL}.override_config.attn_implementation",) for b in _BOTH},
    "reward_num_workers": {b: ("reward.num_workers",) for b in _BOTH},
    "tq_storage_units": {b: ("transfer_queue.backend.SimpleStorage.num_data_storage_units",) for b in _BOTH},
    "format_score": {b: ("reward.custom_reward_function.reward_kwargs.format_score",) for b in _BOTH},
}
# Names whose one value sets several keys of another kind (a raw key cannot stand for the name's value).
_PART: dict[str, dict[str, tuple[str, ...]]] = {
    "offload": {
        "fsdp": (
            f"{_ACTOR}.fsdp_config.param_offload",
            f"{_ACTOR}.fsdp_config.optimizer_offload",
            f"{_ACTOR}.fsdp_config.offload_policy",
            f"{_MODEL}.enable_activation_offload",
        ),
        "megatron": tuple(f"{_MEGATRON}.{k}" for k in ("param_offload", "optimizer_offload")),
    },
    "reward": {b: ("reward.custom_reward_function.path", "reward.custom_reward_function.name") for b in _BOTH},
    # the switch and its backend (verl patches the forward only for a named one)
    "use_fused_kernels": {
        b: (f"{_MODEL}.use_fused_kernels", f"{_MODEL}.fused_kernel_options.impl_backend") for b in _BOTH
    },
}


def bare(key: str) -> str:
    """A key without Hydra's +/++/~ prefix."""
    return key.lstrip("+~")


def keys_of(name: str, backend: str) -> tuple[str, ...]:
    """Every verl key a readable name sets on a backend."""
    return _SAME.get(name, {}).get(backend, ()) + _PART.get(name, {}).get(backend, ())


def readable_name(key: str, backend: str) -> str | None:
    """The readable name a raw verl key is (its value is that name's value), or None."""
    k = bare(key)
    return next((name for name, per in _SAME.items() if k in per.get(backend, ())), None)


def names() -> tuple[str, ...]:
    return (*_SAME, *_PART)
