"""The matrix file format (TOML) as pydantic models. Every table forbids unknown keys, so a typo is an error
that names the key and the allowed ones instead of a setting silently ignored."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from suite.errors import InputError
from suite.gpus import GPUS
from suite.matrix import verl_keys
from suite.matrix.ids import CodeClash, check_codes
from suite.matrix.offload import COMPONENTS, DOCUMENTED, canonical, parse_offload

PosInt = Annotated[StrictInt, Field(gt=0)]
NonNegInt = Annotated[StrictInt, Field(ge=0)]
AXES = ("lora_rank", "offload", "tp", "rollout_batch")
# A raw verl key as an axis name: dotted Hydra path, optionally with Hydra's +/++ prefix.
RAW_KEY = re.compile(r"\+{0,2}[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
BACKENDS = ("fsdp", "megatron")
DATASETS = ("gsm8k", "gsm8k-offline")
# Hydra override values a TOML value can turn into (tables are flattened into dotted keys).
Scalar = StrictBool | StrictInt | float | str
OverrideValue = Scalar | list[Scalar] | None


class FieldError(ValueError):
    """A bad value the loader's error names by its field (`axes.<name>`, `overrides.<key>`)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class AxisError(FieldError):
    """A bad extra axis."""

    def __init__(self, axis: str, message: str) -> None:
        super().__init__(f"axes.{axis}", message)


# pydantic error types -> the kind of value a field takes, for the message
_KINDS = {
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
}


def base_value(name: str, value: Any, axis: str) -> Any:
    """`value` as the [base] field `name` holds it (an int for a float field becomes a float: `gmu1.0`, not
    `gmu1`); an AxisError naming `axes.<axis>` and the allowed kind when the field does not take it."""
    try:
        return getattr(Base.model_validate({name: value}), name)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        msg = err["msg"].removeprefix("Value error, ")
        kind = _KINDS.get(err["type"])
        if err["type"] == "literal_error":
            kind = msg.removeprefix("Input should be ")
        allowed = f"; allowed: {kind}" + (f" ({name})" if name != axis else "") if kind else ""
        raise AxisError(axis, f"axis {axis!r}: bad value {value!r}: {msg}{allowed}") from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_offload(v: str) -> str:
    if parse_offload(v) is None:
        raise ValueError(
            f"unknown offload value {v!r}; allowed: {', '.join(DOCUMENTED)} "
            f"(or any '+'-join of {', '.join(COMPONENTS)})"
        )
    return canonical(v)


class MatrixSection(_Strict):
    name: str = Field(min_length=1)
    gpu: str
    gpus_per_node: PosInt
    nnodes: PosInt = 1
    model: str = Field(min_length=1)  # HF id, synthetic:<arch>, or a local path (~ expanded)
    backend: Literal["fsdp", "megatron"]
    dataset: Literal["gsm8k", "gsm8k-offline"] = "gsm8k"
    description: str = ""
    # Host RAM per node, GiB (what `free -g` calls total); None: the generation's default (suite/gpus.py).
    host_memory_gb: float | None = Field(default=None, gt=0)
    # The cell every other cell is read against (plan, report, gate show x ratios to it); None: no reference.
    reference: str | None = None
    # The matrix that `reference` is a cell of, when it is not this one: a matrix that sweeps new levers around
    # a recipe measured elsewhere is read against that measurement instead of running the recipe again. Both
    # matrices must share gpu, gpus_per_node, nnodes, model and backend (`grpo-suite plan` checks).
    reference_matrix: str | None = None
    # Whether the cells' environment has flash-attn. verl 0.9.1 then computes every log-prob with its Triton cross
    # entropy (utils/torch_functional.py, chosen at import), which holds fewer copies of the logits in the update
    # than verl's torch log-softmax, and Megatron's default attention backend needs it. None: as the attention says
    # (flash_attention_2/3, verl's default, need flash-attn; sdpa, flex_attention and eager say nothing).
    flash_attn: StrictBool | None = None
    # Whether verl's FSDP workers keep RoPE's frequencies in fp32 where a model stored in 16 bits would cast them
    # to 16 bits (suite/run/rope_fp32.py: verl 0.9.1's `module.to(model_dtype)` casts the buffer, and the trainer's
    # log-probs leave vLLM's). None: for cells whose actor is stored in bf16/fp16 (`fsdp_config.model_dtype`);
    # true: for every FSDP cell (a reference model, which verl builds in bf16, too); false: verl as it is.
    keep_rope_fp32: StrictBool | None = None

    @model_validator(mode="after")
    def _rope_fix_is_fsdp(self) -> MatrixSection:
        if self.keep_rope_fp32 is True and self.backend != "fsdp":
            raise ValueError(
                "keep_rope_fp32 = true applies to the fsdp backend (transformers' RoPE buffers); "
                f"this matrix has backend {self.backend!r}: leave it out or set backend = 'fsdp'"
            )
        return self

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, v: str) -> str:
        if v not in GPUS:
            raise ValueError(f"unknown GPU generation {v!r}; allowed: {', '.join(sorted(GPUS))}")
        return v


