"""`gate --record`: after a comparison, each compared cell's runs and verdicts go into its baseline file.

Only cells that have a baseline are recorded (a `new` cell has no file to join); the record is the gate's
own rows, so what `baseline history` shows is what the gate printed. A cell whose very runs are there
already is skipped and named, so gating one folder twice does not count one violation twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from suite.gate.compare import GateReport
from suite.gate.history import gated_entry, record
from suite.gate.store import index_baselines, label, now_iso
from suite.results.schema import Result

VIOLATIONS = ("suspicious", "regressed")


def record_report(report: GateReport, results: Sequence[tuple[Path, Result]], root: Path) -> list[str]:
    """Record every compared cell; returns notes saying what was written or skipped."""
    runs: dict[tuple[str, str, str], list[Result]] = {}
    for _, r in results:
        runs.setdefault((r.gpu, r.matrix, r.id), []).append(r)
    rows: dict[tuple[str, str, str], dict[str, str]] = {}
    for row in report.rows:
        if row.verdict not in ("new", "missing"):
            rows.setdefault((row.gpu, row.matrix, row.cell), {})[row.metric] = row.verdict
    store = index_baselines(root, sorted({k[0] for k in rows}))
    stamp = now_iso()
    written, skipped = [], []
    for key, verdicts in sorted(rows.items()):
        if key not in store or key not in runs:
            continue
        path, baseline = store[key]
        violations = [m for m, v in verdicts.items() if v in VIOLATIONS]
        entry = gated_entry(runs[key], verdicts, violations, baseline.promoted_at, stamp)
        (written if record(path, baseline, entry) else skipped).append(f"{key[0]}, {label(*key[1:])}")
    notes = []
    if written:
        notes.append(f"recorded {len(written)} cell(s) in their baseline files (gate --record)")
    notes += [f"{name}: these runs are recorded already; not recorded again" for name in skipped]
    return notes
