"""Random bf16 weights for an exact architecture, written shard by shard by parallel workers.

The model is never instantiated with real storage: tensor names and shapes come from transformers' own class
on the meta device (so the checkpoint loads with no missing or unexpected key), and each shard is generated
and written on its own, so memory stays at one shard per worker. That is what makes a 72B checkpoint (145 GB)
buildable on hosts whose single GPU or RAM could not hold it, and what lets several GPUs (or CPU threads) write
a 32B checkpoint at once. Every tensor is seeded by (seed, name), so the bytes do not depend on the number of
workers or the order they finish in (they do depend on the device type: CUDA and CPU generators differ).

Initialisation follows transformers' for these models: N(0, initializer_range) for weights and embeddings,
ones for RMSNorm weights, zeros for biases.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BYTES_PER_PARAM = 2  # bf16
DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    init: str  # normal | ones | zeros

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * BYTES_PER_PARAM


def init_of(name: str) -> str:
    if name.endswith(".bias"):
        return "zeros"
    if name.endswith("norm.weight"):  # input_layernorm, post_attention_layernorm, model.norm
        return "ones"
    return "normal"


def tensor_specs(config: Any) -> list[TensorSpec]:
    """Names and shapes of the checkpoint transformers would save for `config` (tied weights once)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        net = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    # named_parameters() yields a tied parameter once, under its first name (lm_head.weight is
    # model.embed_tokens.weight when embeddings are tied): the names save_pretrained would write. Buffers
    # (rotary inv_freq) are recomputed at load, never saved.
    specs = [TensorSpec(name, tuple(p.shape), init_of(name)) for name, p in net.named_parameters()]
    return specs


def plan_shards(specs: Sequence[TensorSpec], max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> list[list[TensorSpec]]:
    """Consecutive groups of at most `max_shard_bytes` (a larger tensor gets a shard of its own)."""
    if max_shard_bytes <= 0:
        raise ValueError("max_shard_bytes must be > 0")
    shards: list[list[TensorSpec]] = []
    size = 0
    for s in specs:
        if not shards or (size + s.nbytes > max_shard_bytes and shards[-1]):
            shards.append([])
            size = 0
        shards[-1].append(s)
        size += s.nbytes
    return shards


def shard_file_names(n: int) -> list[str]:
    if n == 1:
        return [SINGLE_FILE]
    return [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]


def index_json(shards: Sequence[Sequence[TensorSpec]], names: Sequence[str]) -> dict[str, Any]:
    return {
        "metadata": {"total_size": sum(s.nbytes for shard in shards for s in shard)},
        "weight_map": {s.name: f for shard, f in zip(shards, names, strict=True) for s in shard},
    }


def tensor_seed(seed: int, name: str) -> int:
    return (seed * 0x9E3779B1 + zlib.crc32(name.encode())) % (2**63)


def make_tensor(spec: TensorSpec, *, seed: int, std: float, device: str) -> Any:
    """One bf16 tensor, made on `device`, returned on the CPU for writing."""
    import torch

    if spec.init == "ones":
        return torch.ones(spec.shape, dtype=torch.bfloat16)
    if spec.init == "zeros":
        return torch.zeros(spec.shape, dtype=torch.bfloat16)
    g = torch.Generator(device=device).manual_seed(tensor_seed(seed, spec.name))
    t = torch.randn(spec.shape, dtype=torch.bfloat16, generator=g, device=device).mul_(std)
    return t.cpu() if t.device.type != "cpu" else t


def write_shards(
    specs: Sequence[TensorSpec],
    out: Path,
    *,
    seed: int,
    std: float,
    devices: Sequence[str],
    workers: int | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> list[str]:
    """Write the safetensors files (and the index when there are several); returns the file names."""
    from safetensors.torch import save_file

    shards = plan_shards(specs, max_shard_bytes)
    names = shard_file_names(len(shards))
    n_workers = max(1, min(len(shards), workers or default_workers(devices)))

    def write(i: int) -> None:
        device = devices[i % len(devices)]
        tensors = {s.name: make_tensor(s, seed=seed, std=std, device=device) for s in shards[i]}
        save_file(tensors, str(out / names[i]), metadata={"format": "pt"})

    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="shard") as pool:
        list(pool.map(write, range(len(shards))))  # list(): re-raise the first failure here
    if len(shards) > 1:
        (out / INDEX_FILE).write_text(json.dumps(index_json(shards, names), indent=2) + "\n")
    return names


def default_workers(devices: Sequence[str]) -> int:
    """Two per GPU (one generating while the other writes); on CPU two, since torch already uses every
    core for one tensor and more would only hold more shards in memory."""
    gpus = [d for d in devices if d.startswith("cuda")]
    return 2 * len(gpus) if gpus else 2
