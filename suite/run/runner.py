"""Run planned cells with a runtime: selection, resume, fail-fast, GPU-slot packing, progress.

A failing cell never stops the matrix (unless fail-fast) and every cell's result is its own file, so no
cell can lose another's result. Ctrl-C interrupts the cells in flight (recorded `interrupted`), starts no
new ones, and leaves the rest without a result so that `--resume` runs them next time.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections import deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from suite.plan.cell import PREDICTED_OOM, Cell
from suite.results.io import try_read_result
from suite.results.schema import FINAL_STATUSES, Result
from suite.run import slots as slotting
from suite.run.files import RESULT_FILE
from suite.run.progress import Progress
from suite.run.runtime import Runtime, unrun_status


@dataclass(frozen=True)
class RunOptions:
    cells: str | None = None  # glob(s) over id / full_id, comma-separated
    resume: bool = False
    fail_fast: bool = False
    timeout_s: float | None = None
    parallel: int | None = 1  # None = auto (as many as fit)
    gpu_ids: list[int] | None = None  # GPUs the runner may hand out; None = unknown (no pinning)
    skip_predicted_oom: bool = False
    dry_run: bool = False


@dataclass
class CellOutcome:
    cell: Cell
    cell_dir: Path
    result: Result | None  # None: not run (interrupted / fail-fast before it started)
    reused: bool = False  # result of an earlier run, kept by --resume
    attempted: bool = False  # handed to the runtime (so a non-ok status is a failure of this run)

    @property
    def failed(self) -> bool:
        if self.result is None:
            return False
        if self.result.status in ("invalid",):
            return False
        if self.result.status == "skipped" and not self.attempted:
            return False  # planned skip (--skip-predicted-oom), not a failure
        return self.result.status != "ok"


@dataclass
class RunSummary:
    out_dir: Path
    outcomes: list[CellOutcome] = field(default_factory=list)
    interrupted: bool = False
    stopped_early: bool = False  # fail-fast

    @property
    def failed(self) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.failed]

    @property
    def not_run(self) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.result is None]


def matches(cell: Cell, pattern: str | None) -> bool:
    if not pattern:
        return True
    pats = [p.strip() for p in pattern.split(",") if p.strip()]
    return any(fnmatch.fnmatchcase(cell.id, p) or fnmatch.fnmatchcase(cell.full_id, p) for p in pats)


def select(cells: Sequence[Cell], pattern: str | None) -> list[Cell]:
    return [c for c in cells if matches(c, pattern)]


def cell_dir(out_dir: Path, cell: Cell) -> Path:
    return Path(out_dir) / cell.full_id


def final_result(directory: Path) -> Result | None:
    """The cell's result when it is final (resume keeps it), else None (missing, unreadable, interrupted)."""
    r = try_read_result(directory / RESULT_FILE)
    return r if r is not None and r.status in FINAL_STATUSES else None


