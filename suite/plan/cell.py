"""A planned cell: one point of a matrix, turned into the exact verl command that runs it.

This is the contract between plan and run (and the JSON of `grpo-suite plan --format json`). The command is held
as data: the program (`command`) and its Hydra overrides (`overrides`, typed values with their prefix kind).
`argv` is derived from them here and nowhere else, and the files a run writes or reads (`paths`) are read from
the same data, so no stage parses a command line back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from suite.plan.hydra import Override, OverrideValue

CellStatus = Literal["ok", "invalid", "predicted-oom", "predicted-host-oom"]
# Plan statuses that say "predicted not to fit" (GPU or host memory): run anyway unless --skip-predicted-oom.
PREDICTED_OOM: tuple[str, ...] = ("predicted-oom", "predicted-host-oom")

LOGGER_ENV = "VERL_FILE_LOGGER_PATH"  # where verl's file logger writes metrics.jsonl
# verl hands `ray_kwargs.ray_init.runtime_env` to ray.init(): how the logger path reaches verl's workers.
LOGGER_KEY = f"ray_kwargs.ray_init.runtime_env.env_vars.{LOGGER_ENV}"
# torch's allocator settings, seen by every Ray worker of the run (the trainer and vLLM's processes)
ALLOC_CONF_ENV = "PYTORCH_ALLOC_CONF"
ALLOC_CONF_KEY = f"ray_kwargs.ray_init.runtime_env.env_vars.{ALLOC_CONF_ENV}"
# verl 0.9.1 (utils/torch_functional.py) takes flash-attn's Triton cross entropy wherever it imports, unless this is "1":
# how `[matrix] flash_attn = false` holds on a stack that has flash-attn installed.
FLASH_CE_ENV = "VERL_DISABLE_FLASH_ATTN_CE"
FLASH_CE_KEY = f"ray_kwargs.ray_init.runtime_env.env_vars.{FLASH_CE_ENV}"
# verl imports the modules this names in each of its processes (verl/__init__.py): how `[matrix] keep_rope_fp32`
# reaches the workers that build the model.
EXTERNAL_MODULES_ENV = "VERL_USE_EXTERNAL_MODULES"
EXTERNAL_MODULES_KEY = f"ray_kwargs.ray_init.runtime_env.env_vars.{EXTERNAL_MODULES_ENV}"
ROPE_FP32_MODULE = "suite.run.rope_fp32"
# how `[base] pageable_host_copies` and `registered_host_copies` reach verl's workers and vLLM's
# (suite/run/pageable_copies.py)
PAGEABLE_COPIES_MODULE = "suite.run.pageable_copies"
# the modules it patches (the preflight imports them after it)
PAGEABLE_FSDP_UTILS = "verl.utils.fsdp_utils"
PAGEABLE_CUMEM = "vllm.device_allocator.cumem"
# which way that module holds each copy (pageable, registered, pinned): unset reads as pageable, what
# `pageable_host_copies = true` asks for; `registered_host_copies` sets both to registered (suite/plan/overrides.py)
FSDP_COPIES_ENV = "GRPO_SUITE_FSDP_HOST_COPIES"
FSDP_COPIES_KEY = f"ray_kwargs.ray_init.runtime_env.env_vars.{FSDP_COPIES_ENV}"
VLLM_COPIES_ENV = "GRPO_SUITE_VLLM_HOST_COPIES"
VLLM_COPIES_KEY = f"ray_kwargs.ray_init.runtime_env.env_vars.{VLLM_COPIES_ENV}"
FSDP_COPY_MODES = ("pageable", "registered")
VLLM_COPY_MODES = ("pageable", "registered", "pinned")
# the actor's stored dtype; the values verl 0.9.1 reads as 16 bits (utils/torch_dtypes.py HALF_LIST, BFLOAT_LIST)
ACTOR_DTYPE_KEY = "actor_rollout_ref.actor.fsdp_config.model_dtype"
# the full fine-tune's reference model, built by the same code (fp32 unless a matrix sets it)
REF_DTYPE_KEY = "actor_rollout_ref.ref.fsdp_config.model_dtype"
SIXTEEN_BIT_DTYPES = frozenset({"bf16", "bfloat16", "fp16", "float16", "16"})


def is_sixteen_bit(dtype: object) -> bool:
    """Whether verl reads a `model_dtype` value (a string, or an int from Hydra) as a 16-bit dtype."""
    return str(dtype).lower() in SIXTEEN_BIT_DTYPES


def external_modules(value: object) -> list[str]:
    """The modules a VERL_USE_EXTERNAL_MODULES value names (verl splits it on commas); [] for none."""
    return [m for m in str(value or "").split(",") if m]


VALIDATION_KEY = "trainer.validation_data_dir"
CHECKPOINT_KEY = "trainer.default_local_dir"
_WRITES = (LOGGER_KEY, VALIDATION_KEY, CHECKPOINT_KEY)  # overrides naming what a run writes, not what it reads


@dataclass(frozen=True)
class CellPaths:
    """Where a cell's run writes and what it reads, as its command says."""

    metrics: Path | None  # verl's file logger; None: the runtime's default, `<cell dir>/metrics.jsonl`
    validation_dir: Path | None  # verl's validation dumps; None: verl dumps none
    reads: tuple[Path, ...]  # other absolute paths the command names (data, model): container runtimes mount them


