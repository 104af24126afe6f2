"""The environment and file locations of one cell run (pure functions over the cell and the caller's env)."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from suite.models.paths import cache_root
from suite.plan.cell import LOGGER_ENV, Cell
from suite.run.files import METRICS_FILE

# Forwarded from the caller's environment by name to a cell that runs elsewhere (a container, a Ray job): fabric
# settings must match the hosts' network, tokens are needed by verl's workers and hub downloads (which see only
# what they are given), and VLLM_* / TORCH_NCCL_* / the offline switches tune the run the user asked for.
FORWARD_ENV = (
    "NCCL_*",
    "GLOO_*",
    "UCX_*",
    "TP_SOCKET_IFNAME",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "WANDB_API_KEY",
    "WANDB_BASE_URL",
    "WANDB_MODE",
    "VLLM_*",
    "TORCH_NCCL_*",
)


def forwarded_env(environ: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """The variables of `environ` that FORWARD_ENV (plus `extra` names / globs) forwards, sorted by name."""
    pats = [p.strip() for p in (*FORWARD_ENV, *extra) if p.strip()]
    return {k: v for k, v in sorted(environ.items()) if any(fnmatch.fnmatchcase(k, p) for p in pats)}


def metrics_path(cell: Cell, cell_dir: Path) -> Path:
    """Where verl's file logger writes: the cell's own setting, else `<cell dir>/metrics.jsonl`."""
    return cell.paths.metrics or cell_dir / METRICS_FILE


def ray_tmpdir(token: str) -> Path:
    """A short per-cell Ray temp root: Ray puts unix sockets under it, and socket paths are limited to
    107 bytes, so a path under a deep results folder would break `ray.init()`."""
    base = Path(os.environ.get("GRPO_SUITE_RAY_TMP", tempfile.gettempdir()))
    return base / f"gsr-{hashlib.sha1(token.encode()).hexdigest()[:10]}"


def cell_environment(
    base: Mapping[str, str],
    cell_env: Mapping[str, str],
    *,
    cell_dir: Path,
    metrics: Path,
    gpus: Sequence[int] | None,
    token: str,
    isolate_ray: bool = True,
) -> dict[str, str]:
    env = {**base, **cell_env}
    env.setdefault(LOGGER_ENV, str(metrics))
    env["PYTHONUNBUFFERED"] = "1"  # the log shows progress as it happens and ends with the real error
    for k, v in kernel_cache_defaults().items():
        env.setdefault(k, v)
    for k, v in vllm_defaults().items():
        env.setdefault(k, v)
    if gpus is not None:
        # NVML and CUDA must count GPUs the same way, or the sampler would watch the wrong devices.
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
    if isolate_ray and not env.get("RAY_ADDRESS"):
        # Own Ray temp dir: ray.init() neither joins another cell's (or a leftover) cluster found through
        # <tmp>/ray/ray_current_cluster, nor shares session dirs. Ports are dynamic for a local ray.init().
        env["RAY_TMPDIR"] = str(ray_tmpdir(token))
    return env


def kernel_cache_defaults() -> dict[str, str]:
    """Where a cell's torch.compile (inductor) and Triton kernels go unless the caller's environment says.
    Both under the suite's cache, not /tmp (inductor's default) or ~/.triton/cache (Triton's): the cells of a host
    share them even with a private /tmp, and `grpo-suite cache export` carries them to a fresh host with vLLM's.
    With TRITON_CACHE_DIR set, inductor writes its own Triton kernels (flex attention's) there too, not under its
    directory."""
    return {
        "TORCHINDUCTOR_CACHE_DIR": str(cache_root() / "torchinductor"),
        "TRITON_CACHE_DIR": str(cache_root() / "triton"),
    }


def vllm_defaults() -> dict[str, str]:
    """vLLM settings a cell gets unless the caller's environment has its own. verl 0.9.1 sets these two for its
    workers only when the launching shell has not (constants_ppo.get_ppo_ray_runtime_env):
    - its WARN log level hides vLLM's own start-up timings (weights, torch.compile, graph capture, engine), which
      the cell's start-up breakdown reads;
    - it disables vLLM's compile cache against artifacts corrupted by concurrent writers, which torch >= 2.10
      writes atomically. A shared cache lets a cell reuse what an earlier cell of the same shape compiled."""
    return {
        "VLLM_LOGGING_LEVEL": "INFO",
        "VLLM_DISABLE_COMPILE_CACHE": "0",
        "VLLM_CACHE_ROOT": str(cache_root() / "vllm"),
    }


def visible_gpu_indices(env: Mapping[str, str], gpus: Sequence[int] | None, device_count: int) -> list[int]:
    """NVML indices of the GPUs the cell can see (integers in CUDA_VISIBLE_DEVICES; all when unset)."""
    if gpus is not None:
        return list(gpus)
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is None:
        return list(range(device_count))
    out = []
    for part in cvd.split(","):
        part = part.strip()
        if part.isdigit() and int(part) < device_count:
            out.append(int(part))
    return out