def run_cells(
    cells: Sequence[Cell], out_dir: Path, runtime: Runtime, options: RunOptions, progress: Progress | None = None
) -> RunSummary:
    out_dir = Path(out_dir)
    summary = RunSummary(out_dir=out_dir)
    todo: deque[CellOutcome] = deque()

    for cell in select(cells, options.cells):
        directory = cell_dir(out_dir, cell)
        outcome = CellOutcome(cell, directory, None)
        summary.outcomes.append(outcome)
        if options.resume and (earlier := final_result(directory)) is not None:
            outcome.result, outcome.reused = earlier, True
            if progress:
                progress.finished(cell.full_id, earlier.status, reused=True)
            continue
        if cell.status == "invalid" or (cell.status in PREDICTED_OOM and options.skip_predicted_oom):
            if not options.dry_run:
                unrun = unrun_status(cell)
                assert unrun is not None  # this branch only sees invalid and predicted-oom cells
                outcome.result = runtime.record(cell, directory, *unrun)
                if progress:
                    progress.finished(cell.full_id, outcome.result.status)
            continue
        if cell.status in PREDICTED_OOM:
            # A prediction is not a measurement: run it (the result may well be `oom`).
            outcome.cell = dataclasses.replace(cell, status="ok")
        todo.append(outcome)

    gpu_ids = options.gpu_ids
    limit = (
        1
        if gpu_ids is None
        else max((slotting.slot_count(len(gpu_ids), o.cell.gpus_per_node, options.parallel) for o in todo), default=1)
    )
    limit = max(1, limit)
    free = list(gpu_ids or [])
    running: dict[Future[Result], tuple[CellOutcome, list[int] | None]] = {}

    def launch(pool: ThreadPoolExecutor, o: CellOutcome, gpus: list[int] | None, slots: int) -> None:
        cid = o.cell.full_id
        if progress:
            progress.started(cid, gpus, o.cell.total_steps)
        on_step = (lambda s, cid=cid: progress.step(cid, s)) if progress else None
        o.attempted = True
        fut = pool.submit(
            runtime.run_cell, o.cell, o.cell_dir, timeout_s=options.timeout_s, gpus=gpus, on_step=on_step, slots=slots
        )
        running[fut] = (o, gpus)

    def collect(done: set[Future[Result]]) -> None:
        for fut in done:
            o, gpus = running.pop(fut)
            try:
                o.result = fut.result()
            except KeyboardInterrupt:
                o.result = try_read_result(o.cell_dir / RESULT_FILE)
                summary.interrupted = True
            except Exception as exc:  # a runtime bug must not lose the other cells
                o.result = runtime.record(o.cell, o.cell_dir, "crash", f"runtime error: {type(exc).__name__}: {exc}")
            if gpus is not None:
                free.extend(gpus)
            if progress and o.result is not None:
                progress.finished(o.cell.full_id, o.result.status)
            if options.fail_fast and o.failed:
                summary.stopped_early = True

    if options.dry_run:  # show the packing a real run would start with (cells taking turns on the slots)
        for i, o in enumerate(todo):
            blocks = slotting.static_slots(gpu_ids, o.cell.gpus_per_node, options.parallel) if gpu_ids else []
            gpus = blocks[i % len(blocks)] if limit > 1 and blocks else None
            runtime.run_cell(o.cell, o.cell_dir, timeout_s=options.timeout_s, gpus=gpus)
        return summary

    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="cell") as pool:
        try:
            while (todo or running) and not (summary.stopped_early and not running):
                while todo and not summary.stopped_early and len(running) < limit:
                    o = todo[0]
                    need = o.cell.gpus_per_node
                    if gpu_ids is None:
                        gpus, slots = None, 1
                    else:
                        slots = slotting.slot_count(len(gpu_ids), need, options.parallel)
                        if slots == 0:
                            todo.popleft()
                            o.attempted = True
                            o.result = runtime.record(
                                o.cell,
                                o.cell_dir,
                                "skipped",
                                f"needs {need} GPUs per node, this host offers "
                                f"{len(gpu_ids)} ({','.join(map(str, gpu_ids))})",
                            )
                            if progress:
                                progress.finished(o.cell.full_id, "skipped")
                            continue
                        # Always pin: a lone 1-GPU cell on a 4-GPU host (or `--gpus 3`) must not land
                        # on whichever GPU Ray hands out first, which may be another job's.
                        gpus = slotting.take_gpus(free, gpu_ids, need)
                        if gpus is None:
                            break
                        free[:] = [g for g in free if g not in gpus]
                    todo.popleft()
                    launch(pool, o, gpus, slots if limit > 1 else 1)
                if summary.stopped_early and running:
                    runtime.interrupt()
                if not running:
                    break
                done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
                collect(done)
        except KeyboardInterrupt:
            summary.interrupted = True
            runtime.interrupt()
            while running:  # each cell records itself as interrupted and stops its processes
                try:
                    done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
                except KeyboardInterrupt:
                    continue  # a second Ctrl-C must not abandon processes we still have to stop
                collect(done)
    return summary
