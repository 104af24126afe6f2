"""Which axes change what a training step computes, not only how fast it computes it.

A cell that differs from its matrix's reference only in offload, micro batches, checkpointing, vLLM's pool or
CUDA graphs does the reference's work another way: its throughput ratio is a speedup. A cell that drops the KL
loss, trains other parameters or samples other sequences does other work: its ratio is still shown, marked, and
it is never the "fastest cell" of a best-cells line that has a reference. Shared by the report and the gate.

Named axes are [base] names; raw verl keys are matched with their Hydra `+`/`++` prefix stripped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

# [base] names (suite.matrix.schema.Base): the loss, the update schedule, the samples, the trained parameters.
NAMED: frozenset[str] = frozenset(
    {
        "use_kl_loss",
        "kl_loss_coef",
        "entropy_coeff",
        "lr",
        "ppo_mini_batch_size",
        "rollout_n",
        "temperature",
        "prompt_length",
        "response_length",
        "reward",
        "format_score",
        "lora_rank",
        "lora_alpha",
        "target_modules",
    }
)

_ACTOR = "actor_rollout_ref.actor."
# Raw verl keys, exact.
RAW: frozenset[str] = frozenset(
    {
        "algorithm.adv_estimator",
        "algorithm.use_kl_in_reward",
        "algorithm.kl_penalty",
        "algorithm.norm_adv_by_std_in_grpo",
        "algorithm.gamma",
        "algorithm.lam",
        f"{_ACTOR}use_kl_loss",
        f"{_ACTOR}kl_loss_coef",
        f"{_ACTOR}kl_loss_type",
        f"{_ACTOR}entropy_coeff",
        f"{_ACTOR}loss_agg_mode",
        f"{_ACTOR}ppo_epochs",
        f"{_ACTOR}ppo_mini_batch_size",
        f"{_ACTOR}optim.lr",
        f"{_ACTOR}optim.weight_decay",
        f"{_ACTOR}grad_clip",
        # the trained weights' precision: a bf16 actor keeps bf16 master weights, and verl 0.9.1 casts LoRA
        # adapters to the base's dtype (workers/engine/fsdp/transformer_impl.py, _build_lora_module), so halving the
        # frozen base's memory also trains the adapters in bf16
        f"{_ACTOR}fsdp_config.model_dtype",
        "actor_rollout_ref.rollout.n",
        "actor_rollout_ref.rollout.temperature",
        "actor_rollout_ref.rollout.top_p",
        "actor_rollout_ref.rollout.top_k",
        "actor_rollout_ref.model.lora_rank",
        "actor_rollout_ref.model.lora_alpha",
        "actor_rollout_ref.model.target_modules",
        "data.max_prompt_length",
        "data.max_response_length",
    }
)
# Raw verl keys by prefix: whole config groups, and a family of names (clip_ratio, clip_ratio_low, ...).
RAW_PREFIXES: tuple[str, ...] = (
    "algorithm.kl_ctrl.",
    # bypass takes the PPO ratio against the rollout's policy instead of the recomputed old one
    "algorithm.rollout_correction.",
    f"{_ACTOR}clip_ratio",
    f"{_ACTOR}policy_loss.",
    "reward_model.",
    "custom_reward_function.",
)


def changes_objective(axis: str) -> bool:
    """Whether an axis (a [base] name or a raw verl key) changes what a step computes."""
    key = axis.lstrip("+")
    return key in NAMED or key in RAW or key.startswith(RAW_PREFIXES)


def _bare(axes: Mapping[str, object]) -> dict[str, object]:
    return {k.lstrip("+"): v for k, v in axes.items()}


def objective_differences(axes: Mapping[str, object], reference: Mapping[str, object]) -> tuple[str, ...]:
    """The objective axes in which a cell's values differ from its reference's, sorted; `()` when the cell does
    the reference's work. An axis one side lacks counts when the other side has it (its value is unknown)."""
    a, r = _bare(axes), _bare(reference)
    return tuple(
        sorted(k for k in a.keys() | r.keys() if changes_objective(k) and a.get(k, _MISSING) != r.get(k, _MISSING))
    )


