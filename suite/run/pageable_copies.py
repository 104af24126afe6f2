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
Each module is patched as soon as it is imported, so `from ... import` of the patched names gets the new ones.

Pageable copies are slow where they are made again every step: on the 14B recipe (one H200, 2026-12-07) vLLM's
later sleeps took 20.2 s against 0.60 s pinned, and the actor's offload ran at ~1.2 GiB/s, each copy faulting
fresh memory in. `registered_host_copies` (GRPO_SUITE_FSDP_HOST_COPIES and GRPO_SUITE_VLLM_HOST_COPIES =
registered) keeps all three instead in host buffers of their own size, allocated once per parameter, optimizer
state and vLLM allocation, pinned in place with cudaHostRegister, and reused every step: the pinned path's speed,
the pageable path's bytes. GRPO_SUITE_VLLM_HOST_COPIES=pinned leaves vLLM's backup as vLLM makes it."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import weakref
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import torch

from suite.plan.cell import FSDP_COPIES_ENV, FSDP_COPY_MODES, VLLM_COPIES_ENV, VLLM_COPY_MODES
from suite.plan.cell import PAGEABLE_CUMEM as CUMEM
from suite.plan.cell import PAGEABLE_FSDP_UTILS as FSDP_UTILS

_MARK = "_grpo_suite_pageable"


def _require(module: ModuleType, names: tuple[str, ...], setting: str = "pageable_host_copies") -> None:
    # a verl or vLLM that renamed what is patched would run the cell pinned while it reads as pageable: fail instead
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        raise ImportError(
            f"{setting}: {module.__name__} has no {', '.join(missing)} (suite/run/pageable_copies.py is "
            f"written against verl 0.9.1 and vLLM 0.25.1); plan without {setting}"
        )


def _replace_offloads(
    module: ModuleType,
    model_to_host: Callable[[torch.nn.Module], object],
    state_to_host: Callable[[tuple[int, Any], torch.Tensor], torch.Tensor],
) -> None:
    """verl's FSDP2 model offload and optimizer-state offload, each tensor sent to the host by the given functions
    (a state by its key: the parameter's id and the state's name)."""
    _require(module, ("get_torch_device", "offload_fsdp2_model_to_cpu", "offload_fsdp_optimizer"))
    device = module.get_torch_device

    @torch.no_grad()
    def offload_fsdp2_model_to_cpu(model: torch.nn.Module, empty_cache: bool = True) -> None:
        model_to_host(model)
        if empty_cache:
            device().empty_cache()

    @torch.no_grad()
    def offload_fsdp_optimizer(optimizer: Any) -> None:
        for group in optimizer.param_groups if optimizer.state else ():
            for param in group["params"]:
                state = optimizer.state[param]
                for key, value in state.items():
                    if isinstance(value, torch.Tensor):
                        state[key] = state_to_host((id(param), key), value)

    for fn in (offload_fsdp2_model_to_cpu, offload_fsdp_optimizer):
        setattr(fn, _MARK, True)
        setattr(module, fn.__name__, fn)


def patch_fsdp_utils(module: ModuleType) -> None:
    """verl's FSDP2 model and optimizer offload, with blocking copies to pageable memory."""
    _replace_offloads(module, lambda model: model.to("cpu"), lambda _key, t: t.to("cpu"))


Register = Callable[[int, int], None]  # (page-aligned address, bytes)
Unregister = Callable[[int], None]
PAGE = 4096
# Smaller copies (LoRA's Adam step counters, norms' weights) stay in reused pageable buffers: registering them
# buys little, and cudaHostRegister works on whole pages, which small allocations share with others.
MIN_REGISTERED_BYTES = 1 << 20


def cuda_host_register(ptr: int, nbytes: int) -> None:
    err = torch.cuda.cudart().cudaHostRegister(ptr, nbytes, 0)
    if int(err) != 0:
        raise RuntimeError(
            f"registered_host_copies: cudaHostRegister of {nbytes} bytes failed ({err}); "
            "plan without registered_host_copies"
        )


