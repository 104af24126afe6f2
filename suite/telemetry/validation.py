"""Exact accuracy counts from verl's validation dumps (`trainer.validation_data_dir`).

verl 0.9.1 `RayPPOTrainer._write_generations` writes `<dir>/<global_step>.jsonl`, one JSON object per
validation sample: `input`, `output`, `gts`, `score`, `step` plus the reward function's extra infos
(`reward`, sometimes `acc`). Step 0 is the validation before training. A sample is correct when `acc` is
truthy, else when `score >= 1` (verl's GSM8K scorer gives 1.0 for a strict match and 0 otherwise).
Flexible-match counts use verl's flexible extraction (last number in the last 300 characters) against `gts`.
"""

from __future__ import annotations

import json
import lzma
import re
from dataclasses import dataclass
from pathlib import Path

from suite.results.schema import Accuracy

_CLIP = 300  # verl gsm8k._SOLUTION_CLIP_CHARS
_NUMBER = re.compile(r"(\-?[0-9\.\,]+)")


@dataclass(frozen=True)
class Counts:
    step: int
    correct: int
    total: int
    flexible_correct: int | None
    path: str

    def accuracy(self) -> Accuracy:
        return Accuracy(
            correct=self.correct, total=self.total, flexible_correct=self.flexible_correct, source=self.path
        )


def flexible_answer(text: str) -> str | None:
    """verl `gsm8k.extract_solution(method='flexible')`: last number in the last 300 chars, '.' skipped."""
    numbers = _NUMBER.findall(text[-_CLIP:])
    for n in reversed(numbers):
        if n not in ("", "."):
            return n
    return None


def _is_correct(sample: dict) -> bool:
    if "acc" in sample and sample["acc"] is not None:
        try:
            return float(sample["acc"]) > 0.5
        except (TypeError, ValueError):
            return bool(sample["acc"])
    try:
        return float(sample.get("score", 0.0)) >= 1.0
    except (TypeError, ValueError):
        return False


def count_file(path: Path) -> Counts | None:
    correct = total = flexible = 0
    flexible_known = True
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                sample = json.loads(line)
            except json.JSONDecodeError:
                continue  # a partial last line from a killed run
            if not isinstance(sample, dict):
                continue
            total += 1
            correct += _is_correct(sample)
            gts, output = sample.get("gts"), sample.get("output")
            if isinstance(gts, str | int | float) and isinstance(output, str):
                flexible += flexible_answer(output) == str(gts)
            else:
                flexible_known = False
    if total == 0:
        return None
    return Counts(
        step=_step(path),
        correct=correct,
        total=total,
        flexible_correct=flexible if flexible_known else None,
        path=str(path),
    )


_DUMP_NAME = re.compile(r"^(\d+)\.jsonl(?:\.xz)?$")


def _step(path: Path) -> int:
    m = _DUMP_NAME.match(path.name)
    if m is None:
        raise ValueError(f"not a validation dump name: {path.name}")
    return int(m[1])


def dump_files(directory: str | Path) -> list[Path]:
    """verl's `<step>.jsonl` dumps, and `<step>.jsonl.xz` as evidence folders keep them, in step order."""
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if p.is_file() and _DUMP_NAME.match(p.name)), key=_step)


def first_and_last(directory: str | Path) -> tuple[Counts | None, Counts | None]:
    """Counts of the first validation (before training when it is step 0) and of the last one.
    With a single dump, it is the last one (the "after" accuracy) and also the first."""
    counts = [c for p in dump_files(directory) if (c := count_file(p)) is not None]
    if not counts:
        return None, None
    return counts[0], counts[-1]
