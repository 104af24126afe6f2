"""Keeps rotary embeddings' frequencies in fp32 through a model's dtype cast. verl imports this module in every
process of a cell whose actor is stored in 16 bits (`VERL_USE_EXTERNAL_MODULES`, set by the plan:
suite/plan/overrides.py); importing it is what installs it.

Why: verl 0.9.1 builds the actor with `module.to(model_dtype)` after loading it
(workers/engine/fsdp/transformer_impl.py `_build_module`), and `Module.to` casts floating buffers as well as
parameters, so transformers' RoPE `inv_freq` (and its `original_inv_freq` copy) become bf16 under
`fsdp_config.model_dtype=bf16`; FSDP2 has no buffer dtype that would put them back. A bf16 frequency is off by
up to 2^-9 of itself, its angle at position p by p times that: whole radians within the seed's 1211 positions,
while vLLM computes its angles from fp32 frequencies. The trainer's log-probs then disagree with the rollout's
(the gate's sentinel: Pearson 0.56 on a 14B bf16-actor run; 0.52 on CPU for the same stand-in with bf16
frequencies against 0.99 with fp32 ones, benchmarks/standin_numerics.py).

The fix recomputes the frequencies from the module's own config with transformers' own function for its RoPE
type, in fp32, whenever a cast leaves them in 16 bits; any other module, and a 32-bit cast, are untouched."""

from __future__ import annotations

from typing import Any

import torch

_SIXTEEN_BITS = (torch.bfloat16, torch.float16)
_BUFFERS = ("inv_freq", "original_inv_freq")
_MARK = "_grpo_suite_rope_fp32"


def fp32_frequencies(module: torch.nn.Module, device: torch.device) -> torch.Tensor | None:
    """The module's RoPE frequencies as transformers computes them at construction, in fp32 on `device`; None
    for a module that is not one of transformers' rotary embeddings (no config and RoPE type to compute from)."""
    config, rope_type = getattr(module, "config", None), getattr(module, "rope_type", None)
    if config is None or not isinstance(rope_type, str):
        return None
    if rope_type == "default":
        compute = getattr(type(module), "compute_default_rope_parameters", None)
    else:
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        compute = ROPE_INIT_FUNCTIONS.get(rope_type)
    if compute is None:
        return None
    inv_freq, _ = compute(config, device)
    return inv_freq.to(device=device, dtype=torch.float32)


def restore(module: torch.nn.Module) -> bool:
    """Put a rotary embedding's 16-bit frequency buffers back to fp32 in place; whether it did."""
    inv = module._buffers.get("inv_freq")
    if inv is None or inv.dtype not in _SIXTEEN_BITS or inv.device.type == "meta":
        return False
    fresh = fp32_frequencies(module, inv.device)
    if fresh is None or fresh.shape != inv.shape:
        return False
    for name in _BUFFERS:
        if name in module._buffers:
            module._buffers[name] = fresh.clone()
    return True


def install() -> None:
    """Wrap `torch.nn.Module._apply` (what `.to()`, `.bfloat16()`, `.cuda()` and `to_empty` run on each module)
    so that a rotary embedding leaves it with fp32 frequencies. Idempotent."""
    current = torch.nn.Module._apply
    if getattr(current, _MARK, False):
        return

    def _apply(self: torch.nn.Module, fn: Any, recurse: bool = True) -> torch.nn.Module:
        out = current(self, fn, recurse)
        restore(self)
        return out

    setattr(_apply, _MARK, True)
    torch.nn.Module._apply = _apply  # type: ignore[method-assign]


install()
