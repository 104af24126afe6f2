"""GPU generations the suite knows: memory, peak dense bf16 FLOP/s and memory bandwidth (vendor datasheets,
SXM parts unless stated). Used to validate matrices, size rollouts and predict memory."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuGeneration:
    key: str
    name: str
    memory_gib: float  # usable device memory as NVML reports `total`
    bf16_tflops: float  # dense, no sparsity
    bandwidth_tbs: float  # HBM, TB/s
    compute_capability: str
    arch: str
    # Host RAM per node of the usual server for this part (8 GPUs), GiB: what the host-memory planner assumes
    # when a matrix does not say `host_memory_gb` (DGX A100 1 TiB, DGX H100/H200 and HGX H20 2 TiB, DGX B200 4 TiB).
    host_memory_gib: float = 2048.0


GPUS: dict[str, GpuGeneration] = {
    g.key: g
    for g in (
        GpuGeneration("a100", "NVIDIA A100-SXM4-80GB", 79.3, 312.0, 2.04, "8.0", "ampere", 1024.0),
        GpuGeneration("h100", "NVIDIA H100 80GB HBM3", 79.2, 989.0, 3.35, "9.0", "hopper"),
        GpuGeneration("h20", "NVIDIA H20", 95.6, 148.0, 4.0, "9.0", "hopper"),
        GpuGeneration("h200", "NVIDIA H200", 139.8, 989.0, 4.8, "9.0", "hopper"),
        GpuGeneration("b200", "NVIDIA B200", 178.4, 2250.0, 8.0, "10.0", "blackwell", 4096.0),
    )
}


def get_gpu(key: str) -> GpuGeneration:
    from suite.errors import InputError

    try:
        return GPUS[key]
    except KeyError:
        raise InputError(f"unknown GPU generation {key!r}; allowed: {', '.join(sorted(GPUS))}") from None


def generation_of(device_name: str) -> str | None:
    """Map an NVML device name (e.g. 'NVIDIA H100 80GB HBM3') to a generation key."""
    n = device_name.upper()
    for key in ("h200", "h100", "h20", "b200", "a100"):
        token = key.upper()
        if token in n.replace("-", " ").split() or n.find(token + " ") >= 0 or n.endswith(token):
            return key
    return None
