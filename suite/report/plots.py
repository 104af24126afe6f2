"""The report's four plots per table, as inline SVG strings (see svg.py for why not matplotlib).

Rows are numbered as in the table (#1, #2, ...); every mark carries a hover tooltip (`<title>`) with the
cell id and its numbers, so a reader can identify points without JavaScript.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from suite.gate.history import Point
from suite.report.svg import Chart, Scale, covering_ticks, text_width
from suite.report.table import PHASE_LABELS, ReportRow, pareto_front

MAX_LINES = 12  # per-step plot: more lines than this is unreadable; the fastest cells are kept
MAX_POINT_LABELS = 30
WIDTH = 760.0
MAX_LABEL = 44  # characters of a cell name on a categorical axis

PHASE_COLOURS = {"generation": "#4C72B0", "ref_logprob": "#55A868", "actor_update": "#C44E52", "other": "#BBBBBB"}
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#ad494a",
)
FRONT = "#D55E00"
OTHER = "#8DA0CB"
OOM = "#B2182B"


def _name(i: int, row: ReportRow, limit: int = MAX_LABEL) -> str:
    s = f"#{i} {row.cell}"
    return s if len(s) <= limit else s[: limit - 1] + "…"


def throughput_vs_memory(rows: Sequence[ReportRow], title: str) -> str | None:
    indexed = list(enumerate(rows, 1))
    pts = [(i, r) for i, r in indexed if r.fits and r.throughput is not None and r.peak_memory_gb is not None]
    ooms = [(i, r) for i, r in indexed if r.status == "oom"]
    if not pts and not ooms:
        return None
    limit = next((r.gpu_memory_gb for _, r in indexed if r.gpu_memory_gb), None)
    front = pareto_front([r for _, r in pts])
    front_ids = {r.key for r in front}
    xmax = max([r.peak_memory_gb for _, r in pts] + ([limit] if limit else []) + [1.0])  # type: ignore[arg-type]
    ymax = max([r.throughput for _, r in pts] + [1.0])  # type: ignore[arg-type]
    xt, yt = covering_ticks(0.0, xmax), covering_ticks(0.0, ymax * 1.05)
    c = Chart(WIDTH, 430, left=70, right=20, top=30, bottom=72, title=title)
    xs, ys = Scale(xt[0], xt[-1], c.x0, c.x1), Scale(yt[0], yt[-1], c.y0, c.y1)
    c.frame(xs, ys, xt, yt, "peak memory, worst GPU (NVML, GiB)", "throughput (tokens/s/GPU, median)")
    if limit:
        x = xs(limit)
        c.line([(x, c.y1), (x, c.y0)], colour="#333", width=1, dash="5,4")
        c.text(
            x - 5, (c.y0 + c.y1) / 2, f"GPU memory {limit:g} GiB", size=12, anchor="middle", rotate=-90, colour="#333"
        )
    if len(front) > 1:  # attainable frontier: best throughput for a memory budget
        steps: list[tuple[float, float]] = []
        for a, b in itertools.pairwise(front):
            steps += [(xs(a.peak_memory_gb), ys(a.throughput)), (xs(b.peak_memory_gb), ys(a.throughput))]  # type: ignore[arg-type]
        steps.append((xs(front[-1].peak_memory_gb), ys(front[-1].throughput)))  # type: ignore[arg-type]
        c.line(steps, colour=FRONT, width=1.5)
    label_all = len(pts) <= MAX_POINT_LABELS
    for i, r in sorted(pts, key=lambda t: t[1].key in front_ids):  # front drawn last, on top
        on = r.key in front_ids
        x, y = xs(r.peak_memory_gb), ys(r.throughput)  # type: ignore[arg-type]
        tip = f"#{i} {r.id}: {r.throughput:.0f} tokens/s/GPU, {r.peak_memory_gb:.1f} GiB"
        c.marker(x, y, colour=FRONT if on else OTHER, r=5 if on else 4, tip=tip)
        if label_all or on:
            c.text(x + 6, y - 6, f"#{i}", size=10, colour="#333")
    if ooms:
        x = xs(limit if limit else xmax)
        for i, r in ooms:
            c.marker(x, c.y0, kind="x", colour=OOM, r=5, tip=f"#{i} {r.id}: OOM")
        names = ", ".join(f"#{i}" for i, _ in ooms)
        label = f"OOM: {names}" if len(names) < 40 else f"OOM: {len(ooms)} cells"
        c.text(x - 8, c.y0 - 8, label, size=10, anchor="end", colour=OOM)
    legend = [("dot", OTHER, "cell"), ("line", FRONT, "Pareto front (nothing is both faster and smaller)")]
    if ooms:
        legend.append(("x", OOM, "OOM, drawn at the memory limit"))
    c.legend(legend, c.x0, c.height - 14)
    return c.render()


def phase_bars(rows: Sequence[ReportRow], title: str) -> str | None:
    items = [(i, r) for i, r in enumerate(rows, 1) if r.phases]
    if not items:
        return None
    labels = [_name(i, r) for i, r in items]
    band = 20.0
    left = 16 + max(text_width(s, 12) for s in labels)
    c = Chart(WIDTH, 30 + band * len(items) + 78, left=left, right=24, top=30, bottom=78, title=title)
    xmax = max(sum(r.phases.values()) for _, r in items)
    xt = covering_ticks(0.0, xmax)
    xs = Scale(xt[0], xt[-1], c.x0, c.x1)
    c.frame(xs, None, xt, [], "mean time per measured step (s)", "")
    for k, ((_, r), label) in enumerate(zip(items, labels, strict=True)):
        y = c.y1 + k * band
        c.text(c.x0 - 6, y + band / 2, label, size=12, anchor="end", baseline="middle")
        x = 0.0
        for phase, name in PHASE_LABELS.items():
            w = r.phases.get(phase, 0.0)
            c.rect(
                xs(x), y + 3, xs(x + w) - xs(x), band - 6, fill=PHASE_COLOURS[phase], tip=f"{r.cell}: {name} {w:.1f} s"
            )
            x += w
    c.legend([("box", PHASE_COLOURS[p], n) for p, n in PHASE_LABELS.items()], c.x0, c.height - 14)
    return c.render()


def throughput_per_step(rows: Sequence[ReportRow], title: str) -> tuple[str | None, int]:
    """Returns the SVG and how many cells were left out to keep it readable."""
    items = [(i, r) for i, r in enumerate(rows, 1) if any(r.per_step) and r.throughput is not None]
    if not items:
        return None, 0
    kept = sorted(items, key=lambda t: (-t[1].throughput, t[1].id))[:MAX_LINES]  # type: ignore[operator]
    kept.sort(key=lambda t: t[0])
    names = [_name(i, r, 34) + (f" ({len(r.per_step)} runs)" if len(r.per_step) > 1 else "") for i, r in kept]
    right = 40 + max(text_width(s, 12) for s in [*names, "warm-up (excluded)"])
    c = Chart(WIDTH, 400, left=70, right=right, top=30, bottom=50, title=title)
    steps = [s for _, r in kept for run in r.per_step for s, _ in run]
    vals = [v for _, r in kept for run in r.per_step for _, v in run]
    x_lo, x_hi = min(steps) - 0.5, max(steps) + 0.5
    yt = covering_ticks(0.0, max(vals) * 1.05)
    xt = [t for t in covering_ticks(x_lo, x_hi, 8) if t == int(t) and x_lo <= t <= x_hi]
    xs, ys = Scale(x_lo, x_hi, c.x0, c.x1), Scale(yt[0], yt[-1], c.y0, c.y1)
    warmup = max(r.warmup_steps for _, r in kept)
    if warmup:
        c.rect(xs(x_lo), c.y1, xs(min(warmup + 0.5, x_hi)) - xs(x_lo), c.y0 - c.y1, fill="#999", opacity=0.2)
    c.frame(xs, ys, xt, yt, "training step", "throughput (tokens/s/GPU)")
    legend = [("band", "#999", "warm-up (excluded)")] if warmup else []
    for n, ((i, r), name) in enumerate(zip(kept, names, strict=True)):
        colour = PALETTE[n % len(PALETTE)]
        for k, run in enumerate(r.per_step):
            if not run:
                continue
            c.line([(xs(s), ys(v)) for s, v in run], colour=colour, width=1.5, opacity=1.0 if k == 0 else 0.6)
            for s, v in run:
                c.marker(xs(s), ys(v), colour=colour, r=2.2, tip=f"#{i} {r.id} step {s}: {v:.0f} tokens/s/GPU")
        legend.append(("line", colour, name))
    c.legend(legend, c.x1 + 14, c.y1 + 8, vertical=True)
    return c.render(), len(items) - len(kept)


def accuracy_plot(rows: Sequence[ReportRow], title: str) -> str | None:
    items = [(i, r) for i, r in enumerate(rows, 1) if r.accuracy is not None]
    if not items:
        return None
    labels = [_name(i, r) for i, r in items]
    band = 20.0
    left = 16 + max(text_width(s, 12) for s in labels)
    c = Chart(WIDTH, 30 + band * len(items) + 78, left=left, right=24, top=30, bottom=78, title=title)
    lo = [100 * r.accuracy_lo for _, r in items]  # type: ignore[operator]
    hi = [100 * r.accuracy_hi for _, r in items]  # type: ignore[operator]
    before = [100 * r.accuracy_initial for _, r in items if r.accuracy_initial is not None]
    x_lo, x_hi = min(lo + before), max(hi + before)
    pad = max(1.0, (x_hi - x_lo) * 0.05)
    xt = covering_ticks(max(0.0, x_lo - pad), min(100.0, x_hi + pad))
    xs = Scale(xt[0], xt[-1], c.x0, c.x1)
    c.frame(xs, None, xt, [], "GSM8K test accuracy, pass@1 (%)", "")
    for k, ((_, r), label, a, b) in enumerate(zip(items, labels, lo, hi, strict=True)):
        y = c.y1 + k * band + band / 2
        c.text(c.x0 - 6, y, label, size=12, anchor="end", baseline="middle")
        c.line([(xs(a), y), (xs(b), y)], colour="#4C72B0", width=1.5)
        c.line([(xs(a), y - 4), (xs(a), y + 4)], colour="#4C72B0", width=1.5)
        c.line([(xs(b), y - 4), (xs(b), y + 4)], colour="#4C72B0", width=1.5)
        if r.accuracy_initial is not None:
            c.marker(
                xs(100 * r.accuracy_initial),
                y,
                colour="#555",
                r=3.5,
                hollow=True,
                tip=f"{r.cell}: before training {100 * r.accuracy_initial:.1f} %",
            )
        c.marker(
            xs(100 * r.accuracy),
            y,
            colour="#4C72B0",
            r=4,  # type: ignore[operator]
            tip=f"{r.cell}: {100 * r.accuracy:.1f} % [{a:.1f}, {b:.1f}] ({r.accuracy_correct}/{r.accuracy_total})",
        )  # type: ignore[operator]
    legend = [("dot", "#4C72B0", "after training, 95 % Wilson interval")]
    if before:
        legend.append(("hollow", "#555", "before training"))
    c.legend(legend, c.x0, c.height - 14)
    return c.render()


HISTORY_COLOURS = {"ok": "#2ca02c", "suspicious": "#E69F00", "regressed": "#B2182B"}
BASELINE_COLOUR = "#4C72B0"


def _gated_state(verdicts: dict[str, str]) -> str:
    if any(v in ("regressed", "failed") for v in verdicts.values()):
        return "regressed"
    return "suspicious" if "suspicious" in verdicts.values() else "ok"


def history_plot(points: Sequence[Point], title: str) -> str | None:
    """A cell's series in the store: each promotion (hollow, and the baseline level it set, dashed until the
    next) and each recorded gated run (filled: green passed, amber suspicious, red regressed or failed), in
    time order; y is the window throughput (tokens/s/GPU, median over the entry's runs)."""
    pts = [(i, p) for i, p in enumerate(points) if p.throughput is not None]
    if len(pts) < 2:
        return None
    c = Chart(WIDTH, 340, left=70, right=20, top=30, bottom=78, title=title)
    vals = [p.throughput for _, p in pts]
    lo, hi = min(vals), max(vals)  # type: ignore[type-var]
    pad = max((hi - lo) * 0.15, hi * 0.02)  # type: ignore[operator]
    yt = covering_ticks(max(0.0, lo - pad), hi + pad)  # type: ignore[operator]
    xs, ys = Scale(-0.5, len(points) - 0.5, c.x0, c.x1), Scale(yt[0], yt[-1], c.y0, c.y1)
    c.frame(xs, ys, [], yt, "promotions and recorded gate runs, oldest first", "tokens/s/GPU (window)")
    every = max(1, len(points) // 8)
    for i, p in enumerate(points):
        if i % every == 0:
            c.text(xs(i), c.y0 + 16, p.at[5:16].replace("T", " "), anchor="middle", size=10, colour="#444")
    promos = [i for i, p in pts if p.kind == "promoted"]
    for k, i in enumerate(promos):
        end = promos[k + 1] if k + 1 < len(promos) else len(points) - 1
        y = ys(points[i].throughput)  # type: ignore[arg-type]
        c.line([(xs(i), y), (xs(end) + 0.4 * (xs(1) - xs(0)), y)], colour=BASELINE_COLOUR, width=1, dash="5,4")
    c.line([(xs(i), ys(p.throughput)) for i, p in pts], colour="#999", width=1)  # type: ignore[arg-type]
    for i, p in pts:
        x, y = xs(i), ys(p.throughput)  # type: ignore[arg-type]
        peak = f", peak {p.peak_memory_gb:.1f} GiB" if p.peak_memory_gb is not None else ""
        drift = f", probs diff {p.probs_diff_mean:.3g}" if p.probs_diff_mean is not None else ""
        if p.kind == "promoted":
            tip = f"{p.at}: promoted ({p.runs} runs){' — current baseline' if p.current else ''}: {p.throughput:.0f} tokens/s/GPU{peak}{drift}"
            c.marker(x, y, colour=BASELINE_COLOUR, r=5, hollow=True, tip=tip)
        else:
            state = _gated_state(p.verdicts)
            bad = ", ".join(f"{m} {v}" for m, v in sorted(p.verdicts.items()) if v != "unchanged") or "no change"
            tip = f"{p.at}: gated ({p.runs} runs): {p.throughput:.0f} tokens/s/GPU{peak}{drift}; {bad}"
            c.marker(x, y, colour=HISTORY_COLOURS[state], r=4.5, tip=tip)
    c.legend(
        [
            ("hollow", BASELINE_COLOUR, "promoted baseline"),
            ("dot", HISTORY_COLOURS["ok"], "gated: passed"),
            ("dot", HISTORY_COLOURS["suspicious"], "suspicious"),
            ("dot", HISTORY_COLOURS["regressed"], "regressed / failed"),
        ],
        c.x0,
        c.height - 14,
    )
    return c.render()
