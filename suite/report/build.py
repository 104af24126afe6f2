"""Write a report folder from results: index.md, index.html, results.json, results.csv."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from suite.report import export, html, markdown
from suite.report.evidence import EvidenceRun
from suite.report.history import HistorySeries
from suite.report.model import Report, build
from suite.report.planned import PlannedMatrix
from suite.report.speedcheck import SpeedChecks
from suite.report.table import ReportRow

FILES = ("index.md", "index.html", "results.json", "results.csv")


def render_all(report: Report) -> dict[str, str]:
    records = export.records(report.rows)
    return {
        "index.md": markdown.render(report),
        "index.html": html.render(report),
        "results.json": export.to_json(records),
        "results.csv": export.to_csv(records),
    }


def write_report(
    rows: Sequence[ReportRow],
    out: Path,
    *,
    reference: str = "h100",
    gated: bool = False,
    notes: Sequence[str] = (),
    histories: Sequence[HistorySeries] = (),
    planned: Sequence[PlannedMatrix] = (),
    evidence: Sequence[EvidenceRun] = (),
    evidence_skipped: Sequence[str] = (),
    speed: SpeedChecks | None = None,
) -> dict[str, Path]:
    report = build(
        rows,
        reference=reference,
        gated=gated,
        notes=notes,
        histories=histories,
        planned=planned,
        evidence=evidence,
        evidence_skipped=evidence_skipped,
        speed=speed,
    )
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, text in render_all(report).items():
        path = out / name
        # newline="\n": identical bytes on every OS so the committed report diffs cleanly
        path.write_text(text, encoding="utf-8", newline="\n")
        written[name] = path
    return written
