"""Makes the host copies a cell's workers keep of GPU memory pageable: of their own size, and given back to the
system when freed. verl imports this module in every process of a cell with `pageable_host_copies = true`
(`VERL_USE_EXTERNAL_MODULES`, set by the plan: suite/plan/overrides.py); importing it is what installs it.

Why: torch's CachingHostAllocator rounds every pinned block up to a power of two and keeps it cached. Offloaded
fp32 weights of 270 MiB take 512 MiB, vLLM's bf16 sleep backups of 135 MiB take 256: on the 14B recipe 61.6 GiB of
the 171.4 GiB the host needs (suite/matrices/h200-1gpu-14b.toml), on a 125 GiB host. torch 2.13's
`pinned_max_round_threshold_mb` lifts the rounding; torch 2.11.0 (every image's) refuses that key. Pageable
copies cost speed instead of memory: the driver stages them, so each offload and reload is synchronous and slower
than a pinned one (the step time of a cell with this setting is the measure of it).

Three copies become pageable, each by a blocking `.to("cpu")` where verl or vLLM asks for pinned memory:
- verl's FSDP2 parameter offload (`verl.utils.fsdp_utils.offload_fsdp2_model_to_cpu`, `non_blocking=True`: a
  pinned destination);
- verl's optimizer-state offload (`offload_fsdp_optimizer`, the same);
- vLLM's sleep-mode weight backup (`vllm.device_allocator.cumem`, `pin_memory=PIN_MEMORY`).
Each module is patched as soon as it is imported, so `from ... import` of the patched names gets the new ones."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import torch

from suite.plan.cell import PAGEABLE_CUMEM as CUMEM
from suite.plan.cell import PAGEABLE_FSDP_UTILS as FSDP_UTILS

_MARK = "_grpo_suite_pageable"


def _require(module: ModuleType, names: tuple[str, ...]) -> None:
    # a verl or vLLM that renamed what is patched would run the cell pinned while it reads as pageable: fail instead
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        raise ImportError(
            f"pageable_host_copies: {module.__name__} has no {', '.join(missing)} (suite/run/pageable_copies.py is "
            "written against verl 0.9.1 and vLLM 0.25.1); plan without pageable_host_copies"
        )


def patch_fsdp_utils(module: ModuleType) -> None:
    """verl's FSDP2 model and optimizer offload, with blocking copies to pageable memory."""
    _require(module, ("get_torch_device", "offload_fsdp2_model_to_cpu", "offload_fsdp_optimizer"))
    device = module.get_torch_device

    @torch.no_grad()
    def offload_fsdp2_model_to_cpu(model: torch.nn.Module, empty_cache: bool = True) -> None:
        model.to("cpu")
        if empty_cache:
            device().empty_cache()

    @torch.no_grad()
    def offload_fsdp_optimizer(optimizer: Any) -> None:
        for group in optimizer.param_groups if optimizer.state else ():
            for param in group["params"]:
                state = optimizer.state[param]
                for key, value in state.items():
                    if isinstance(value, torch.Tensor):
                        state[key] = value.to("cpu")

    for fn in (offload_fsdp2_model_to_cpu, offload_fsdp_optimizer):
        setattr(fn, _MARK, True)
        setattr(module, fn.__name__, fn)


def patch_cumem(module: ModuleType) -> None:
    """vLLM's sleep backups in pageable memory (its sleep and wake-up copy with a synchronous cudaMemcpy)."""
    _require(module, ("PIN_MEMORY",))
    module.PIN_MEMORY = False


PATCHES: dict[str, Callable[[ModuleType], None]] = {FSDP_UTILS: patch_fsdp_utils, CUMEM: patch_cumem}


def _announce(name: str) -> None:
    # one line per patched module and process, in the cell's log (Ray and vLLM forward workers' stderr): the
    # evidence that the copies of a run were pageable, and in which processes
    print(f"[grpo-suite] pageable host copies: {name} patched (pid {os.getpid()})", file=sys.stderr, flush=True)


def _patched(name: str, patch: Callable[[ModuleType], None]) -> Callable[[ModuleType], None]:
    def run(module: ModuleType) -> None:
        if getattr(module, _MARK, False):
            return  # patched once per process, however often install() runs
        patch(module)
        setattr(module, _MARK, True)
        _announce(name)

    return run


class _PatchedLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, patch: Callable[[ModuleType], None]) -> None:
        self.loader, self.patch = loader, patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        self.patch(module)


class AfterImport(importlib.abc.MetaPathFinder):
    """Runs `patches[name](module)` once the module `name` has executed, before its importer sees it."""

    def __init__(self, patches: dict[str, Callable[[ModuleType], None]]) -> None:
        self.patches = patches

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        patch = self.patches.get(name)
        if patch is None:
            return None
        patch = _patched(name, patch)
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchedLoader(spec.loader, patch)
                return spec
        return None


def install(patches: dict[str, Callable[[ModuleType], None]] = PATCHES) -> None:
    """Patch the modules already imported, and the others as they are. Idempotent."""
    for name, patch in patches.items():
        if name in sys.modules:
            _patched(name, patch)(sys.modules[name])
    if not any(getattr(f, _MARK, False) for f in sys.meta_path):
        finder = AfterImport(patches)
        setattr(finder, _MARK, True)
        sys.meta_path.insert(0, finder)


install()