def cuda_host_unregister(ptr: int) -> None:
    torch.cuda.cudart().cudaHostUnregister(ptr)


def _span(shape: torch.Size, stride: tuple[int, ...]) -> int:
    """Elements a tensor of this shape and stride reaches in its storage."""
    return 0 if 0 in shape else 1 + sum((n - 1) * st for n, st in zip(shape, stride, strict=True))


class HostBuffers:
    """One host buffer per offloaded tensor (by a key that outlives its GPU copies), of the tensor's own size,
    allocated once and reused by every later offload of it. Those of at least MIN_REGISTERED_BYTES sit on pages
    of their own, registered (pinned in place) once."""

    def __init__(
        self,
        register: Register = cuda_host_register,
        unregister: Unregister = cuda_host_unregister,
        min_registered_bytes: int = MIN_REGISTERED_BYTES,
    ) -> None:
        self.register, self.unregister, self.min_registered_bytes = register, unregister, min_registered_bytes
        self.buffers: dict[Any, torch.Tensor] = {}
        self.registered: dict[Any, int] = {}  # key -> the registered address

    @property
    def nbytes(self) -> int:
        return sum(_span(b.shape, b.stride()) * b.element_size() for b in self.buffers.values())

    def _allocate(self, key: Any, like: torch.Tensor) -> torch.Tensor:
        nbytes = _span(like.shape, like.stride()) * like.element_size()
        if nbytes < self.min_registered_bytes:
            return torch.empty_strided(like.shape, like.stride(), dtype=like.dtype, device="cpu")
        # whole pages of its own: one page either side of slack, the region in between page-aligned
        raw = torch.empty(nbytes + 2 * PAGE, dtype=torch.uint8)
        start = -raw.data_ptr() % PAGE
        pages = -(-nbytes // PAGE) * PAGE
        region = raw[start : start + pages]
        self.register(region.data_ptr(), pages)
        self.registered[key] = region.data_ptr()
        return region[:nbytes].view(like.dtype).as_strided(like.shape, like.stride())

    def _buffer(self, key: Any, like: torch.Tensor) -> torch.Tensor:
        buf = self.buffers.get(key)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype or buf.stride() != like.stride():
            if key in self.registered:  # a tensor that changed shape (never seen in verl): its old buffer goes
                self.unregister(self.registered.pop(key))
            buf = self.buffers[key] = self._allocate(key, like)
        return buf

    def to_host(self, key: Any, t: torch.Tensor) -> torch.Tensor:
        """A host tensor like `t` (a DTensor stays one) whose data is the key's buffer, `t` copied into it."""
        local = getattr(t, "_local_tensor", None)  # FSDP2's parameters and their Adam states are DTensors
        src = t if local is None else local
        buf = self._buffer(key, src)
        if buf.data_ptr() != src.data_ptr():
            # ordered on the stream before any reload from it, as verl's own non_blocking copies are
            buf.copy_(src, non_blocking=True)
        if local is None:
            return buf
        out = torch.empty_like(t, device="cpu")  # a DTensor of t's spec; its fresh pages are never touched
        out._local_tensor.set_(buf)
        return out


def patch_fsdp_utils_registered(module: ModuleType, buffers: HostBuffers | None = None) -> None:
    """verl's FSDP2 model and optimizer offload, into exact-size registered buffers kept for the run."""
    host = buffers or HostBuffers()

    def param_to_host(t: torch.Tensor) -> torch.Tensor:
        # Module._apply hands over each Parameter object, which keeps its identity through to() (swapped or
        # .data-set in place); gradients and buffers are new objects every time, and small: pageable
        if isinstance(t, torch.nn.Parameter):
            return host.to_host(("param", id(t)), t)
        return t.to("cpu")

    _replace_offloads(
        module, lambda model: model._apply(param_to_host), lambda key, t: host.to_host(("optim", *key), t)
    )
    module._grpo_suite_host_buffers = host  # type: ignore[attr-defined]


def patch_cumem(module: ModuleType) -> None:
    """vLLM's sleep backups in pageable memory (its sleep and wake-up copy with a synchronous cudaMemcpy)."""
    _require(module, ("PIN_MEMORY",))
    module.PIN_MEMORY = False


class BackupPool:
    """vLLM's sleep backups in registered host buffers of their own size, each reused by the next sleep once the
    backup it last held is dropped (vLLM drops every backup as it wakes up)."""

    def __init__(self, buffers: HostBuffers | None = None) -> None:
        self.host = buffers or HostBuffers()
        self.held: dict[tuple[str, int, int], weakref.ref[torch.Tensor]] = {}

    def empty(self, *size: Any, **kwargs: Any) -> torch.Tensor:
        """torch.empty, but a 1-D uint8 host tensor (what vLLM's sleep asks for) is a view of a free buffer."""
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], list | tuple) else size
        device, dtype = kwargs.get("device"), kwargs.get("dtype")
        if str(device) != "cpu" or dtype is not torch.uint8 or len(shape) != 1:
            return torch.empty(*size, **kwargs)
        n, i = int(shape[0]), 0
        while (ref := self.held.get(("vllm", n, i))) is not None and ref() is not None:
            i += 1
        key = ("vllm", n, i)
        if not self.held:
            # the evidence, in the cell's log, that vLLM's sleep asked the pool (not torch's pinned allocator)
            print(
                f"[grpo-suite] registered host copies: vLLM's first sleep backup served (pid {os.getpid()})",
                file=sys.stderr,
                flush=True,
            )
        view = self.host._buffer(key, torch.empty(n, dtype=torch.uint8, device="meta"))[:]
        self.held[key] = weakref.ref(view)
        return view