@dataclass(frozen=True)
class Cell:
    id: str  # stable and readable from the axes, e.g. "lora32-off_param+optimizer-tp4-rb180"
    matrix: str  # matrix name
    gpu: str  # generation key
    gpus_per_node: int
    nnodes: int
    model: str  # HF id, local path or synthetic:<arch>
    backend: str  # fsdp | megatron
    profile: str  # bench | train
    axes: dict[str, bool | int | float | str]  # the four named axes, then any extra axes of the matrix
    status: CellStatus
    reason: str | None
    command: list[str]  # the program and its own arguments, e.g. ["python3", "-m", "verl.trainer.main_ppo"]
    overrides: tuple[Override, ...] = ()  # Hydra overrides after the command, in order
    env: dict[str, str] = field(default_factory=dict)
    warmup_steps: int = 0
    total_steps: int = 0
    # Filled by the memory planner (`plan --predict-memory`): GiB per GPU and the per-component breakdown.
    predicted_memory_gb: float | None = None
    memory_breakdown: dict[str, float] | None = None
    # Host RAM of the whole cell (all its processes, on the busiest node), GiB, and its breakdown.
    predicted_host_memory_gb: float | None = None
    host_memory_breakdown: dict[str, float] | None = None
    # Host RAM per node the cell is planned against: `[matrix] host_memory_gb`, else the generation's default.
    host_memory_gb: float | None = None
    # The matrix's reference cell id (`[matrix] reference`), that every cell's numbers are read against.
    reference: str | None = None
    # The matrix `reference` is a cell of, when not this one (`[matrix] reference_matrix`).
    reference_matrix: str | None = None
    # `[matrix] flash_attn`: whether the environment the cell runs in has flash-attn (None: not said).
    flash_attn: bool | None = None
    # Files the run makes before the cell starts: destination path -> {"source": parquet, "rows": N}
    # (suite/data/subset.py: a bench cell reads only the prompts its steps consume).
    inputs: dict[str, dict[str, str | int]] = field(default_factory=dict)

    @property
    def n_gpus(self) -> int:
        return self.nnodes * self.gpus_per_node

    @property
    def full_id(self) -> str:
        """Globally unique: model/hardware/backend/axes, e.g. qwen2.5-32b/h100x4/fsdp/lora32-..."""
        model = self.model.split(":", 1)[-1].rstrip("/").split("/")[-1].lower()
        return f"{model}/{self.gpu}x{self.n_gpus}/{self.backend}/{self.id}"

    @property
    def override_args(self) -> list[str]:
        """The overrides as Hydra reads them (`key=value`, prefix kept)."""
        return [o.text for o in self.overrides]

    @property
    def argv(self) -> list[str]:
        """The full command line, e.g. ["python3", "-m", "verl.trainer.main_ppo", "k=v", ...]."""
        return [*self.command, *self.override_args]

    def setting(self, key: str) -> OverrideValue:
        """The value the command gives a verl key (prefix ignored; the last one wins, as in Hydra), or None."""
        found = [o.value for o in self.overrides if o.key == key]
        return found[-1] if found else None

    def has_setting(self, key: str) -> bool:
        return any(o.key == key for o in self.overrides)

    @property
    def paths(self) -> CellPaths:
        metrics = self.env.get(LOGGER_ENV) or self.setting(LOGGER_KEY)
        validation = self.setting(VALIDATION_KEY)
        return CellPaths(
            metrics=Path(str(metrics)) if metrics else None,
            validation_dir=Path(validation) if isinstance(validation, str) and validation else None,
            reads=tuple(dict.fromkeys(Path(p) for p in _absolute(self))),
        )

    def relocated(self, src: Path, dst: str) -> Cell:
        """The same cell with every path under its directory `src` (values of overrides and env, and where its
        input subsets go) under `dst`."""
        base = str(src).rstrip("/")
        if not base:
            return self

        def rename(v: str) -> str:
            return dst + v[len(base) :] if v == base or v.startswith(base + "/") else v

        return self._renamed(rename, env=True)

    def with_inputs_at(self, names: Mapping[str, str]) -> Cell:
        """The same cell with each input file `dest` (a key of `inputs`) at `names[dest]`: the key itself and
        every override value that names it (a string, or an element of a list) move; other values stay."""

        def rename(v: str) -> str:
            return names.get(v, v) if v in self.inputs else v

        return self._renamed(rename, env=False)

    def _renamed(self, rename: Callable[[str], str], *, env: bool) -> Cell:
        """The same cell with `rename` applied to every string override value (and list element), every input
        destination and, with `env`, every env value; values that are not strings stay."""

        def move(v: OverrideValue) -> OverrideValue:
            if isinstance(v, list):
                return [move(x) for x in v]  # type: ignore[misc]
            return rename(v) if isinstance(v, str) else v

        return replace(
            self,
            overrides=tuple(replace(o, value=move(o.value)) for o in self.overrides),
            env={k: str(move(v)) for k, v in self.env.items()} if env else self.env,
            inputs={str(move(k)): v for k, v in self.inputs.items()},
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["overrides"] = [o.to_dict() for o in self.overrides]
        # Derived, for readers of plan / cell JSON; dropped again on read (suite/run/cellio.py).
        d["n_gpus"] = self.n_gpus
        d["full_id"] = self.full_id
        d["argv"] = self.argv
        p = self.paths
        d["paths"] = {
            "metrics": str(p.metrics) if p.metrics else None,
            "validation_dir": str(p.validation_dir) if p.validation_dir else None,
            "reads": [str(x) for x in p.reads],
        }
        return d


def _absolute(cell: Cell) -> list[str]:
    """Absolute paths among the command's own arguments and the overrides' string values, outputs left out."""
    values: list[object] = [*cell.command[1:]]
    for o in cell.overrides:
        if o.key not in _WRITES:
            values.extend(o.value if isinstance(o.value, list) else [o.value])
    return [v for v in values if isinstance(v, str) and v.startswith("/")]
