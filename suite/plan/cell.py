"""A planned cell: one point of a matrix, turned into the exact verl command that runs it.

This is the contract between plan and run (and the JSON of `grpo-suite plan --format json`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

CellStatus = Literal["ok", "invalid", "predicted-oom", "predicted-host-oom"]
# Plan statuses that say "predicted not to fit" (GPU or host memory): run anyway unless --skip-predicted-oom.
PREDICTED_OOM: tuple[str, ...] = ("predicted-oom", "predicted-host-oom")


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
    argv: list[str]  # full command, e.g. ["python3", "-m", "verl.trainer.main_ppo", "k=v", ...]
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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["n_gpus"] = self.n_gpus
        d["full_id"] = self.full_id
        return d
