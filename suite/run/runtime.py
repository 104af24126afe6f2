"""The runtime contract: how one planned cell becomes one `Result`.

Runtimes (host, docker, Ray Jobs, Slurm) differ only in *where* the verl command runs. Every non-host
runtime runs the same in-cell entry point there (`python -m suite.run.incell --cell CELL.json --out DIR`),
which uses the host runtime inside the container / job and writes `DIR/result.json`; the outer runtime then
reads that file back. So telemetry and result building live in one place.

Stable contract (other runtimes implement it):

    class MyRuntime:
        name = "docker"
        def __init__(self, **options): ...          # keyword options: address, image, dry_run, ...
        def run_cell(self, cell, cell_dir, *, timeout_s=None, gpus=None, on_step=None) -> Result: ...

`gpus` are host GPU indices the cell may use (the runtime pins them, e.g. CUDA_VISIBLE_DEVICES);
`None` means "whatever the environment gives". `on_step(step)` is called as verl logs each step (for progress
displays); it must be cheap and may be called from another thread. `run_cell` never raises for a failing
cell: failures are a `Result` with status oom / crash / timeout; KeyboardInterrupt is re-raised after the
cell is recorded as `interrupted` and its processes are stopped.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from suite.errors import InputError

if TYPE_CHECKING:
    from suite.plan.cell import Cell
    from suite.results.schema import Result

StepCallback = Callable[[int], None]

RESULT_FILE = "result.json"
LOG_FILE = "log.txt"
METRICS_FILE = "metrics.jsonl"
VALIDATION_DIR = "validation"
CELL_FILE = "cell.json"


@runtime_checkable
class Runtime(Protocol):
    name: str

    def run_cell(
        self,
        cell: Cell,
        cell_dir: Path,
        *,
        timeout_s: float | None = None,
        gpus: list[int] | None = None,
        on_step: StepCallback | None = None,
    ) -> Result: ...


RUNTIMES: dict[str, str] = {
    "host": "suite.run.host:HostRuntime",
    "docker": "suite.run.docker:DockerRuntime",
    "ray": "suite.run.ray_job:RayJobRuntime",
    "slurm": "suite.run.slurm:SlurmRuntime",
}


def unrun_status(cell: Cell) -> tuple[str, str] | None:
    """(status, reason) of the result recorded for a cell that is not run, or None when it runs: an invalid
    cell stays `invalid`, any other non-ok plan status (e.g. `predicted-oom`) is `skipped`."""
    if cell.status == "ok":
        return None
    return ("invalid" if cell.status == "invalid" else "skipped"), (cell.reason or cell.status)


def runtime_class(name: str) -> type:
    try:
        target = RUNTIMES[name]
    except KeyError:
        raise InputError(
            f"unknown runtime {name!r}; allowed: {', '.join(RUNTIMES)}", field="--runtime"
        ) from None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise InputError(f"runtime {name!r} is not available in this build ({module_name} missing)",
                             field="--runtime") from None
        raise
    return getattr(module, attr)


def make_runtime(name: str, **options: Any) -> Runtime:
    """Instantiate a runtime by name. Options a runtime does not know are its own business: each
    constructor takes keyword options and must reject (InputError) the ones it cannot honour."""
    cls = runtime_class(name)
    return cls(**options)
