"""Where a result came from: software versions, GPU, image, suite commit, argv and the environment variables that
shape the stack (an allowlist, secrets left out)."""

from __future__ import annotations

import fnmatch
import os
import re
import socket
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from suite import __version__
from suite.packages import PACKAGES
from suite.results.schema import Provenance
from suite.run.cellenv import FORWARD_ENV

REDACTED = "<redacted>"
# Matched per word of the name (split at anything not a letter or digit). "token" counts only as the last word:
# HF_TOKEN and auth_token are secrets, max_num_batched_tokens and ppo_max_token_len_per_gpu are settings.
_SECRET_WORDS = re.compile(
    r"\w*(secrets?|passwords?|passwd|passphrase|credentials?|apikey)|private|"
    r"auth|authn|authz|authorization|authentication|\w+auth|cookies?|signature",
    re.IGNORECASE,
)
_SECRET_LAST = re.compile(r"\w*token|key", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(\w+://)[^/\s:@]+:[^/\s@]+@")
SEED_KEYS = ("data.seed", "actor_rollout_ref.rollout.seed", "seed")
# The environment a result records (`provenance.env`), as fnmatch globs. For reproducibility: the variables that
# change what the stack does (CUDA, NCCL, torch, vLLM, Ray, HF hub, verl, threads, Triton, compilers, library
# paths, flash-attn), not the whole host environment (CA bundles, container names, shell and the caller's own script
# variables). Built on cellenv.FORWARD_ENV, so every variable the docker / Ray / Slurm runtimes forward is recorded
# too (NCCL_*, VLLM_*, TORCH_NCCL_*, WANDB_MODE come from there). Secret-named variables never are (is_secret_env).
RECORDED_ENV = (
    *FORWARD_ENV,
    *(
        f"{prefix}*"
        for prefix in (
            "CUDA_",
            "NVIDIA_",
            "NVSHMEM_",
            "TORCH",
            "PYTORCH_",
            "RAY_",
            "HF_",
            "TRANSFORMERS_",
            "TOKENIZERS_",
            "VERL_",
            "GRPO_SUITE_",
            "OMP_",
            "MKL_",
            "TRITON_",
            "FLASH_ATTENTION_",  # flash-attn's build and import switches: which kernels verl gets
        )
    ),
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "CC",
    "CXX",
    "CUDAHOSTCXX",
    "HYDRA_FULL_ERROR",
)
# In an environment name "token" is a secret anywhere, not only as the last word (HF_TOKEN_PATH); TOKENIZERS_* and
# *_TOKENS stay settings.
_ENV_SECRET_WORD = re.compile(r"\w*token", re.IGNORECASE)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def is_secret(name: str) -> bool:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", name) if w]
    if not words:
        return False
    if any(_SECRET_WORDS.fullmatch(w) for w in words) or _SECRET_LAST.fullmatch(words[-1]):
        return True
    # KEY_FILE, AWS_ACCESS_KEY_ID: the word "key" anywhere (not "keys": num_keys is a count)
    return any(w.lower() == "key" for w in words)


def redact_value(value: str) -> str:
    return _URL_CREDENTIALS.sub(r"\1" + REDACTED + "@", value)


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """Secret-named variables lose their value, and that value is also cut out of every other variable:
    Ray, for one, copies a job's whole runtime env into RAY_JOB_CONFIG_JSON_ENV_VAR under a harmless name."""
    secrets = sorted({v for k, v in env.items() if is_secret(k) and len(v) >= 4}, key=len, reverse=True)

    def scrub(v: str) -> str:
        for s in secrets:
            v = v.replace(s, REDACTED)
        return redact_value(v)

    return {k: (REDACTED if is_secret(k) else scrub(v)) for k, v in sorted(env.items())}


def is_secret_env(name: str) -> bool:
    """A variable a result never records, whatever its prefix: secret-named (is_secret), or "token" in any word."""
    return is_secret(name) or any(_ENV_SECRET_WORD.fullmatch(w) for w in re.split(r"[^A-Za-z0-9]+", name) if w)


def is_recorded_env(name: str) -> bool:
    return not is_secret_env(name) and any(fnmatch.fnmatchcase(name, p) for p in RECORDED_ENV)


def recorded_env(env: Mapping[str, str]) -> dict[str, str]:
    """The part of a cell's environment its result records: RECORDED_ENV's variables, secret-named ones left out.
    Redacted against the whole `env` first, so a secret's value copied into a kept variable (Ray's
    RAY_JOB_CONFIG_JSON_ENV_VAR holds the job's whole runtime env) is cut out too."""
    return {k: v for k, v in redact_env(env).items() if is_recorded_env(k)}


def redact_argv(argv: Sequence[str]) -> list[str]:
    """Hydra overrides `key=value` whose key names a secret keep the key and lose the value."""
    out = []
    for a in argv:
        key, sep, _ = a.partition("=")
        out.append(f"{key}={REDACTED}" if sep and is_secret(key.split(".")[-1]) else redact_value(a))
    return out


def package_versions(packages: Sequence[str] = PACKAGES) -> dict[str, str]:
    """`provenance.versions`: the installed version of each of `packages` (suite.packages.PACKAGES), in that order;
    one not installed here (Megatron-Bridge, Transformer Engine on an FSDP-only host) is left out, not recorded
    empty. Readers take any keys: results written with an older list still read."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


Stack = tuple[Mapping[str, str], Sequence[str] | None]  # (provenance.versions, provenance.packages_checked)


def run_stack(provenance: Provenance) -> Stack:
    """A run's stack as `version_differences` compares it."""
    return provenance.versions, provenance.packages_checked


def version_differences(runs: Sequence[Stack]) -> str | None:
    """The packages whose versions differ between runs, each with the versions seen, `none` where a run had it not
    installed ("flash-attn: 2.8.3, none; verl: 0.9.1, 0.9.2"); None when all agree. A package a run did not look
    up (a result from before it joined suite.packages.PACKAGES) says nothing about that run. Two stacks measure the
    same cell id differently (flash-attn's Triton cross entropy against verl's per-token loop): a baseline must
    not pool them, and a ratio between them is not a speedup."""
    differ = []
    for k in sorted({k for versions, checked in runs for k in [*versions, *(checked or ())]}):
        seen = {versions.get(k) or "none" for versions, checked in runs if k in versions or k in (checked or ())}
        if len(seen) > 1:
            differ.append(f"{k}: {', '.join(sorted(seen))}")
    return "; ".join(differ) or None


def seed_from_argv(argv: Sequence[str]) -> int | None:
    found: dict[str, int] = {}
    for a in argv:
        key, sep, value = a.lstrip("+").partition("=")
        if sep and (key in SEED_KEYS or key.endswith(".seed")):
            try:
                found.setdefault(key, int(value))
            except ValueError:
                continue
    for key in SEED_KEYS:
        if key in found:
            return found[key]
    return next(iter(found.values()), None)


def git_commit(root: Path | None = None) -> str | None:
    """The suite checkout's commit (+ "-dirty" with uncommitted tracked changes); env override for images."""
    if os.environ.get("GRPO_SUITE_GIT_COMMIT"):
        return os.environ["GRPO_SUITE_GIT_COMMIT"]
    root = root or Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "-uno"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "") if head else None


def collect(
    *,
    argv: Sequence[str],
    env: Mapping[str, str],
    runtime: str | None,
    gpu_name: str | None = None,
    gpu_count: int | None = None,
    driver: str | None = None,
    cuda: str | None = None,
    cuda_visible_devices: str | None = None,
    parallel_slots: int | None = None,
    model_source: str | None = None,
    start_time: str | None = None,
    end_time: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> Provenance:
    return Provenance(
        gpu_name=gpu_name,
        gpu_count=gpu_count,
        driver=driver,
        cuda=cuda,
        versions=package_versions(),
        packages_checked=list(PACKAGES),
        image=env.get("GRPO_SUITE_IMAGE") or os.environ.get("GRPO_SUITE_IMAGE") or None,
        image_digest=env.get("GRPO_SUITE_IMAGE_DIGEST") or os.environ.get("GRPO_SUITE_IMAGE_DIGEST") or None,
        suite_version=__version__,
        git_commit=git_commit(),
        argv=redact_argv(argv),
        env=recorded_env(env),
        seed=seed_from_argv(argv),
        start_time=start_time,
        end_time=end_time,
        host=socket.gethostname(),
        runtime=runtime,
        cuda_visible_devices=cuda_visible_devices,
        parallel_slots=parallel_slots,
        model_source=model_source,
        extra=dict(extra or {}),
    )
