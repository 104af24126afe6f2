"""The reference cell (`[matrix] reference`): the cell every other cell of its matrix is read against.

Ratios are display only: they never change a verdict or an exit code. A cell and its reference must share
GPU generation, GPU count, model, backend and matrix, or the matrix names its reference's
(`[matrix] reference_matrix`); nothing else is ever divided (the project's rule: no comparison across
generations or GPU counts). Shared by the gate and the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from suite.gate.cells import PooledCell, median, pool
from suite.gate.objective import command_objective, objective_differences, objective_views
from suite.gate.store import Key
from suite.results.baseline import Baseline
from suite.results.provenance import Stack, run_stack, version_differences
from suite.results.schema import Result

Source = Literal["current", "baseline"]


def reference_id(cell_id: str, reference: str) -> str:
    """The full id of a cell's reference: the cell's id with its short (axes) part replaced.

    Full ids are `model/<gen>x<n>/<backend>/<short id>`; the first three parts are kept, as
    `suite.report.table.cell_name` drops exactly those."""
    parts = cell_id.split("/")
    keep = parts[:3] if len(parts) >= 4 else parts[:-1]
    return "/".join([*keep, reference])


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference <= 0:
        return None
    return value / reference


def ratio_text(x: float | None) -> str | None:
    """`x1.42`, as the plan prints ratios to the reference (`suite.plan.render.ratio`)."""
    return None if x is None else f"x{x:.2f}"


def same_group(a: Result, b: Result) -> bool:
    """Whether two results may be divided: same generation, GPU count, model and backend, and the matrix `a`
    reads its reference in (its own unless it names another)."""
    return (a.gpu, a.n_gpus, a.model, a.backend, reference_matrix(a)) == (b.gpu, b.n_gpus, b.model, b.backend, b.matrix)


def reference_matrix(r: Result) -> str:
    """The matrix a result's reference cell is in."""
    return r.reference_matrix or r.matrix


@dataclass(frozen=True)
class Reference:
    """What a cell's numbers are divided by, and where those numbers came from."""

    id: str  # full id of the reference cell
    source: Source  # "current": among the gated results; "baseline": its stored baseline
    status: str
    throughput: float | None  # median tokens/s/GPU over measured steps (None unless status ok)
    peak_memory_gb: float | None  # NVML, worst GPU (None unless status ok)
    axes: Mapping[str, int | str]  # the reference's axis values: which objective it has
    where: str = ""  # the baseline file, when source is "baseline"
    matrix: str = ""  # the matrix it is a cell of
    argv: tuple[str, ...] = ()  # its verl command: its objective settings, when compared across matrices
    stack: Stack = ({}, None)  # its first run's versions and packages looked up: which stack it was measured on
    host_peak_gb: float | None = None  # its process tree's host peak (None unless status ok, or not recorded)

    def objective(self) -> Mapping[str, object]:
        return command_objective(self.argv)


@dataclass(frozen=True)
class CellRatios:
    reference: Reference
    throughput: float | None  # current median / reference median
    peak_memory: float | None  # current NVML peak / reference NVML peak
    # objective axes in which the cell differs from its reference (suite.gate.objective): other work
    objective_differences: tuple[str, ...] = ()
    # packages whose versions differ from the reference's (provenance.version_differences): another stack
    stack_differences: str | None = None
    host_memory: float | None = None  # current host peak of the process tree / the reference's


def _values(cell: PooledCell) -> tuple[float | None, float | None, float | None]:
    """(median throughput, NVML peak, host peak). A failed run's (an OOM dies at the limit) are not what the
    cell costs."""
    if cell.status != "ok":
        return None, None, None
    return median(cell.throughput), cell.peak_memory_worst_gb, cell.host_peak_gb


def find_reference(
    runs: Sequence[Result],
    current: Mapping[Key, Sequence[Result]],
    store: Mapping[Key, tuple[Path, Baseline]],
) -> Reference | None:
    """The reference of the cell whose runs are `runs`: among `current` (the same run's results) when there,
    else its stored baseline; None when the matrix names none or neither holds it."""
    first = runs[0]
    if not first.reference:
        return None
    ref_id = reference_id(first.id, first.reference)
    key = (first.gpu, reference_matrix(first), ref_id)
    if key in current and same_group(first, current[key][0]):
        return _reference(ref_id, "current", current[key], "")
    if key in store:
        path, baseline = store[key]
        if same_group(first, baseline.results[0]):
            return _reference(ref_id, "baseline", baseline.results, str(path))
    return None


def _reference(ref_id: str, source: Source, runs: Sequence[Result], where: str) -> Reference:
    """The reference pooled over its runs; what it is (axes, matrix, command, stack) read off the first."""
    cell = pool(runs)
    tput, peak, host = _values(cell)
    got = runs[0]
    prov = got.provenance
    return Reference(
        ref_id, source, cell.status, tput, peak, got.axes, where, got.matrix, tuple(prov.argv), run_stack(prov), host
    )


def cell_ratios(runs: Sequence[Result], ref: Reference) -> CellRatios:
    tput, peak, host = _values(pool(runs))
    diff = objective_differences(*compared(runs[0], ref))
    stacks = version_differences([run_stack(runs[0].provenance), ref.stack])
    return CellRatios(
        ref, ratio(tput, ref.throughput), ratio(peak, ref.peak_memory_gb), diff, stacks, ratio(host, ref.host_peak_gb)
    )


# what a ratio between two software stacks is marked with, in the report's tables and the gate's
STACK_MARK = "(other stack)"


def stack_note(differences: str) -> str:
    """After a cell's name: why its ratios are not a speedup of one configuration."""
    return f"ran on another stack than its reference ({differences}): its ratios measure the stack too"


def compared(r: Result, ref: Reference) -> tuple[Mapping[str, object], Mapping[str, object]]:
    """A result's and its reference's objective views, named alike (axes in one matrix, verl settings across)."""
    # a reference without a matrix recorded is one of the cell's own matrix
    return objective_views(
        (r.matrix, r.axes, lambda: command_objective(r.provenance.argv)),
        (ref.matrix or r.matrix, ref.axes, ref.objective),
    )
