"""Where a result came from: software versions, GPU, image, suite commit, argv and a redacted environment."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from suite import __version__
from suite.results.schema import Provenance

# Megatron-Bridge and Transformer Engine are recorded where installed: which TE loads depends on the CUDA stack.
PACKAGES = (
    "torch",
    "verl",
    "vllm",
    "ray",
    "transformers",
    "peft",
    "megatron-core",
    "megatron-bridge",
    "transformer-engine",
    "flash-attn",
    "nvidia-ml-py",
)
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


def redact_argv(argv: Sequence[str]) -> list[str]:
    """Hydra overrides `key=value` whose key names a secret keep the key and lose the value."""
    out = []
    for a in argv:
        key, sep, _ = a.partition("=")
        out.append(f"{key}={REDACTED}" if sep and is_secret(key.split(".")[-1]) else redact_value(a))
    return out


def package_versions(packages: Sequence[str] = PACKAGES) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


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
        image=env.get("GRPO_SUITE_IMAGE") or os.environ.get("GRPO_SUITE_IMAGE") or None,
        image_digest=env.get("GRPO_SUITE_IMAGE_DIGEST") or os.environ.get("GRPO_SUITE_IMAGE_DIGEST") or None,
        suite_version=__version__,
        git_commit=git_commit(),
        argv=redact_argv(argv),
        env=redact_env(env),
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
