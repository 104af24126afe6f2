"""Predicted vs measured peak GPU memory for every stored result (issue 10's validation table).

    python benchmarks/memory_validate.py                  # every result under baselines/
    python benchmarks/memory_validate.py baselines/h100 --fit

Prints a Markdown table (cell, status, measured NVML peak of the worst GPU, predicted peak, error, the
predicted worst phase, predicted fit) and a summary against the goal: within ±10 % on ≥ 90 % of measured
cells and no cell predicted to fit that then OOMed. Exit code 0 when the goal is met, 1 when not, 2 on bad
input. Same as `grpo-suite memory validate`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suite.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    paths = [a for a in args if not a.startswith("-")]
    flags = [a for a in args if a.startswith("-")]
    root = Path(__file__).resolve().parents[1]
    raise SystemExit(main(["memory", "validate", *(paths or [str(root / "baselines")]), *flags]))