class _TorchWithPool:
    """The `torch` a patched cumem module sees: torch itself, but `empty` from the pool."""

    def __init__(self, pool: BackupPool) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    def empty(self, *size: Any, **kwargs: Any) -> torch.Tensor:
        return self._pool.empty(*size, **kwargs)


def patch_cumem_registered(module: ModuleType, pool: BackupPool | None = None) -> None:
    """vLLM's sleep backups (`torch.empty(n, dtype=uint8, device="cpu", pin_memory=...)` in CuMemAllocator.sleep) in
    registered buffers reused every sleep: pinned-speed copies without the pinned allocator's rounding."""
    _require(module, ("torch", "CuMemAllocator"), "registered_host_copies")
    pool = pool or BackupPool()
    module.torch = _TorchWithPool(pool)  # type: ignore[attr-defined]
    module._grpo_suite_backup_pool = pool  # type: ignore[attr-defined]


def _mode(env: str, modes: tuple[str, ...]) -> str:
    value = os.environ.get(env, "pageable")
    if value not in modes:
        raise ImportError(f"{env}={value!r}: expected one of {', '.join(modes)} (suite/run/pageable_copies.py)")
    return value


def patches_for(fsdp: str, vllm: str) -> dict[str, Callable[[ModuleType], None]]:
    """The module patches for these modes: FSDP pageable or registered; vLLM pageable, registered, or pinned (not
    patched)."""
    out: dict[str, Callable[[ModuleType], None]] = {
        FSDP_UTILS: patch_fsdp_utils_registered if fsdp == "registered" else patch_fsdp_utils
    }
    if vllm != "pinned":
        out[CUMEM] = patch_cumem_registered if vllm == "registered" else patch_cumem
    return out


FSDP_MODE = _mode(FSDP_COPIES_ENV, FSDP_COPY_MODES)
VLLM_MODE = _mode(VLLM_COPIES_ENV, VLLM_COPY_MODES)
PATCHES = patches_for(FSDP_MODE, VLLM_MODE)


def _announce(name: str) -> None:
    # one line per patched module and process, in the cell's log (Ray and vLLM forward workers' stderr): the
    # evidence of how the copies of a run were held, and in which processes
    how = {FSDP_UTILS: FSDP_MODE, CUMEM: VLLM_MODE}.get(name, "pageable")
    print(f"[grpo-suite] {how} host copies: {name} patched (pid {os.getpid()})", file=sys.stderr, flush=True)


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
