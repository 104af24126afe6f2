"""Cell ids: readable and stable from a point's axis values.

The four named axes always make the head (`lora32-off_param+optimizer-tp4-rb180`, unchanged since the first
baselines); each extra axis appends one short part in [axes] file order (`-gmu0.5-mnbt8192-graphs`), so adding
an axis to a matrix never renames the cells of a matrix that does not sweep it."""

from __future__ import annotations

import re
from typing import Any

# Short codes of the settings people sweep most; any other name gets one derived from it (`_derived_code`).
CODES: dict[str, str] = {
    "gpu_memory_utilization": "gmu",
    "max_num_batched_tokens": "mnbt",
    "max_num_seqs": "mns",
    "max_model_len": "mml",
    "ppo_micro_batch_size_per_gpu": "mb",
    "log_prob_micro_batch_size_per_gpu": "lpmb",
    "ppo_mini_batch_size": "mini",
    "ppo_max_token_len_per_gpu": "maxtok",
    "log_prob_max_token_len_per_gpu": "lpmaxtok",
    "prompt_length": "p",
    "response_length": "r",
    "rollout_n": "n",
    "lora_alpha": "alpha",
    "ulysses_sp": "sp",
    "ulysses_sequence_parallel_size": "sp",
    "pp": "pp",
    "lr": "lr",
    "temperature": "temp",
    "kl_loss_coef": "kl",
    "load_format": "load",
    "strategy": "",
    "attn_implementation": "attn",
    "target_modules": "tm",
    "pinned_round_max_mb": "pinround",
}
# Booleans read as a word when true and another when false.
BOOL_WORDS: dict[str, tuple[str, str]] = {
    "enforce_eager": ("eager", "graphs"),
    "enable_gradient_checkpointing": ("gc", "nogc"),
    "use_remove_padding": ("rmpad", "normpad"),
    "layered_summon": ("layered", "unlayered"),
    "use_dynamic_bsz": ("dynbsz", "fixbsz"),
    "use_kl_loss": ("klloss", "noklloss"),
    "use_shm": ("shm", "noshm"),
    "free_cache_engine": ("freecache", "keepcache"),
    "enable_chunked_prefill": ("chunked", "unchunked"),
    "enable_prefix_caching": ("prefixcache", "noprefixcache"),
    "use_torch_compile": ("compile", "nocompile"),
    "use_fused_kernels": ("fused", "unfused"),
    "pageable_host_copies": ("pageable", "pinned"),
    "registered_host_copies": ("registered", "unregistered"),
}
# Values with a short word of their own in ids (`attnflex`, not `attnflex_attention`).
VALUE_WORDS: dict[str, dict[str, str]] = {
    "attn_implementation": {"flex_attention": "flex", "flash_attention_2": "fa2", "flash_attention_3": "fa3"},
}
_UNSAFE = re.compile(r"[^A-Za-z0-9.+_]")


def setting_name(axis: str) -> str:
    """The setting an axis names: a [base] name as is, a raw verl key by its last part."""
    return axis.lstrip("+").rsplit(".", 1)[-1]


def _derived_code(name: str) -> str:
    # initials of the words, e.g. kl_loss_type -> klt; a one-word name stays whole
    words = [w for w in name.split("_") if w]
    return "".join(w[0] for w in words) if len(words) > 1 else name


def axis_code(axis: str) -> str:
    name = setting_name(axis)
    return CODES.get(name, _derived_code(name))


def value_text(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, float):
        return repr(v).replace("e+", "e")
    if isinstance(v, list | tuple):
        return "+".join(value_text(x) for x in v)
    return _UNSAFE.sub("_", str(v))


def axis_part(axis: str, value: Any) -> str:
    """One extra axis's part of a cell id, e.g. gmu0.5, mnbt8192, graphs, fsdp2."""
    name = setting_name(axis)
    if isinstance(value, bool):
        yes, no = BOOL_WORDS.get(name, (axis_code(axis), "no" + axis_code(axis)))
        return yes if value else no
    word = VALUE_WORDS.get(name, {}).get(value) if isinstance(value, str) else None
    return f"{axis_code(axis)}{word or value_text(value)}"


def cell_id(point: dict[str, Any], extra_axes: list[str] | tuple[str, ...] = ()) -> str:
    """The four named axes as always (`lora32-off_param+optimizer-tp4-rb180`), then one part per extra axis."""
    lora = point["lora_rank"]
    head = "full" if lora == 0 else f"lora{lora}"
    parts = [f"{head}-off_{point['offload']}-tp{point['tp']}-rb{point['rollout_batch']}"]
    parts += [axis_part(a, point[a]) for a in extra_axes]
    return "-".join(parts)


class CodeClash(ValueError):
    """Two axes would write the same id code; `axis` is the later one in [axes]."""

    def __init__(self, axis: str, message: str) -> None:
        self.axis = axis
        super().__init__(message)


def check_codes(extra_axes: list[str]) -> None:
    """Two extra axes whose parts could read the same would make ids ambiguous: refuse them up front. That
    includes two axes naming one setting (`max_num_seqs` and `"actor_rollout_ref.rollout.max_num_seqs"`)."""
    seen: dict[str, str] = {}
    for a in extra_axes:
        name = setting_name(a)
        keys = BOOL_WORDS.get(name) or (axis_code(a),)
        for k in keys:
            if k in seen and seen[k] != a:
                raise CodeClash(
                    a, f"axes {seen[k]!r} and {a!r} would both write {k!r} into cell ids; sweep one of them"
                )
            seen[k] = a
