"""What the tests of committed GPU evidence (baselines/evidence/<run>/) share: medians over a result's measured
steps, the check that a result's steps are its metrics file's, and that a README's tables are the ones its
folder's table script prints from the files."""

from __future__ import annotations

import lzma
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from suite.memory.calibration import Calibration, default_calibration
from suite.results.io import read_result
from suite.results.schema import Result
from suite.telemetry.metrics import read_metrics

EVIDENCE = Path(__file__).resolve().parents[1] / "baselines" / "evidence"
# the heavy runs' tables are printed by the first run's script, run in each folder
HEAVY_TABLE = EVIDENCE / "2026-12-03-h200-heavy" / "table.py"
# the planner before its 2026-12-07 fit of the update where flash-attn is installed ([logits]
# train_factor_flash_attn 3.0, the update's copies measured on CPU for verl's torch log-softmax): what every
# prediction committed before that day was made with
BEFORE_FA_FIT = default_calibration().with_values("logits", train_factor_flash_attn=3.0)
# ... and before its 2026-12-06 GPU fit of the old log-prob pass (forward_factor 3.0, the copies measured on CPU):
# what every prediction committed up to that day was made with
BEFORE_GPU_FIT = BEFORE_FA_FIT.with_values("logits", forward_factor=3.0)


def log_lines(cell: Path) -> list[str]:
    """The cell's committed log (`log.txt.xz`, trimmed by tools/evidence.py), line by line."""
    return lzma.decompress((cell / "log.txt.xz").read_bytes()).decode().splitlines()


def median_measured(cell: Path, key: str) -> float:
    """Median of a Step field (throughput, time_per_step, ...) over the cell's measured steps."""
    return statistics.median(getattr(s, key) for s in read_result(cell / "result.json").measured_steps())


def median_phase(cell: Path, phase: str) -> float:
    """Median seconds of one verl timing phase (gen, old_log_prob, ref, update_actor, ...) over measured steps."""
    return statistics.median(s.timing_s[phase] for s in read_result(cell / "result.json").measured_steps())


def result_matching_metrics(cell: Path) -> Result:
    """The cell's result, after checking that its steps are the ones its metrics file parses to."""
    r = read_result(cell / "result.json")
    m = read_metrics(cell / "metrics.jsonl")
    assert [s.step for s in m.steps] == [s.step for s in r.steps]
    for parsed, recorded in zip(m.steps, r.steps, strict=True):
        assert parsed.throughput == pytest.approx(recorded.throughput)
        assert parsed.timing_s == pytest.approx(recorded.timing_s)
    return r


def assert_readme_tables(folder: Path, script: Path = HEAVY_TABLE) -> None:
    """Every line the table script prints, run in `folder`, is in the folder's README."""
    out = subprocess.run([sys.executable, str(script)], cwd=folder, capture_output=True, text=True, check=True).stdout
    readme = (folder / "README.md").read_text()
    assert out.strip()
    for line in out.strip().splitlines():
        assert line in readme, line


def assert_readme_phase_rows(folder: Path, cells: Sequence[Path], calibration: Calibration) -> None:
    """The README's phase table is `grpo-suite memory validate --phases` of the cells by the planner of
    `calibration` (the one their predictions were made with), row by row, each named by its cell id."""
    from suite.memory.phase_validate import markdown, phase_rows

    readme = (folder / "README.md").read_text()
    for cell in cells:
        r = read_result(cell / "result.json")
        rows = phase_rows([("x", r)], calibration)
        assert rows, cell
        full = markdown(rows).splitlines()[2 : 2 + len(rows)]
        for line in full:
            assert line.replace(f"| {r.gpu} {r.matrix}: {r.id} |", f"| {cell.name} |", 1) in readme, line


def memory_errors(r: Result) -> tuple[float, float]:
    """(GPU, host) prediction errors, (predicted - measured) / measured: NVML worst GPU, process-tree RSS."""
    gpu = (r.predicted_memory_gb - max(r.peak_memory_gb)) / max(r.peak_memory_gb)
    host = (r.predicted_host_memory_gb - r.host_peak_memory_gb) / r.host_peak_memory_gb
    return gpu, host


def committed_plan_rows(predictions: Path, matrix: str) -> tuple[dict[str, str], str]:
    """A predictions file committed before a matrix ran (`grpo-suite plan MATRIX --predict-memory` output under a
    header naming the command): each cell's row by id, and the summary line (`N ok / M cells`)."""
    lines = predictions.read_text().splitlines()
    assert lines[0].startswith(f"# grpo-suite plan suite/matrices/{matrix}.toml --predict-memory"), lines[0]
    rows = {line.split(" ", 1)[0]: line for line in lines[4:-1]}  # after the title, the heads and the rule
    return rows, lines[-1]


def _shown(gib: float) -> str:
    """A GiB value as the plan table prints it (tabulate drops a trailing .0)."""
    return f"{gib:.1f}".removesuffix(".0")


def assert_plan_committed(cells: list, predictions: Path, matrix: str, summary: str) -> None:
    """Every planned cell's GPU and host predictions are in its row of the committed predictions, with its status."""
    rows, got = committed_plan_rows(predictions, matrix)
    assert got == summary
    for c in cells:
        row = rows[c.id]
        assert _shown(c.predicted_memory_gb) in row and _shown(c.predicted_host_memory_gb) in row, c.id
        assert c.status in row.split(), c.id


def assert_rows_committed(cells: list, rows: dict[str, str]) -> None:
    """A matrix that ran before the planner's 2026-12-04 revision (docs/memory.md): its committed file has a row per
    planned cell, with the status the planner gives it now. The numbers are the planner of the time: each result
    recorded its GPU and host predictions, and the evidence tests check those against the file."""
    for c in cells:
        assert c.status in rows[c.id].split(), c.id


def assert_prediction_committed(r: Result, predictions: Path, cell: str, status: str = "ok") -> None:
    """The result's GPU and host predictions are the ones committed before the run, in the cell's row."""
    row = next(line for line in predictions.read_text().splitlines() if line.startswith(cell + " "))
    assert _shown(r.predicted_memory_gb) in row.split() and _shown(r.predicted_host_memory_gb) in row.split(), row
    assert f" {status}" in row, row


def verl_settings(argv: Sequence[str], *also_drop: str) -> set[str]:
    """What a cell's command tells verl, less what names the cell and where it writes (paths, trainer names, Ray
    runtime env), so that two matrices' plans or runs of one configuration compare equal; `also_drop`: more key
    prefixes to leave out."""
    drop = ("data.train_files", "data.val_files", "trainer.", "ray_kwargs.", *also_drop)
    return {a for a in argv if not a.lstrip("+'").startswith(drop) and "/" not in a}


def planned_cells(matrix: Path, out: Path, profile: str = "bench", calibration: Calibration | None = None) -> list:
    """A committed matrix's cells as `grpo-suite plan --predict-memory` makes them (verl's own check off), by the
    planner of `calibration` (default: today's)."""
    from suite.matrix.load import load_matrix
    from suite.memory.predict import annotate_cells
    from suite.plan.planner import plan_matrix

    cells = plan_matrix(load_matrix(matrix), profile, out_dir=out, validate_with_verl=False)
    return annotate_cells(cells, calibration)
