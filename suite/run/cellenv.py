"""The environment and file locations of one cell run (pure functions over the cell's argv/env)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from suite.models.paths import cache_root
from suite.run.runtime import METRICS_FILE

LOGGER_ENV = "VERL_FILE_LOGGER_PATH"
VALIDATION_KEY = "trainer.validation_data_dir"


def override_value(argv: Sequence[str], key: str) -> str | None:
    """Last value of a Hydra override `key=v` / `+key=v` / `++key=v` in argv (the last one wins in Hydra)."""
    value = None
    for a in argv:
        k, sep, v = a.lstrip("+").partition("=")
        if sep and k == key:
            value = v
    # the planner quotes values Hydra would otherwise parse (e.g. paths containing '+')
    if value is not None and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return value


def metrics_path(argv: Sequence[str], env: Mapping[str, str], cell_dir: Path) -> Path:
    """Where verl's file logger writes: the cell's own setting, else `<cell dir>/metrics.jsonl`."""
    p = env.get(LOGGER_ENV) or override_value(argv, f"ray_kwargs.ray_init.runtime_env.env_vars.{LOGGER_ENV}")
    return Path(p) if p else cell_dir / METRICS_FILE


def validation_dir(argv: Sequence[str]) -> Path | None:
    v = override_value(argv, VALIDATION_KEY)
    return Path(v) if v and v.lower() not in ("null", "none", "") else None


def ray_tmpdir(token: str) -> Path:
    """A short per-cell Ray temp root: Ray puts unix sockets under it, and socket paths are limited to
    107 bytes, so a path under a deep results folder would break `ray.init()`."""
    base = Path(os.environ.get("GRPO_SUITE_RAY_TMP", tempfile.gettempdir()))
    return base / f"gsr-{hashlib.sha1(token.encode()).hexdigest()[:10]}"


def cell_environment(base: Mapping[str, str], cell_env: Mapping[str, str], *, cell_dir: Path,
                     metrics: Path, gpus: Sequence[int] | None, token: str,
                     isolate_ray: bool = True) -> dict[str, str]:
    env = {**base, **cell_env}
    env.setdefault(LOGGER_ENV, str(metrics))
    env["PYTHONUNBUFFERED"] = "1"  # the log shows progress as it happens and ends with the real error
    # torch.compile's cache outside /tmp: shared by the cells of a run (and runs) even with a private /tmp
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_root() / "torchinductor"))
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
