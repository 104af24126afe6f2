"""Everything one report shows, computed once from rows (pure) and handed to each renderer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from suite.report.backends import BackendPair, backend_pairs
from suite.report.evidence import EvidenceRun
from suite.report.history import HistorySeries
from suite.report.planned import PlannedMatrix, unmeasured
from suite.report.speedcheck import SpeedChecks
from suite.report.table import (
    Best,
    CrossRow,
    Group,
    ReportRow,
    best_cells,
    cross_generation,
    group_rows,
    with_reference,
)


@dataclass(frozen=True)
class Report:
    rows: list[ReportRow]
    groups: list[Group]
    bests: list[Best]
    cross_gens: list[str]
    cross_rows: list[CrossRow]
    reference: str
    gated: bool
    summary: str
    notes: list[str]  # shown near the top, e.g. superseded results or gate problems
    backend_pairs: list[BackendPair]
    histories: list[HistorySeries] = field(default_factory=list)  # the store's series of the cells shown
    planned: list[PlannedMatrix] = field(default_factory=list)  # matrices planned but without a result here
    evidence: list[EvidenceRun] = field(default_factory=list)  # measured runs of cells without a baseline
    evidence_skipped: list[str] = field(default_factory=list)  # evidence files today's reader refuses, and why
    speed: SpeedChecks | None = None  # the speed planner's out-of-sample check over the measured runs

    @property
    def has_reference(self) -> bool:
        """Whether any row is read against a reference cell held by the report."""
        return any(r.reference_id for r in self.rows)

    def by_gpu(self) -> list[tuple[str, list[Group]]]:
        out: dict[str, list[Group]] = {}
        for g in self.groups:
            out.setdefault(g.gpu, []).append(g)
        return sorted(out.items())


def build(
    rows: Sequence[ReportRow],
    *,
    reference: str = "h100",
    gated: bool = False,
    notes: Sequence[str] = (),
    histories: Sequence[HistorySeries] = (),
    planned: Sequence[PlannedMatrix] = (),
    evidence: Sequence[EvidenceRun] = (),
    evidence_skipped: Sequence[str] = (),
    speed: SpeedChecks | None = None,
) -> Report:
    groups = group_rows(with_reference(rows))
    ordered = [r for g in groups for r in g.rows]
    gens, cross = cross_generation(ordered, reference)
    statuses = Counter(r.status for r in ordered)
    summary = (
        f"{len(ordered)} cells on {len({r.gpu for r in ordered})} GPU generation(s), "
        f"{len({r.model for r in ordered})} model(s): "
        + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        + "."
    )
    if gated:
        verdicts = Counter(r.verdict or "no verdict" for r in ordered)
        summary += " Gate: " + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) + "."
    return Report(
        ordered,
        groups,
        best_cells(groups),
        gens,
        cross,
        reference,
        gated,
        summary,
        list(notes),
        backend_pairs(ordered),
        list(histories),
        unmeasured(planned, {r.matrix for r in ordered} | {e.matrix for e in evidence}),
        list(evidence),
        list(evidence_skipped),
        speed,
    )