# verl 0.9.1's defaults of the objective keys (trainer/config/_generated_ppo_trainer.yaml; a test reads them
# back): a command that leaves one out runs with it, so two commands are compared as verl runs them.
VERL_DEFAULTS: dict[str, object] = {
    "algorithm.adv_estimator": "gae",
    "algorithm.use_kl_in_reward": False,
    "algorithm.kl_penalty": "kl",
    "algorithm.norm_adv_by_std_in_grpo": True,
    "algorithm.gamma": 1.0,
    "algorithm.lam": 1.0,
    "algorithm.rollout_correction.bypass_mode": False,
    f"{_ACTOR}use_kl_loss": False,
    f"{_ACTOR}kl_loss_coef": 0.001,
    f"{_ACTOR}kl_loss_type": "low_var_kl",
    f"{_ACTOR}entropy_coeff": 0,
    f"{_ACTOR}loss_agg_mode": "token-mean",
    f"{_ACTOR}ppo_epochs": 1,
    f"{_ACTOR}ppo_mini_batch_size": 256,
    f"{_ACTOR}optim.lr": 1e-06,
    f"{_ACTOR}optim.weight_decay": 0.01,
    f"{_ACTOR}grad_clip": 1.0,
    f"{_ACTOR}fsdp_config.model_dtype": "fp32",
    "actor_rollout_ref.rollout.n": 1,
    "actor_rollout_ref.rollout.temperature": 1.0,
    "actor_rollout_ref.rollout.top_p": 1,
    "actor_rollout_ref.rollout.top_k": -1,
    "actor_rollout_ref.model.lora_rank": 0,
    "actor_rollout_ref.model.lora_alpha": 16,
    "actor_rollout_ref.model.target_modules": "all-linear",
    "data.max_prompt_length": 512,
    "data.max_response_length": 512,
}


def command_objective(argv: Sequence[str]) -> dict[str, object]:
    """The objective settings of a recorded verl command (bare key -> value, verl's default where the command
    leaves a key out): what two cells of different matrices are compared by, where their axes name other
    things. Feeds `objective_differences` and `note` as axes do. `{}` for a result that recorded no command."""
    from suite.plan.hydra import split_argv

    if not argv:
        return {}
    given = {o.key.lstrip("+~"): o.value for o in split_argv(list(argv))[1] if changes_objective(o.key)}
    return {**VERL_DEFAULTS, **given}


# what a ratio of such a cell is marked with, in the report's tables and the gate's
MARK = "(other objective)"


def note(axes: Mapping[str, object], reference: Mapping[str, object], names: tuple[str, ...]) -> str:
    """`has another objective than its reference (use_kl_loss False (reference True)): ...`, after a cell's name."""
    a, r = _bare(axes), _bare(reference)
    how = ", ".join(f"{n} {a.get(n, 'unset')} (reference {r.get(n, 'unset')})" for n in names)
    return f"has another objective than its reference ({how}): its ratios compare other work"


_MISSING = object()


def objective_views(
    cell: tuple[str, Mapping[str, object], Callable[[], Mapping[str, object]]],
    reference: tuple[str, Mapping[str, object], Callable[[], Mapping[str, object]]],
) -> tuple[Mapping[str, object], Mapping[str, object]]:
    """What a cell and its reference are compared by, each given as (matrix, axes, verl settings when asked):
    their axes within one matrix, their verl settings across two (two matrices' axes name different things).
    The settings are computed only when the matrices differ."""
    (matrix, axes, settings), (ref_matrix, ref_axes, ref_settings) = cell, reference
    return (axes, ref_axes) if matrix == ref_matrix else (settings(), ref_settings())
