"""`--gate`: the gate's verdicts (suite.gate.compare) folded into one verdict per cell for the tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from suite.results.schema import Result


@dataclass(frozen=True)
class GateOutcome:
    verdicts: dict[tuple[str, str, str], tuple[str, str | None]]  # (gpu, matrix, full id) -> (worst verdict, detail)
    notes: list[str]  # missing cells, mismatches, version changes, gate notes
    exit_code: int


def gate(
    results: Sequence[tuple[str, Result]],
    baselines: Path,
    *,
    config: Path | None = None,
    allow_mismatch: bool = False,
) -> GateOutcome:
    from suite.gate.compare import VERDICTS, compare
    from suite.gate.config import load_config
    from suite.gate.store import label

    report = compare([(Path(s), r) for s, r in results], baselines, load_config(config), allow_mismatch=allow_mismatch)
    rank = {v: i for i, v in enumerate(VERDICTS)}  # the gate orders verdicts worst first
    by_cell: dict[tuple[str, str, str], list] = {}
    for row in report.rows:
        by_cell.setdefault((row.gpu, row.matrix, row.cell), []).append(row)
    verdicts: dict[tuple[str, str, str], tuple[str, str | None]] = {}
    notes: list[str] = []
    for cell, rows in sorted(by_cell.items()):
        worst = min(rows, key=lambda r: rank.get(r.verdict, len(rank))).verdict
        if worst == "missing":
            notes.append(f"gate: {cell[0]} {label(*cell[1:])}: baseline without a result (missing)")
        shown = [
            r
            for r in sorted(rows, key=lambda r: r.metric)
            if r.change and (r.verdict != "unchanged" or r.metric == "throughput")
        ]
        detail = "; ".join(f"{r.metric} {r.change}" + (f" ({r.verdict})" if r.verdict != worst else "") for r in shown)
        verdicts[cell] = (worst, detail or None)
    notes += [f"gate: labelled mismatch: {m}" for m in report.mismatches]
    notes += [f"gate: {change} in {len(cells)} cell(s)" for change, cells in sorted(report.versions.items())]
    notes += [f"gate: {n}" for n in [*report.sentinel_notes, *report.notes]]
    return GateOutcome(verdicts, notes, report.exit_code)
