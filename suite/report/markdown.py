"""index.md: the report as GitHub-flavoured Markdown tables (tabulate), every result string escaped."""

from __future__ import annotations

from tabulate import tabulate

from suite.report.columns import (
    BACKEND_NOTE,
    BEST_NOTE,
    EVIDENCE_NOTE,
    HISTORY_NOTE,
    PLANNED_NOTE,
    REFERENCE_NOTE,
    SPEED_NOTE,
    STARTUP_NOTE,
    Table,
    backend_table,
    best_table,
    cell_table,
    cross_table,
    evidence_skipped_note,
    evidence_table,
    group_title,
    history_table,
    median_ci_note,
    notes,
    planned_table,
    provenance_table,
    reference_notes,
    speed_table,
    startup_table,
)
from suite.report.escape import md
from suite.report.model import Report


def table(t: Table) -> str:
    align = ["right" if n else "left" for n in t.numeric]
    return tabulate(
        [[md(c, cell=True) for c in row] for row in t.rows],
        headers=[md(hd, cell=True) for hd in t.headers],
        tablefmt="pipe",
        colalign=align,
        disable_numparse=True,
    )


def render(report: Report) -> str:
    out: list[str] = ["# GRPO benchmark report", ""]
    out += [md(report.summary), "", median_ci_note(), ""]
    for w in report.notes:
        out += [f"> {md(w)}", ""]
    out += ["## Best cells", "", md(BEST_NOTE), ""]
    out += [md(REFERENCE_NOTE), ""] if report.has_reference else []
    out += [table(best_table(report.bests)), ""]
    for gpu, groups in report.by_gpu():
        out += [f"## {md(gpu)}", ""]
        for g in groups:
            out += [f"### {md(group_title(g))}", "", table(cell_table(g, gated=report.gated)), ""]
            if refs := reference_notes(g):
                out += [f"- {md(n)}" for n in refs] + [""]
            failed = notes(g)
            if failed:
                out += ["Cells that did not run cleanly:", ""] + [f"- {md(n)}" for n in failed] + [""]
            if (st := startup_table(g)) is not None:
                out += [md(STARTUP_NOTE), "", table(st), ""]
            out += [table(provenance_table(g.rows)), ""]
    out += [f"## Across GPU generations (ratio to {md(report.reference)})", ""]
    if report.cross_rows:
        out += [
            "Same model, GPU count, backend and axes on several generations; ratio of median "
            f"tokens/s/GPU to {md(report.reference)} (higher is faster).",
            "",
            table(cross_table(report.cross_gens, report.cross_rows)),
            "",
        ]
    else:
        out += ["No cell exists on more than one GPU generation.", ""]
    out += ["## FSDP vs Megatron", ""]
    if report.backend_pairs:
        out += [md(BACKEND_NOTE), "", table(backend_table(report.backend_pairs)), ""]
    else:
        out += ["No cell exists on both backends.", ""]
    if report.evidence:
        out += ["## Measured, not baselines", "", md(EVIDENCE_NOTE), "", table(evidence_table(report.evidence)), ""]
        if report.evidence_skipped:
            out += [md(evidence_skipped_note(report.evidence_skipped)), ""]
    if report.speed is not None:
        out += ["## Speed planner against the measured runs", "", md(SPEED_NOTE), "", md(report.speed.summary), ""]
        out += [table(speed_table(report.speed)), ""]
    if report.planned:
        out += ["## Planned, not yet measured", "", md(PLANNED_NOTE), "", table(planned_table(report.planned)), ""]
    if report.histories:
        out += ["## Baseline history", "", md(HISTORY_NOTE), ""]
        for hs in report.histories:
            out += [f"### {md(f'{hs.gpu} · {hs.matrix} · {hs.id}')}", "", table(history_table(hs.points)), ""]
    return "\n".join(out).rstrip() + "\n"
