"""The memory planner's calibration constants, read from `calibration.toml` (numbers live in data, each with
its provenance there). A missing or unknown key is an error, so the file and this schema cannot drift."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

from suite.errors import InputError

DEFAULT_PATH = Path(__file__).with_name("calibration.toml")


@dataclass(frozen=True)
class Overhead:
    runtime_gib: float
    cuda_graphs_gib: float
    nccl_gib_multi_gpu: float
    vllm_asleep_gib: float
    fragmentation: float
    fit_headroom_gib: float


@dataclass(frozen=True)
class Dtypes:
    fsdp_default_model_dtype: str
    compute_bytes: int
    megatron_param_bytes: int
    megatron_grad_bytes: int
    megatron_optim_bytes: int
    adam_states: int


@dataclass(frozen=True)
class Activations:
    layer_h: float
    layer_kv: float
    layer_i: float
    lora_norm_h: float
    lora_rank_bytes: float
    masked_repeat_kv: float
    checkpoint_h: float
    dataset_prompt_tokens: int
    batch_bytes_per_token: int


@dataclass(frozen=True)
class Logits:
    fsdp_bytes: int
    megatron_bytes: int
    forward_factor: float
    ref_factor: float
    train_factor: float
    train_factor_flash_attn: float
    padded_copy: float
    train_entropy_extra: float


@dataclass(frozen=True)
class Fsdp:
    unsharded_layers: int
    root_unsharded: bool
    unsharded_grad_accumulation: bool
    unsharded_grad_bytes: int


@dataclass(frozen=True)
class Vllm:
    act_h: float
    act_i_per_tp: float
    sampler_factor: float
    cuda_graph_gib: float
    default_max_num_batched_tokens: int
    default_max_num_seqs: int
    sync_bucket_gib: float


@dataclass(frozen=True)
class Host:
    """Host RAM per node (suite/memory/host.py): the kill threshold, pinned-allocation rules, the startup load
    and the resident memory of each kind of process."""

    memory_usage_threshold: float
    pinned_power_of_two: bool
    pinned_min_block_mib: float
    vllm_vocab_padding: int
    megatron_vocab_padding: int
    checkpoint_bytes: int
    checkpoint_mmap_fraction: float
    driver_gib: float
    ray_system_gib: float
    task_runner_gib: float
    trainer_worker_gib: float
    vllm_server_gib: float
    vllm_engine_core_gib: float
    vllm_worker_gib: float
    agent_worker_gib: float
    reward_worker_gib: float
    dataloader_worker_gib: float
    tq_storage_unit_gib: float
    tq_controller_gib: float


@dataclass(frozen=True)
class Calibration:
    overhead: Overhead
    dtypes: Dtypes
    activations: Activations
    logits: Logits
    fsdp: Fsdp
    vllm: Vllm
    host: Host
    source: str = "<calibration>"

    def with_values(self, section: str, **values: Any) -> Calibration:
        """A copy with some constants of one section changed (for fitting and tests)."""
        return replace(self, **{section: replace(getattr(self, section), **values)})


_SECTIONS: dict[str, type] = {
    "overhead": Overhead,
    "dtypes": Dtypes,
    "activations": Activations,
    "logits": Logits,
    "fsdp": Fsdp,
    "vllm": Vllm,
    "host": Host,
}

# TOML types accepted per annotated field type: an integer literal is a fine float, a bool is not a number.
_TYPES: dict[str, tuple[type, ...]] = {"float": (int, float), "int": (int,), "bool": (bool,), "str": (str,)}


def _check_types(cls: type, table: dict[str, Any], *, source: str, section: str) -> None:
    for f in fields(cls):
        want = _TYPES.get(str(f.type))
        v = table[f.name]
        if want is None:
            continue
        if (isinstance(v, bool) and bool not in want) or not isinstance(v, want):
            raise InputError(
                f"expected {f.type}, got {type(v).__name__} {v!r}", source=source, field=f"[{section}].{f.name}"
            )


def parse_calibration(data: dict[str, Any], *, source: str = "<calibration>") -> Calibration:
    unknown = set(data) - set(_SECTIONS)
    if unknown:
        raise InputError(f"unknown sections {sorted(unknown)}; allowed: {', '.join(_SECTIONS)}", source=source)
    built: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        table = data.get(name)
        if not isinstance(table, dict):
            raise InputError("missing table", source=source, field=f"[{name}]")
        want = {f.name for f in fields(cls)}
        if set(table) != want:
            missing, extra = sorted(want - set(table)), sorted(set(table) - want)
            raise InputError(f"missing keys {missing}, unknown keys {extra}", source=source, field=f"[{name}]")
        _check_types(cls, table, source=source, section=name)
        built[name] = cls(**table)
    return Calibration(**built, source=source)


def load_calibration(path: str | Path | None = None) -> Calibration:
    p = Path(path) if path is not None else DEFAULT_PATH
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read calibration file: {exc.strerror}", source=str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"TOML syntax error: {exc}", source=str(p)) from None
    return parse_calibration(data, source=str(p))


@cache
def default_calibration() -> Calibration:
    return load_calibration(DEFAULT_PATH)
