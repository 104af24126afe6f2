"""Offload values of the `offload` axis and what each means per backend.

A value is `none` or components joined by `+` (order-free, each at most once):
  param      actor parameters (and gradients) on CPU between uses; also the reference model's parameters
  optimizer  actor optimizer state on CPU between updates
  activation activation offload in the actor's forward/backward (FSDP only: model.enable_activation_offload)
  policy     FSDP2's CPUOffloadPolicy, parameters live on CPU all step (FSDP only: fsdp_config.offload_policy)
"""

from __future__ import annotations

COMPONENTS = ("param", "optimizer", "activation", "policy")
FSDP_ONLY = frozenset({"activation", "policy"})
# The values the documentation lists; any `+`-combination of COMPONENTS is accepted as well.
DOCUMENTED = ("none", "param", "optimizer", "param+optimizer", "param+optimizer+activation", "policy")


def parse_offload(value: str) -> frozenset[str] | None:
    """The set of components of an offload value, or None when it is not a valid value."""
    if value == "none":
        return frozenset()
    parts = value.split("+")
    if any(p not in COMPONENTS for p in parts) or len(set(parts)) != len(parts):
        return None
    return frozenset(parts)


def canonical(value: str) -> str:
    """One spelling per set, so `optimizer+param` and `param+optimizer` name the same cell."""
    comps = parse_offload(value)
    if comps is None:
        raise ValueError(value)
    return "+".join(c for c in COMPONENTS if c in comps) or "none"


def backend_overrides(value: str, backend: str) -> dict[str, bool]:
    """verl 0.9.1 keys that realise an offload value on a backend (the caller checked validity)."""
    comps = parse_offload(value) or frozenset()
    if backend == "megatron":
        eng, ref = "actor_rollout_ref.actor.megatron", "actor_rollout_ref.ref.megatron"
    else:
        eng, ref = "actor_rollout_ref.actor.fsdp_config", "actor_rollout_ref.ref.fsdp_config"
    out = {
        f"{eng}.param_offload": "param" in comps,
        f"{eng}.optimizer_offload": "optimizer" in comps,
        f"{ref}.param_offload": "param" in comps,
    }
    # FSDP-only components are emitted only when on, so plain cells keep a short command.
    if "policy" in comps:
        out[f"{eng}.offload_policy"] = True
    if "activation" in comps:
        out["actor_rollout_ref.model.enable_activation_offload"] = True
    return out