class Axes(BaseModel):
    """The swept axes; an omitted axis takes its single value from [base].

    Beside the four named axes, any readable name of [base] (`gpu_memory_utilization = [0.3, 0.5]`) and any
    quoted raw verl key (`"actor_rollout_ref.rollout.max_num_seqs" = [64, 256]`) may be swept; those are
    checked after [base] is known (`Matrix._check_extra_axes`)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    lora_rank: list[NonNegInt] | None = Field(default=None, min_length=1)
    offload: list[str] | None = Field(default=None, min_length=1)
    tp: list[PosInt] | None = Field(default=None, min_length=1)
    rollout_batch: list[PosInt] | None = Field(default=None, min_length=1)

    @field_validator("offload")
    @classmethod
    def _offload_values(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [_check_offload(x) for x in v]

    @model_validator(mode="after")
    def _no_duplicates(self) -> Axes:
        for name, vals in [*((a, getattr(self, a)) for a in AXES), *self.extra().items()]:
            # a non-list extra axis is refused by Matrix._check_extra_axes, naming it
            if isinstance(vals, list) and len({repr(x) for x in vals}) != len(vals):
                raise ValueError(f"axis {name!r} repeats a value: {vals}")
        return self

    def extra(self) -> dict[str, list[Any]]:
        """The axes beyond the four named ones, in file order."""
        return dict(self.__pydantic_extra__ or {})


class Base(_Strict):
    """Fixed settings with readable names; each maps to verl keys in suite/plan/overrides.py."""

    # Values of axes that the matrix does not sweep.
    lora_rank: NonNegInt = 0
    offload: str = "none"
    tp: PosInt = 1
    rollout_batch: PosInt = 16

    prompt_length: PosInt = 512
    response_length: PosInt = 512
    rollout_n: PosInt = 5
    gpu_memory_utilization: float = Field(default=0.5, gt=0, le=1)
    lr: float = Field(default=1e-6, gt=0)
    # An int, or "rollout_batch" (one update per step) or "rollout_batch/K" (K updates per step).
    ppo_mini_batch_size: StrictInt | str = "rollout_batch"
    ppo_micro_batch_size_per_gpu: PosInt = 4
    log_prob_micro_batch_size_per_gpu: PosInt = 4
    lora_alpha: PosInt = 32
    target_modules: str | list[str] = "all-linear"
    ulysses_sp: PosInt = 1
    pp: PosInt = 1  # Megatron pipeline parallel size
    # flex_attention: torch's block-sparse kernel (compiled on first use); with use_remove_padding it skips the
    # masked blocks of packed sequences, where sdpa computes them densely. No flash-attn needed.
    attn_implementation: Literal["sdpa", "flash_attention_2", "flex_attention", "eager"] | None = None
    # Megatron: override_transformer_config.attention_backend; None keeps verl's 'flash' (needs flash-attn)
    megatron_attention_backend: Literal["flash", "fused", "unfused", "local", "auto"] | None = None
    # Megatron: override_transformer_config.gradient_accumulation_fusion. Megatron-Bridge turns it on, and then
    # mcore needs apex's fused_weight_gradient_mlp_cuda: without apex the first Megatron cell crashed in
    # ColumnParallelLinear (H200, 2026-11-28). Off unless the host has apex.
    megatron_gradient_accumulation_fusion: StrictBool = False
    use_remove_padding: StrictBool = True
    # model.use_fused_kernels with fused_kernel_options.impl_backend=torch: verl computes log-probs and entropy
    # from the last hidden states 512 tokens at a time, with no full-vocabulary logits and no per-token loop
    # (verl's log-prob fallback without flash-attn). FSDP2 needs tied embeddings for it (the planner checks).
    use_fused_kernels: StrictBool = False
    enable_gradient_checkpointing: StrictBool = True
    layered_summon: StrictBool = False
    load_format: str | None = None  # rollout.load_format; None keeps verl's default (dummy)
    max_num_batched_tokens: PosInt | None = None
    max_model_len: PosInt | None = None
    max_num_seqs: PosInt | None = None
    enforce_eager: StrictBool | None = None  # None: the profile decides
    # Training reward: verl's own scorer, or gsm8k-format (suite/data/rewards.py: verl's strict score plus
    # format_score for a well-formed wrong answer). Accuracy is verl's strict scorer either way.
    reward: Literal["verl", "gsm8k-format"] = "verl"
    format_score: float = Field(default=0.1, ge=0, le=1)
    use_kl_loss: StrictBool = True
    kl_loss_coef: float = Field(default=0.001, ge=0)
    entropy_coeff: float = 0.0
    temperature: float = Field(default=1.0, gt=0)
    seed: StrictInt = 42
    strategy: Literal["fsdp", "fsdp2"] = "fsdp2"  # FSDP backend only (LoRA on 1 GPU needs fsdp2)
    use_shm: StrictBool = False
    # torch's pinned (host) allocator rounds every block up to a power of two; set N to round only blocks up to N
    # MiB (PYTORCH_ALLOC_CONF=pinned_max_round_threshold_mb:N in every Ray worker). Offloaded fp32 weights then
    # take their own size on the host instead of up to twice it. None: torch's default (always rounds).
    pinned_round_max_mb: PosInt | None = None
    # true: verl's FSDP2 parameter and optimizer offload and vLLM's sleep backup copy to pageable host memory
    # (suite/run/pageable_copies.py), of their own size and given back when freed, where torch's pinned allocator
    # would round each block up to a power of two and keep it: the same saving on torch 2.11, which has no
    # pinned_max_round_threshold_mb, paid for in slower (synchronous) offload copies.
    pageable_host_copies: StrictBool = False
    # true: verl's FSDP2 parameter and optimizer offload and vLLM's sleep backup copy into host buffers of their
    # own size, allocated once, pinned in place (cudaHostRegister) and reused every step: pinned-speed copies
    # without the pinned allocator's rounding. Not with pageable_host_copies (one way or the other).
    registered_host_copies: StrictBool = False
    dataloader_num_workers: NonNegInt = 2
    agent_num_workers: PosInt = 2
    reward_num_workers: PosInt = 2
    # TransferQueue's storage units (transfer_queue.backend.SimpleStorage.num_data_storage_units): one Ray actor
    # each, started before verl's trainer exists. verl's default 8 held 5.64 GiB of host RSS on every 1-GPU host
    # measured and took 16.2 s to start on 2 CPU threads against 5.9 s for 2 (benchmarks/tq_storage_units.py);
    # its docs ask for >= 2 per node. None: verl's default, so the measured cells keep their commands.
    tq_storage_units: PosInt | None = None

    @field_validator("offload")
    @classmethod
    def _offload_value(cls, v: str) -> str:
        return _check_offload(v)

    @field_validator("ppo_mini_batch_size")
    @classmethod
    def _mini_batch(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v > 0:
            return v
        if isinstance(v, str) and re.fullmatch(r"rollout_batch(/[1-9][0-9]*)?", v):
            return v
        raise ValueError(
            f"bad value {v!r}; allowed: a positive int, 'rollout_batch' or 'rollout_batch/K' (K updates per step)"
        )

    def mini_batch(self, rollout_batch: int) -> int:
        """ppo_mini_batch_size in prompts for a given rollout batch (0 when K does not divide it)."""
        v = self.ppo_mini_batch_size
        if isinstance(v, int):
            return v
        k = int(v.split("/")[1]) if "/" in v else 1
        return rollout_batch // k if rollout_batch % k == 0 else 0


class Profile(_Strict):
    steps: PosInt = 8  # measured steps
    warmup_steps: NonNegInt = 0
    val_before_train: StrictBool = False
    # Validate every N steps; -1 never. Any N > 0 also validates the last step (verl does so).
    test_freq: StrictInt = -1
    val_max_samples: StrictInt = -1  # -1: the whole test split
    val_n: PosInt = 1
    val_temperature: float = Field(default=0.0, ge=0)
    val_do_sample: StrictBool = False
    save_freq: StrictInt = -1
    # Fixed-length rollouts (vLLM ignore_eos): every response is exactly response_length tokens.
    ignore_eos: StrictBool = False
    enforce_eager: StrictBool = True
    torch_compile: StrictBool = False
    # vLLM captures CUDA graphs for batch sizes up to 2 x max_num_seqs (at most 512); a cell never has more than
    # rollout_batch x n sequences in flight, so capping max_num_seqs there (never above verl's 256) skips captures
    # that a short run never uses. Only when [base] max_num_seqs is unset.
    fit_max_num_seqs: StrictBool = False
    # Read only the rows the run consumes (steps x rollout batch + one spare batch) from a copy of the train
    # file in the cell's directory; the validation file too when the profile never validates. verl's dataset
    # load and filtering then costs seconds instead of a minute at start-up. Never on for accuracy runs.
    subset_data: StrictBool = False
    # Another profile (of the file, or the suite's bench/train) this one starts from: a profile a file adds under a
    # new name otherwise starts from these defaults, e.g. without bench's fixed-length rollouts.
    extends: str | None = None

    @field_validator("test_freq", "save_freq")
    @classmethod
    def _freq(cls, v: int) -> int:
        if v == 0 or v < -1:
            raise ValueError(f"must be -1 (never) or a positive step count, got {v}")
        return v

    @property
    def validates(self) -> bool:
        return self.val_before_train or self.test_freq > 0

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.steps


DEFAULT_PROFILES: dict[str, dict[str, Any]] = {
    "bench": {"steps": 8, "warmup_steps": 2, "ignore_eos": True, "fit_max_num_seqs": True, "subset_data": True},
    "train": {"steps": 20, "warmup_steps": 0, "val_before_train": True, "test_freq": 20},
}


class Matrix(_Strict):
    matrix: MatrixSection
    axes: Axes = Axes()
    base: Base = Base()
    # Raw Hydra overrides: "dotted.key" = value (nested tables are flattened into dotted keys).
    overrides: dict[str, Any] = Field(default_factory=dict)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    profiles: dict[str, Profile] = Field(default_factory=dict)
    _source: str = PrivateAttr(default="<matrix>")

    @property
    def source(self) -> str:
        """The file it was read from (for error messages)."""
        return self._source

    @model_validator(mode="after")
    def _check_extra_axes(self) -> Matrix:
        for name, vals in self.axes.extra().items():
            if not isinstance(vals, list) or not vals:
                raise AxisError(name, f"axis {name!r}: give a non-empty list of values, got {vals!r}")
            if name in Base.model_fields:
                pass  # each value must be one that [base] itself would accept for the name: axis_values checks
            elif not RAW_KEY.fullmatch(name):
                raise AxisError(
                    name,
                    f"unknown axis {name!r}; allowed: {', '.join(AXES)}, any [base] name "
                    f"({', '.join(n for n in Base.model_fields if n not in AXES)}) "
                    'or a quoted raw verl key such as "actor_rollout_ref.rollout.max_num_seqs"',
                )
            else:
                for x in vals:
                    if not isinstance(x, bool | int | float | str):
                        raise AxisError(name, f"axis {name!r}: values must be scalars, got {x!r}")
        try:
            check_codes(list(self.axes.extra()))
        except CodeClash as exc:
            raise AxisError(exc.axis, str(exc)) from None
        for name, vals in self.axis_values().items():  # typed as their setting: [1] and [1.0] are one value
            if len({repr(x) for x in vals}) != len(vals):
                raise AxisError(name, f"axis {name!r} repeats a value: {vals}")
        return self

    @model_validator(mode="after")
    def _check_override_conflicts(self) -> Matrix:
        """A raw [overrides] key that sets what a readable name of this file sets would silently win over it."""
        backend = self.matrix.backend
        given = [(f"base.{n}", n) for n in sorted(self.base.model_fields_set)]
        given += [(f"axes.{n}", n) for n in AXES if getattr(self.axes, n) is not None]
        given += [(f"axes.{n}", n) for n in self.axes.extra() if n in Base.model_fields]
        for key in self.overrides:
            for where, name in given:
                if verl_keys.bare(key) in verl_keys.keys_of(name, backend):
                    raise FieldError(
                        f"overrides.{key}",
                        f"[overrides] {key!r} sets the verl setting that {where} already sets; give it in one "
                        f"place ({where} is the readable one)",
                    )
        return self

    @model_validator(mode="after")
    def _check_excludes(self) -> Matrix:
        values = self.axis_values()
        for i, ex in enumerate(self.exclude):
            if not ex:
                raise ValueError(f"exclude[{i}] is empty (it would drop every cell)")
            for k, v in ex.items():
                if k not in values:
                    raise ValueError(f"exclude[{i}]: unknown axis {k!r}; allowed: {', '.join(values)}")
                vs = v if isinstance(v, list) else [v]
                for x in vs:
                    if k == "offload" and isinstance(x, str):
                        x = _check_offload(x)
                    if x not in values[k]:
                        raise ValueError(f"exclude[{i}].{k}: value {x!r} is not on the axis; allowed: {values[k]}")
        return self

    def axis_values(self) -> dict[str, list[Any]]:
        """Every axis with its values: the four named ones first (omitted ones fixed by [base]), then the
        extra axes in file order."""
        out: dict[str, list[Any]] = {}
        for name in AXES:
            vals = getattr(self.axes, name)
            out[name] = list(vals) if vals is not None else [getattr(self.base, name)]
        for name, vals in self.axes.extra().items():
            setting = self.setting_of(name)
            out[name] = [base_value(setting, x, name) for x in vals] if setting else list(vals)
        return out

    def setting_of(self, axis: str) -> str | None:
        """The [base] name an extra axis sets: its own name, or the readable name of a raw verl key."""
        if axis in Base.model_fields:
            return axis
        return verl_keys.readable_name(axis, self.matrix.backend)

    def readable_point(self, point: dict[str, Any]) -> dict[str, Any]:
        """The point with each raw-key axis that is a readable setting also under that name, so the plan-time
        rules, the generated keys and the subsets see it as the setting it is."""
        out = dict(point)
        for axis, value in point.items():
            setting = self.setting_of(axis)
            if setting and setting != axis:
                out[setting] = value
        return out

    def base_for(self, point: dict[str, Any]) -> Base:
        """[base] with the point's readable axis values in place (raw verl keys stay out: they are overrides)."""
        update = {k: v for k, v in point.items() if k in Base.model_fields and k not in AXES}
        return self.base.model_copy(update=update) if update else self.base

    @staticmethod
    def raw_axes(point: dict[str, Any]) -> dict[str, Any]:
        """The point's raw verl keys (axes that are not [base] names)."""
        return {k: v for k, v in point.items() if k not in Base.model_fields}

    def profile(self, name: str, _seen: tuple[str, ...] = ()) -> Profile:
        """A profile from the file, over the profile it `extends`, else over the suite's defaults for `bench` and
        `train`."""
        allowed = sorted(set(self.profiles) | set(DEFAULT_PROFILES))
        if name in self.profiles:
            given = self.profiles[name].model_dump(exclude_unset=True)
            parent = given.pop("extends", None)
            if parent is None:
                start = DEFAULT_PROFILES.get(name, {})
            elif parent in (*_seen, name):
                chain = " -> ".join((*_seen, name, parent))
                raise InputError(f"profiles.{name}.extends: a cycle ({chain})", source=self.source)
            elif parent not in allowed:
                raise InputError(
                    f"profiles.{name}.extends: unknown profile {parent!r}; allowed: {', '.join(allowed)}",
                    source=self.source,
                )
            else:
                start = self.profile(parent, (*_seen, name)).model_dump(exclude={"extends"})
            return Profile(**{**start, **given})
        if name in DEFAULT_PROFILES:
            return Profile(**DEFAULT_PROFILES[name])
        raise InputError(f"unknown profile {name!r}; allowed: {', '.join(allowed)}", source=self.source)
