"""What each report table shows, as unescaped text cells. markdown.py and html.py escape and lay out;
keeping the columns here makes the two formats show the same numbers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from suite.gate.history import Point
from suite.gate.objective import MARK, note
from suite.gate.reference import STACK_MARK, ratio_text, stack_note
from suite.report.backends import BackendPair
from suite.report.evidence import EvidenceRun
from suite.report.planned import PlannedCell, PlannedMatrix
from suite.report.speedcheck import SpeedChecks
from suite.report.stats import MIN_N_MEDIAN_CI
from suite.report.table import (
    Best,
    CrossRow,
    Group,
    ReportRow,
    axis_names,
    provenance_summary,
    row_objective_views,
    several_matrices,
)
from suite.telemetry.startup import PHASE_LABELS as STARTUP_LABELS

DASH = "—"

AXIS_HEADERS = {"lora_rank": "LoRA rank", "offload": "offload", "tp": "TP", "rollout_batch": "rollout batch"}


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool]  # right-align these columns


def num(x: float | None, unit: str = "") -> str:
    if x is None:
        return DASH
    a = abs(x)
    s = f"{x:.0f}" if a >= 100 else f"{x:.1f}" if a >= 10 else f"{x:.2f}"
    return s + unit


def interval(x: float | None, lo: float | None, hi: float | None, n: int | None = None) -> str:
    if x is None:
        return DASH
    if lo is None or hi is None:
        return f"{num(x)} (n={n})" if n is not None else num(x)
    return f"{num(x)} [{num(lo)}, {num(hi)}]"


def accuracy(row: ReportRow) -> str:
    if row.accuracy is None:
        return DASH
    return f"{100 * row.accuracy:.1f} [{100 * row.accuracy_lo:.1f}, {100 * row.accuracy_hi:.1f}]"  # type: ignore[operator]


def verdict(row: ReportRow) -> str:
    if row.verdict is None:
        return DASH
    return f"{row.verdict}: {row.verdict_detail}" if row.verdict_detail else row.verdict


def label(index: int) -> str:
    return f"#{index}"


def _uniform(group: Group) -> bool:
    return len({(r.n_gpus, r.backend) for r in group.rows}) == 1


def group_title(group: Group) -> str:
    """Heading of a table; GPU count and backend go here when all its cells share them (a narrower table)."""
    title = f"{group.gpu} · {group.model}"
    if _uniform(group):
        r = group.rows[0]
        title += f" · {r.n_gpus} GPU{'s' if r.n_gpus != 1 else ''} · {r.backend}"
    return title


def cell_table(group: Group, *, gated: bool) -> Table:
    axes = axis_names(group.rows)
    show_pred = any(r.predicted_memory_gb is not None for r in group.rows)
    # only where some run recorded an NVML timeline (2026-12-06 on): the phase the NVML peak falls in
    show_phase = any(r.phase_peaks_gb for r in group.rows)
    uniform = _uniform(group)
    # one cell id can be in several matrices (other [base] settings): then each row names its matrix
    matrices = several_matrices(group.rows)
    headers = ["#", "cell"] + (["matrix"] if matrices else []) + ([] if uniform else ["GPUs", "backend"])
    headers += [AXIS_HEADERS.get(a, a) for a in axes]
    # only when some row's reference is in the report: a column of dashes would say nothing
    show_ref = any(r.reference_id for r in group.rows)
    headers += ["status", "measured steps", "tokens/s/GPU median [95% CI]"]
    headers += ["tokens/s/GPU vs ref"] if show_ref else []
    headers += ["step time (s)", "response length (tokens)", "NVML peak (GiB)"]
    headers += ["NVML peak vs ref"] if show_ref else []
    headers += ["NVML peak phase"] if show_phase else []
    headers += ["torch peak (GiB)"]
    headers += ["predicted (GiB)"] if show_pred else []
    headers += ["GSM8K % [95% CI]"]
    headers += ["gate verdict"] if gated else []
    numeric = [False, False] + [False] * matrices + ([] if uniform else [True, False]) + [False] * len(axes)
    numeric += [False, True, False] + [True] * show_ref + [True, True, True] + [True] * show_ref
    numeric += [False] * show_phase + [True]
    numeric += [True] * show_pred + [False] + [False] * gated
    rows = []
    for i, r in enumerate(group.rows, 1):
        cells = [label(i), r.cell] + ([r.matrix] if matrices else []) + ([] if uniform else [str(r.n_gpus), r.backend])
        cells += [str(r.axes[a]) if a in r.axes else DASH for a in axes]
        cells += [
            r.status,
            str(r.n_steps) + (f" ({r.n_runs} runs)" if r.n_runs > 1 else ""),
            interval(r.throughput, r.throughput_lo, r.throughput_hi, r.n_steps),
        ]
        cells += [vs_ref(r, r.throughput_vs_reference)] if show_ref else []
        cells += [num(r.step_time), num(r.response_length), num(r.peak_memory_gb)]
        cells += [vs_ref(r, r.peak_memory_vs_reference)] if show_ref else []
        cells += [peak_phase(r)] if show_phase else []
        cells += [num(r.torch_peak_gb)]
        cells += [num(r.predicted_memory_gb)] if show_pred else []
        cells += [accuracy(r)]
        cells += [verdict(r)] if gated else []
        rows.append(cells)
    return Table(headers, rows, numeric)


def peak_phase(row: ReportRow) -> str:
    """`old_log_prob (69.9; update 54.9)`: the phase of the NVML peak, then the other phases' peaks; a held phase
    (its peak the level an earlier phase left in torch's cache) reads `update ≤70.2`."""
    top = row.peak_phase
    if top is None:
        return DASH
    short = {"old_log_prob": "old lp", "ref_log_prob": "ref lp", "actor_update": "update"}
    others = "; ".join(
        f"{short.get(k, k)} {'≤' if k in row.held_phases else ''}{num(v)}"
        for k, v in row.phase_peaks_gb.items()
        if k != top
    )
    return f"{top} ({num(row.phase_peaks_gb[top])}" + (f"; {others})" if others else ")")


def vs_ref(row: ReportRow, value: float | None) -> str:
    """A ratio to the row's reference cell: `x1.42`; the reference itself `x1.00 (ref)` (`ref` when it has
    no number, e.g. it did not run ok)."""
    if row.reference_id is None:
        return DASH
    if row.is_reference:
        return "x1.00 (ref)" if value is not None else "ref"
    text = ratio_text(value)
    if text is None:
        return DASH
    return marked(text, row)


def marked(text: str, row: ReportRow, *, objective: bool = True) -> str:
    """A ratio with what makes it other than a speedup: another objective (unless the column says so), another
    stack."""
    marks = [MARK] if objective and row.objective_differences else []
    return " ".join([text, *marks, *([STACK_MARK] if row.stack_differences else [])])


def notes(group: Group) -> list[str]:
    """One line per cell that did not run cleanly, with its reason."""
    out = []
    for i, r in enumerate(group.rows, 1):
        if r.status != "ok" or r.reason:
            out.append(f"{label(i)} {r.cell}: {r.status}" + (f": {r.reason}" if r.reason else ""))
    return out


def reference_notes(group: Group) -> list[str]:
    """Why some rows of a table have no ratio although their matrix names a reference cell."""
    out = []
    missing = sorted(
        {
            (r.matrix, r.n_gpus, r.backend, r.reference_cell, r.reference_matrix or "")
            for r in group.rows
            if r.reference_cell and r.reference_id is None
        }
    )
    for matrix, n, backend, ref, elsewhere in missing:
        out.append(
            f"matrix {matrix} ({n} GPU{'s' if n != 1 else ''}, {backend}) names the reference cell {ref}"
            + (f" of matrix {elsewhere}" if elsewhere else "")
            + ", which is not among these results: no ratios"
        )
    refs = {r.key: r for r in group.rows}
    elsewhere_found = sorted(
        {(r.matrix, r.reference_cell, r.reference_matrix) for r in group.rows if r.reference_matrix and r.reference_id}
    )
    for matrix, ref_cell, ref_matrix in elsewhere_found:
        out.append(
            f"matrix {matrix} is read against {ref_cell} of matrix {ref_matrix} (its reference_matrix); "
            "objectives compared by the verl settings"
        )
    for i, r in enumerate(group.rows, 1):
        ref = refs.get(r.reference_key) if r.reference_id and r.reference_key else None
        if r.objective_differences and ref is not None:
            out.append(f"{label(i)} {r.cell} {note(*row_objective_views(r, ref), r.objective_differences)}")
        if r.stack_differences and ref is not None:
            out.append(f"{label(i)} {r.cell} {stack_note(r.stack_differences)}")
        if r.is_reference and not r.fits:
            out.append(
                f"{label(i)} {r.cell} is the reference cell of matrix {r.matrix} and has status {r.status}: no ratios"
            )
    return out


def _memory(measured: float | None, predicted: float | None) -> str:
    # predicted beside measured, so the memory model's error on the cells that matter is visible at a glance
    return num(measured) + (f" (pred {num(predicted)})" if predicted is not None else "")


def best_table(bests: Sequence[Best]) -> Table:
    matrices = len({b.matrix for b in bests}) > 1
    # reference and host columns only where some line has something to put in them
    refs = any(b.reference for b in bests)
    shown = [r for b in bests for r in (b.fastest, b.reference) if r]
    host = any(r.host_peak_memory_gb is not None or r.predicted_host_memory_gb is not None for r in shown)
    headers = ["GPU", "model", "GPUs", "backend"] + ["matrix"] * matrices
    numeric = [False, False, True, False] + [False] * matrices
    if refs:
        headers += ["reference cell", "ref tokens/s/GPU", "ref NVML peak (GiB)"] + ["ref host peak (GiB)"] * host
        numeric += [False, True, True] + [True] * host
    headers += ["fastest cell that fits", "tokens/s/GPU"] + ["vs ref"] * refs + ["NVML peak (GiB)"]
    headers += ["host peak (GiB)"] * host
    numeric += [False, True] + [True] * refs + [True] + [True] * host
    other = any(b.fastest_other_objective for b in bests)
    if other:
        headers += ["faster cell, other objective", "other-objective tokens/s/GPU", "other-objective vs ref"]
        numeric += [False, True, True]
    headers += ["most accurate cell", "GSM8K %"]
    numeric += [False, False]
    rows = []
    for b in bests:
        f, a, ref = b.fastest, b.most_accurate, b.reference
        cells = [b.gpu, b.model, str(b.n_gpus), b.backend] + [b.matrix] * matrices
        if refs:
            cells += [
                ref.cell if ref else DASH,
                (num(ref.throughput) if ref.fits else ref.status) if ref else DASH,
                _memory(ref.peak_memory_gb, ref.predicted_memory_gb) if ref else DASH,
            ]
            cells += [_memory(ref.host_peak_memory_gb, ref.predicted_host_memory_gb) if ref else DASH] * host
        cells += [f.cell if f else DASH, num(f.throughput) if f else DASH]
        if refs:
            same = f is not None and ref is not None and f.id == ref.id
            text = ratio_text(b.speedup)
            cells += ["x1.00 (ref)" if same and b.speedup is not None else marked(text, f) if text and f else DASH]
        cells += [_memory(f.peak_memory_gb, f.predicted_memory_gb) if f else DASH]
        cells += [_memory(f.host_peak_memory_gb, f.predicted_host_memory_gb) if f else DASH] * host
        if other:
            o = b.fastest_other_objective
            cells += [
                f"{o.cell} ({', '.join(o.objective_differences)})" if o else DASH,
                num(o.throughput) if o else DASH,
                marked(t, o, objective=False) if o and (t := ratio_text(b.other_objective_speedup)) else DASH,
            ]
        cells += [a.cell if a else DASH, accuracy(a) if a else DASH]
        rows.append(cells)
    return Table(headers, rows, numeric)


def backend_table(pairs: Sequence[BackendPair]) -> Table:
    headers = [
        "GPU",
        "model",
        "GPUs",
        "cell",
        "FSDP tokens/s/GPU",
        "Megatron tokens/s/GPU",
        "Megatron / FSDP",
        "FSDP step (s)",
        "Megatron step (s)",
        "FSDP NVML peak",
        "Megatron NVML peak",
        "status (FSDP, Megatron)",
    ]
    out = []
    for p in pairs:
        f, m = p.fsdp, p.megatron
        out.append(
            [
                p.gpu,
                p.model,
                str(p.n_gpus),
                p.cell,
                num(f.throughput),
                num(m.throughput),
                f"×{p.ratio:.2f}" if p.ratio is not None else DASH,
                num(f.step_time),
                num(m.step_time),
                num(f.peak_memory_gb),
                num(m.peak_memory_gb),
                f"{f.status}, {m.status}",
            ]
        )
    return Table(headers, out, [False, False, True, False, True, True, True, True, True, True, True, False])


def cross_table(gens: Sequence[str], rows: Sequence[CrossRow]) -> Table:
    matrices = len({m for c in rows for m in c.matrices}) > 1
    headers = ["model", "GPUs", "backend", "cell"] + (["matrices"] if matrices else [])
    headers += [f"{g} tokens/s/GPU (ratio)" for g in gens]
    out = []
    for c in rows:
        cells = [c.model, str(c.n_gpus), c.backend, c.cell] + ([", ".join(c.matrices)] if matrices else [])
        for g in gens:
            r = c.by_gpu.get(g)
            if r is None:
                cells.append(DASH)
            elif r.throughput is None:
                cells.append(r.status)
            else:
                ratio = c.ratio(g) if g != c.reference else None
                cells.append(num(r.throughput) + (f" (×{ratio:.2f})" if ratio is not None else ""))
        out.append(cells)
    return Table(headers, out, [False, True, False, False] + [False] * matrices + [True] * len(gens))


def startup_table(group: Group) -> Table | None:
    """Where each cell's start-up went (seconds), None when no row recorded milestones."""
    rows = [(i, r) for i, r in enumerate(group.rows, 1) if r.startup]
    if not rows:
        return None
    names = [n for n in STARTUP_LABELS if any(n in r.startup for _, r in rows)]
    matrix = several_matrices(group.rows)
    headers = [
        "#",
        "cell",
        *(["matrix"] if matrix else []),
        "to end of step 1 (s)",
        *(STARTUP_LABELS[n] for n in names),
    ]
    out = [
        [label(i), r.cell, *([r.matrix] if matrix else []), num(r.startup_s), *(num(r.startup.get(n)) for n in names)]
        for i, r in rows
    ]
    return Table(headers, out, [False, False, *([False] if matrix else []), True, *(True for _ in names)])


BACKEND_NOTE = (
    "Same GPU generation, model, GPU count and axes on both backends (Megatron TP = rollout TP); "
    "median tokens/s/GPU, median step time, NVML peak in GiB."
)

STARTUP_NOTE = (
    "Start-up, seconds: each column ends at a milestone of the cell's log (verl's, Ray's and vLLM's own "
    "lines) and starts at the previous one seen; 'vLLM start' is vLLM's processes starting up to "
    "its weights being loaded. Median over runs."
)


def provenance_table(rows: Sequence[ReportRow]) -> Table:
    summary = provenance_summary(rows)
    out = []
    for name, values in summary.items():
        out.append([name, "; ".join(f"{v} ({n} run{'s' if n != 1 else ''})" for v, n in values.items())])
    return Table(["provenance", "value (runs)"], out, [False, False])


BEST_NOTE = (
    "One line per GPU generation, GPU count, model, backend and matrix (cells are ranked only against "
    "cells they may be compared with). Fastest: highest median tokens/s/GPU among cells that ran without "
    "OOM or failure; where the report holds the matrix's reference cell, only among cells with the reference's "
    "objective (the same loss, update schedule, samples and trained parameters: suite/gate/objective.py), and "
    "a faster cell with another objective (e.g. no KL loss) is shown apart. Most accurate: highest GSM8K pass@1."
)

REFERENCE_NOTE = (
    "vs ref: ratio to the matrix's reference cell ([matrix] reference) of the same generation, GPU "
    "count, model, backend and matrix, both cells ok; in the best cells, how much faster the fastest "
    "cell is than the reference. Memory as measured, with the planner's prediction (pred) where "
    "there is one; host peak: the cell's process tree RSS."
)


def median_ci_note() -> str:
    return (
        "tokens/s/GPU: median over measured steps (warm-up excluded) with a distribution-free "
        f"order-statistic 95 % interval of the median (needs >= {MIN_N_MEDIAN_CI} steps; fewer show n). "
        "Step time: median seconds per step. Response length: mean tokens. NVML peak: max device memory "
        "used on the worst GPU (vLLM included); torch peak: max_memory_allocated. "
        "GSM8K: pass@1 under verl's strict scorer, 95 % Wilson interval. Memory in GiB."
    )


HISTORY_NOTE = (
    "Each cell's series in the baseline store, oldest first: its promotions (the runs that became the baseline) "
    "and the later runs `grpo-suite gate --record` compared with it. Throughput is each entry's window "
    "throughput (measured tokens / measured seconds / GPUs, median over its runs); verdicts are what the gate "
    "printed (suspicious: a first violation; regressed: the Nth in a row). `grpo-suite baseline history CELL` "
    "prints the same series."
)


def history_table(points: Sequence[Point]) -> Table:
    rows = [
        [
            p.at,
            p.kind + (" (current)" if p.current else ""),
            str(p.runs),
            str(p.steps),
            num(p.throughput),
            num(p.peak_memory_gb),
            num(p.host_peak_memory_gb),
            f"{p.probs_diff_mean:.3g}" if p.probs_diff_mean is not None else DASH,
            ", ".join(f"{m} {v}" for m, v in sorted(p.verdicts.items()) if v != "unchanged") or DASH,
        ]
        for p in points
    ]
    headers = [
        "when",
        "entry",
        "runs",
        "steps",
        "tokens/s/GPU (window)",
        "NVML peak (GiB)",
        "host peak (GiB)",
        "probs diff",
        "verdicts",
    ]
    return Table(headers, rows, [False, False, True, True, True, True, True, True, False])


PLANNED_NOTE = (
    "Matrices the report holds no result of, as the memory planner sees them before any GPU time: predictions, "
    "not measurements (`grpo-suite plan MATRIX --predict-memory` lists every cell). Cells: how many plan ok and "
    "why the others do not (predicted-oom: the GPU; predicted-host-oom: host RAM over Ray's 0.95 threshold). "
    "Reference: the matrix's [matrix] reference cell, its predicted GPU and host peaks and, where it cannot run, "
    "why, or why the generation's pinned image cannot run the cells as planned (its torch lacks a setting they "
    "use). Lightest cell that fits: the ok cell with the smallest predicted GPU peak. Pred tokens/s/GPU: the speed "
    "planner's (`grpo-suite speed predict MATRIX`, fitted on the committed runs: docs/speed.md); fastest predicted "
    "cell that fits: the ok cell it puts first, against the reference's prediction, and its profile's predicted "
    "wall time in seconds."
)

# a planner reason keeps its verdict and largest terms; the rest is in `grpo-suite plan`
_REASON_CHARS = 150


def short_reason(reason: str | None) -> str:
    if not reason:
        return DASH
    head = reason.split(" [", 1)[0]
    return head if len(head) <= _REASON_CHARS else head[: _REASON_CHARS - 1].rstrip() + "…"


def _gib(x: float | None, limit: float | None = None) -> str:
    if x is None:
        return DASH
    return num(x) + (f" / {num(limit)}" if limit is not None else "")


def _planned_ref(p: PlannedMatrix) -> list[str]:
    r: PlannedCell | None = p.reference
    if r is None:
        return [DASH] * 4 + ["; ".join(p.image_gaps) or DASH]
    where = f" (in {p.reference_matrix})" if p.reference_matrix else ""
    why = [*([] if r.status == "ok" else [short_reason(r.reason)]), *p.image_gaps]
    reason = "; ".join(why) or DASH
    return [r.id + where, r.status, _gib(r.gpu_gib), _gib(r.host_gib, p.host_memory_gb), reason]


def planned_table(planned: Sequence[PlannedMatrix]) -> Table:
    headers = ["GPU", "model", "GPUs", "backend", "matrix", "cells"]
    headers += ["reference cell", "ref status", "ref pred GPU (GiB)", "ref pred host (GiB / host)", "why not"]
    headers += ["lightest cell that fits", "pred GPU (GiB)", "pred host (GiB)"]
    headers += ["ref pred tokens/s/GPU", "fastest predicted cell that fits", "pred tokens/s/GPU", "pred vs ref"]
    headers += ["pred run s"]
    numeric = [False, False, True, False, False, False, False, False, True, True, False, False, True, True]
    numeric += [True, False, True, True, True]
    rows = []
    for p in planned:
        counts = ", ".join(f"{n} {s}" for s, n in p.statuses)
        light, fast, ref = p.lightest, p.fastest, p.reference_speed
        rows.append(
            [p.gpu, p.model, str(p.n_gpus), p.backend, p.matrix, f"{counts} (of {p.n_cells})"]
            + _planned_ref(p)
            + ([light.id, _gib(light.gpu_gib), _gib(light.host_gib)] if light else [DASH] * 3)
            + [f"{ref.tokens_per_s_per_gpu:.0f}" if ref else DASH]
            + (
                [
                    fast.id,
                    f"{fast.tokens_per_s_per_gpu:.0f}",
                    f"x{fast.vs_reference:.2f}" if fast.vs_reference else DASH,
                    f"{fast.run_s:.0f}",
                ]
                if fast
                else [DASH] * 4
            )
        )
    return Table(headers, rows, numeric)


SPEED_NOTE = (
    "The speed planner (`grpo-suite speed`, docs/speed.md) against every measured FSDP run read here, the "
    "store's and the evidence folders': each run's seconds per step predicted by constants fitted on every other "
    "cell, so each row is out of sample. Measured: the median over the run's measured steps."
)


def speed_table(checks: SpeedChecks) -> Table:
    headers = ["GPU", "model", "run", "flash-attn", "steps", "s/step", "predicted", "error"]
    headers += ["tokens/s/GPU", "predicted tokens/s/GPU"]
    numeric = [False, False, False, False, True, True, True, True, True, True]
    rows = [
        [
            c.gpu,
            c.model,
            f"{c.matrix}/{c.cell}",
            "yes" if c.flash_attn else "no",
            str(c.steps),
            f"{c.measured_s:.1f}",
            f"{c.predicted_s:.1f}",
            f"{c.error:+.1%}",
            f"{c.measured_tps:.0f}",
            f"{c.predicted_tps:.0f}",
        ]
        for c in checks.rows
    ]
    return Table(headers, rows, numeric)


EVIDENCE_NOTE = (
    "Runs measured on a GPU whose cell has no baseline: the raw files kept beside the store (the folder names the "
    "date and host; each has a README). Measurements, never pooled with the baselines above nor gated against. "
    "Tokens/s/GPU and s/step: medians over the run's measured steps. Why not a baseline: what `grpo-suite "
    "baseline promote` would refuse it for (its status, the rollout/actor log-prob sentinel, fewer measured steps "
    "than the gate needs); none: it meets the gate's bar and was not promoted."
)


def _measured(measured: float | None, predicted: float | None) -> str:
    # nothing measured, nothing to set a prediction beside: a run cut off before its first sample
    return DASH if measured is None else _memory(measured, predicted)


def evidence_table(runs: Sequence[EvidenceRun]) -> Table:
    headers = ["GPU", "model", "GPUs", "matrix", "cell", "status", "measured steps", "tokens/s/GPU", "s/step"]
    headers += ["NVML peak (GiB)", "host peak (GiB)", "why not a baseline", "evidence"]
    numeric = [False, False, True, False, False, False, True, True, True, True, True, False, False]
    rows = [
        [
            e.gpu,
            e.model,
            str(e.n_gpus),
            e.matrix,
            e.id,
            e.status,
            str(e.measured_steps),
            num(e.tokens_per_s),
            num(e.s_per_step),
            _measured(e.nvml_gib, e.predicted_gib),
            _measured(e.host_gib, e.predicted_host_gib),
            "; ".join(short_reason(w) for w in e.why_not) or "none",
            e.folder,
        ]
        for e in runs
    ]
    return Table(headers, rows, numeric)


def evidence_skipped_note(skipped: Sequence[str]) -> str:
    return (
        f"{len(skipped)} evidence file(s) left out: today's result reader refuses them (a result is never edited "
        "to agree): " + "; ".join(short_reason(s) for s in skipped)
    )
