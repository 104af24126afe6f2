"""Where models live on disk. Plan and run both resolve `model` strings through here so the verl command
names the same path the run stage builds."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("GRPO_SUITE_CACHE", Path.home() / ".cache" / "grpo-suite"))


def is_synthetic(model: str) -> bool:
    return model.startswith("synthetic:")


def model_path(model: str) -> str:
    """The local path verl loads: synthetic models are built into the cache (`grpo-suite model build`);
    HF ids and local paths pass through unchanged (verl/transformers resolve HF ids themselves)."""
    if is_synthetic(model):
        return str(cache_root() / "models" / model.split(":", 1)[1].lower())
    return model
