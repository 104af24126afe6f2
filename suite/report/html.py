"""index.html: one self-contained page (inline CSS and SVG, no script, no external resource)."""

from __future__ import annotations

import re

from suite.report import plots
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
    median_ci_note,
    notes,
    planned_table,
    provenance_table,
    reference_notes,
    speed_table,
    startup_table,
)
from suite.report.escape import h
from suite.report.model import Report
from suite.report.table import Group

_STATUS_CLASSES = {
    "ok",
    "oom",
    "crash",
    "timeout",
    "interrupted",
    "invalid",
    "skipped",
    "predicted-oom",
    "predicted-host-oom",
}
_VERDICT_CLASSES = {"regressed", "suspicious", "improved", "unchanged", "new", "missing", "failed"}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1800px;
padding:16px 24px;color:#1a1a1a;background:#fff}
h1{font-size:24px;margin:8px 0}
h2{font-size:20px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
h3{font-size:16px;margin-top:24px}
p.note{color:#444;font-size:13px;max-width:1000px}
.scroll{overflow-x:auto;margin:8px 0}
table{border-collapse:collapse;font-size:12px}
th,td{border:1px solid #d0d0d0;padding:3px 7px;vertical-align:top}
td{white-space:nowrap}td.wrap{white-space:normal;min-width:190px}
th{background:#f2f4f7;text-align:left;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr:nth-child(even){background:#fafafa}
td.s-ok{color:#1b7f3b}td.s-predicted-oom,td.s-predicted-host-oom{color:#b2182b}
td.s-oom,td.s-crash,td.s-timeout,td.s-invalid,td.s-interrupted{color:#b2182b;font-weight:600}
td.v-regressed{background:#fde0e0;font-weight:600}td.v-improved{background:#e3f4e6}td.v-suspicious{background:#fdf1d8}
.figs{display:flex;flex-wrap:wrap;gap:12px 24px}
figure{margin:8px 0;flex:1 1 640px;max-width:760px}
figure svg{width:100%;height:auto}
figcaption{font-size:12px;color:#555}
nav ul{columns:3;font-size:13px}
table.prov td{font-size:12px}
"""


def table(
    t: Table,
    *,
    cls: str = "",
    status_col: str | None = "status",
    verdict_col: str | None = None,
    wrap_col: str | None = None,
) -> str:
    s_idx = t.headers.index(status_col) if status_col in t.headers else -1
    v_idx = t.headers.index(verdict_col) if verdict_col in t.headers else -1
    w_idx = t.headers.index(wrap_col) if wrap_col in t.headers else -1
    head = "".join(f'<th scope="col">{h(c)}</th>' for c in t.headers)
    body = []
    for row in t.rows:
        tds = []
        for j, c in enumerate(row):
            classes = ["n"] if t.numeric[j] else []
            if j == s_idx and c in _STATUS_CLASSES:
                classes.append(f"s-{c}")
            if j in (w_idx, v_idx):
                classes.append("wrap")
            if j == v_idx:
                word = c.split(":", 1)[0]
                if word in _VERDICT_CLASSES:
                    classes.append(f"v-{word}")
            attr = f' class="{" ".join(classes)}"' if classes else ""
            tds.append(f"<td{attr}>{h(c)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    cls_attr = f' class="{cls}"' if cls else ""
    return (
        f'<div class="scroll"><table{cls_attr}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _figure(svg: str | None, caption: str, kind: str) -> str:
    if svg is None:
        return ""
    return f'<figure data-plot="{kind}">{svg}<figcaption>{h(caption)}</figcaption></figure>'


def group_section(g: Group, *, gated: bool, index: int) -> str:
    title = group_title(g)
    parts = [
        f'<h3 id="{h(anchor(title))}-{index}">{h(title)}</h3>',
        table(cell_table(g, gated=gated), cls="cells", verdict_col="gate verdict"),
    ]
    if refs := reference_notes(g):
        parts.append('<ul class="ref">' + "".join(f"<li>{h(n)}</li>" for n in refs) + "</ul>")
    failed = notes(g)
    if failed:
        parts.append(
            "<p>Cells that did not run cleanly:</p><ul>" + "".join(f"<li>{h(n)}</li>" for n in failed) + "</ul>"
        )
    steps_svg, left_out = plots.throughput_per_step(g.rows, f"Throughput per step: {title}")
    steps_caption = "Per-step tokens/s/GPU; shaded steps are warm-up and excluded from every statistic."
    if left_out:
        steps_caption += f" The {plots.MAX_LINES} fastest cells are drawn; {left_out} more are in the table."
    figs = [
        _figure(
            plots.throughput_vs_memory(g.rows, f"Throughput vs peak memory: {title}"),
            "Each point is a cell (#: row of the table). Pareto front: no other cell is both faster and "
            "smaller. OOM cells are drawn at the GPU memory limit with zero throughput.",
            "memory",
        ),
        _figure(
            plots.phase_bars(g.rows, f"Step time by phase: {title}"),
            "Mean seconds per measured step; 'other' is step time minus the named phases "
            "(reward, advantages, weight sync, ...).",
            "phases",
        ),
        _figure(steps_svg, steps_caption, "steps"),
        _figure(
            plots.accuracy_plot(g.rows, f"GSM8K accuracy: {title}"),
            "Test pass@1 after training with 95 % Wilson intervals; hollow circles: before training.",
            "accuracy",
        ),
    ]
    parts.append('<div class="figs">' + "".join(figs) + "</div>")
    if (st := startup_table(g)) is not None:
        parts.append(f"<p>{h(STARTUP_NOTE)}</p>" + table(st, cls="startup", status_col=None))
    parts.append(table(provenance_table(g.rows), cls="prov", status_col=None))
    return "\n".join(parts)


def history_section(report: Report) -> str:
    if not report.histories:
        return ""
    figs = []
    for s in report.histories:
        title = f"{s.gpu} · {s.matrix} · {s.id}"
        svg = plots.history_plot(s.points, f"History: {title}")
        figs.append(_figure(svg, f"{len(s.points)} entries from {s.path}", "history"))
    return (
        '<h2 id="history">Baseline history</h2><p class="note">'
        + h(HISTORY_NOTE)
        + '</p><div class="figs">'
        + "".join(figs)
        + "</div>"
    )


def evidence_section(report: Report) -> str:
    if not report.evidence:
        return ""
    skipped = (
        f'<p class="note">{h(evidence_skipped_note(report.evidence_skipped))}</p>' if report.evidence_skipped else ""
    )
    return (
        '<h2 id="evidence">Measured, not baselines</h2><p class="note">'
        + h(EVIDENCE_NOTE)
        + "</p>"
        + table(evidence_table(report.evidence), cls="planned", wrap_col="why not a baseline")
        + skipped
    )


def speed_section(report: Report) -> str:
    if report.speed is None:
        return ""
    return (
        '<h2 id="speed">Speed planner against the measured runs</h2><p class="note">'
        + h(SPEED_NOTE)
        + f"</p><p>{h(report.speed.summary)}</p>"
        + table(speed_table(report.speed), cls="speed", status_col=None)
    )


def planned_section(report: Report) -> str:
    if not report.planned:
        return ""
    return (
        '<h2 id="planned">Planned, not yet measured</h2><p class="note">'
        + h(PLANNED_NOTE)
        + "</p>"
        + table(planned_table(report.planned), cls="planned", status_col="ref status", wrap_col="why not")
    )


def render(report: Report) -> str:
    toc = []
    sections = []
    n = 0
    for gpu, groups in report.by_gpu():
        gid = f"gpu-{anchor(gpu)}"
        toc.append(f'<li><a href="#{h(gid)}">{h(gpu)}</a> ({len(groups)} model(s))</li>')
        sections.append(f'<h2 id="{h(gid)}">{h(gpu)}</h2>')
        for g in groups:
            n += 1
            sections.append(group_section(g, gated=report.gated, index=n))
    cross = (
        table(cross_table(report.cross_gens, report.cross_rows), status_col=None)
        if report.cross_rows
        else "<p>No cell exists on more than one GPU generation.</p>"
    )
    backends = (
        f'<p class="note">{h(BACKEND_NOTE)}</p>' + table(backend_table(report.backend_pairs), status_col=None)
        if report.backend_pairs
        else "<p>No cell exists on both backends.</p>"
    )
    warnings = "".join(f'<p class="note">{h(w)}</p>' for w in report.notes)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>GRPO benchmark report</title>
<style>{CSS}</style>
</head>
<body>
<h1>GRPO benchmark report</h1>
<p>{h(report.summary)}</p>
<p class="note">{h(median_ci_note())}</p>
{warnings}
<nav><ul>{"".join(toc)}<li><a href="#cross">across generations</a></li><li><a href="#backends">FSDP vs Megatron</a></li>{'<li><a href="#evidence">measured, not baselines</a></li>' if report.evidence else ""}{'<li><a href="#speed">speed planner vs measured</a></li>' if report.speed else ""}{'<li><a href="#planned">planned, not yet measured</a></li>' if report.planned else ""}{'<li><a href="#history">baseline history</a></li>' if report.histories else ""}</ul></nav>
<h2 id="best">Best cells</h2>
<p class="note">{h(BEST_NOTE)}</p>
{f'<p class="note">{h(REFERENCE_NOTE)}</p>' if report.has_reference else ""}
{table(best_table(report.bests), status_col=None)}
{"".join(sections)}
<h2 id="cross">Across GPU generations (ratio to {h(report.reference)})</h2>
<p class="note">Same model, GPU count, backend and axes on several generations; ratio of median tokens/s/GPU
to {h(report.reference)} (higher is faster).</p>
{cross}
<h2 id="backends">FSDP vs Megatron</h2>
{backends}
{evidence_section(report)}
{speed_section(report)}
{planned_section(report)}
{history_section(report)}
</body>
</html>
"""
