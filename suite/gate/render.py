"""The gate's report as a terminal table, GitHub markdown (`$GITHUB_STEP_SUMMARY`) or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from tabulate import tabulate

from suite.gate.compare import Comparison, GateReport
from suite.gate.history import Point
from suite.gate.objective import MARK
from suite.gate.reference import STACK_MARK, ratio_text
from suite.results.baseline import Baseline

HEADERS = ["cell", "metric", "verdict", "change", "baseline", "current", "detail"]
ICONS = {
    "regressed": "🔴",
    "failed": "🔴",
    "suspicious": "🟡",
    "missing": "⚪",
    "new": "🆕",
    "improved": "🟢",
    "unchanged": "✅",
}


def _order(rows: list[Comparison]) -> list[Comparison]:
    # Regressions first so the reason for a red job is at the top of the page.
    return sorted(rows, key=lambda r: (not r.regression, r.cell, r.matrix, r.gpu))


def _matrices(report: GateReport) -> list[str]:
    return sorted({r.matrix for r in report.rows})


def _several_gpus(report: GateReport) -> bool:
    # One planned cell can have run on two generations: then each row says which (a column, like matrix).
    return len({r.gpu for r in report.rows}) > 1


def _reference_sources(report: GateReport) -> set[str]:
    return {r.reference_source for r in report.rows if r.reference}


def _ref_header(report: GateReport) -> list[str]:
    # No reference anywhere: no column. One source for every ratio: the header says which.
    sources = _reference_sources(report)
    if not sources:
        return []
    return ["vs ref (ref baseline)" if sources == {"baseline"} else "vs ref"]


def _headers(report: GateReport) -> list[str]:
    # One matrix: named above the table. Several: a column, since one cell id can be in each.
    extra = (["gpu"] if _several_gpus(report) else []) + (["matrix"] if len(_matrices(report)) > 1 else [])
    return [*HEADERS[:1], *extra, *HEADERS[1:-1], *_ref_header(report), HEADERS[-1]]


def vs_reference(row: Comparison, *, tag_baseline: bool) -> str:
    """The ratio a row shows: its metric's (throughput, memory or host memory); on a cell's only row (new, or
    status improved to ok, where no throughput row follows) all of them; nothing on failed, missing or accuracy rows."""
    if not row.reference:
        return ""
    tput, mem = ratio_text(row.throughput_vs_reference), ratio_text(row.peak_memory_vs_reference)
    host = ratio_text(row.host_memory_vs_reference)
    if row.metric == "throughput":
        text = tput or ""
    elif row.metric == "memory":
        text = mem or ""
    elif row.metric == "host_memory":
        text = host or ""
    elif row.metric in ("all", "status") and row.verdict in ("new", "improved"):
        text = ", ".join(f"{name} {v}" for name, v in (("tokens/s", tput), ("peak", mem), ("host", host)) if v)
    else:
        return ""
    if not text:
        return ""
    if row.cell == row.reference:
        text = "x1.00 (ref)" if row.metric in ("throughput", "memory", "host_memory") else "ref"
    else:
        text += f" {MARK}" * bool(row.reference_objective_differences)
        text += f" {STACK_MARK}" * bool(row.reference_stack_differences)
    return text + (" (ref baseline)" if tag_baseline and row.reference_source == "baseline" else "")


def _cells(
    row: Comparison, markdown: bool, with_matrix: bool, with_gpu: bool = False, ref: tuple[bool, bool] = (False, False)
) -> list[str]:
    verdict = row.verdict.upper() if row.regression else row.verdict
    cell = f"`{row.cell}`" if markdown else row.cell
    gpu = [row.gpu] if with_gpu else []
    matrix = [f"`{row.matrix}`" if markdown else row.matrix] if with_matrix else []
    if markdown:
        verdict = f"{ICONS[row.verdict]} {'**' + verdict + '**' if row.regression else verdict}"
    show_ref, tag_baseline = ref
    vs = [vs_reference(row, tag_baseline=tag_baseline)] if show_ref else []
    return [cell, *gpu, *matrix, row.metric, verdict, row.change, row.baseline, row.current, *vs, row.detail]


def _rows(report: GateReport, markdown: bool) -> list[list[str]]:
    several, gpus = len(_matrices(report)) > 1, _several_gpus(report)
    sources = _reference_sources(report)
    # mixed sources: the header cannot say which, so each ratio from a stored baseline says so itself
    ref = (bool(sources), len(sources) > 1)
    return [_cells(r, markdown, several, gpus, ref) for r in _order(report.rows)]


def _headline(report: GateReport) -> str:
    counts = report.counts()
    parts = [f"{n} {v}" for v, n in counts.items() if n]
    state = "REGRESSION" if report.exit_code else "no regression"
    return f"{state}: " + (", ".join(parts) or "nothing compared")


def render_table(report: GateReport) -> str:
    lines = []
    if report.mismatches:
        lines.append("MISMATCHED COMPARISON (--allow-mismatch):")
        lines += [f"  {m}" for m in report.mismatches]
    if report.versions:
        lines.append("versions changed: " + "; ".join(f"{k} ({len(v)} cells)" for k, v in report.versions.items()))
    if len(_matrices(report)) == 1:
        lines.append(f"matrix: {_matrices(report)[0]}")
    lines.append(tabulate(_rows(report, False), _headers(report), tablefmt="simple"))
    lines += [f"note: {n}" for n in report.reference_notes]
    lines += [f"note: {n}" for n in report.sentinel_notes]
    lines += [f"note: {n}" for n in report.notes]
    lines.append(f"gate: {_headline(report)} (thresholds: {report.config_source}; exit {report.exit_code})")
    return "\n".join(lines)


def render_markdown(report: GateReport) -> str:
    title = "## GRPO regression gate: " + _headline(report)
    lines = [title, ""]
    if report.mismatches:
        lines += [
            "> [!WARNING]",
            "> **Mismatched comparison** (`--allow-mismatch`): these results are compared "
            "with baselines of a different GPU generation, GPU count, model or profile.",
            ">",
        ]
        lines += [f"> - {m}" for m in report.mismatches]
        lines.append("")
    if report.versions:
        lines += ["| version change | cells |", "|---|---|"]
        lines += [f"| {k} | {len(v)} |" for k, v in report.versions.items()]
        lines.append("")
    if len(_matrices(report)) == 1:
        lines += [f"Matrix `{_matrices(report)[0]}`.", ""]
    lines.append(tabulate(_rows(report, True), _headers(report), tablefmt="github"))
    notes = [*report.reference_notes, *report.sentinel_notes, *report.notes]
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    lines += [
        "",
        f"<sub>throughput: tokens/s/GPU after warm-up (over the measured window, or the median step: the detail "
        "says which), change with bootstrap 95 % interval, one-sided Mann-Whitney U on per-step tokens/s; memory: "
        "NVML peak of the worst GPU; host_memory: the process tree's host peak (RSS); accuracy: pass@1; "
        "sentinel:logprob: verl's rollout vs actor probability difference. Thresholds: "
        f"`{report.config_source}`. Exit code {report.exit_code}.</sub>",
    ]
    return "\n".join(lines) + "\n"


def render_json(report: GateReport) -> str:
    doc = {
        "exit_code": report.exit_code,
        "counts": report.counts(),
        "mismatch_allowed": bool(report.mismatches),
        "mismatches": report.mismatches,
        "versions": report.versions,
        "notes": report.notes,
        "reference_notes": report.reference_notes,
        "sentinel_notes": report.sentinel_notes,
        "config": report.config_source,
        "rows": [asdict(r) for r in _order(report.rows)],
    }
    return json.dumps(doc, indent=2)


def _num(v: float | None, fmt: str) -> str:
    return format(v, fmt) if v is not None else "-"


def render_history(path: Path, baseline: Baseline, points: list[Point]) -> str:
    """`baseline history`: one table per baseline file, oldest first."""
    head = f"{baseline.gpu}, matrix {baseline.matrix}: {baseline.id} ({path})"
    rows = [
        [
            p.at,
            p.kind + (" (current)" if p.current else ""),
            p.runs,
            p.steps,
            _num(p.throughput, ".1f"),
            _num(p.peak_memory_gb, ".2f"),
            _num(p.host_peak_memory_gb, ".2f"),
            _num(p.probs_diff_mean, ".3g"),
            ", ".join(f"{m} {v}" for m, v in sorted(p.verdicts.items()) if v != "unchanged")
            or ("-" if p.verdicts else ""),
        ]
        for p in points
    ]
    headers = ["when", "kind", "runs", "steps", "tok/s/GPU (window)", "peak GiB", "host GiB", "probs diff", "verdicts"]
    cal = baseline.calibration
    host = f", host memory ±{cal.host_memory_tolerance_gib:.2f} GiB" if cal and cal.host_memory_tolerance_gib else ""
    foot = (
        f"calibrated {cal.calibrated_at} from {cal.runs} runs: throughput ±{cal.throughput_tolerance:.2%}, "
        f"memory ±{cal.memory_tolerance_gib:.2f} GiB{host}"
        if cal
        else "not calibrated (thresholds file tolerances)"
    )
    return "\n".join([head, tabulate(rows, headers, tablefmt="simple"), foot])


RENDERERS = {"table": render_table, "markdown": render_markdown, "json": render_json}
