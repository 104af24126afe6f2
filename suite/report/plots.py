"""Report plots as inline SVG strings (matplotlib, no pyplot state).

Why matplotlib -> SVG: the HTML report must be one static file that opens without network. SVG text is
small (tens of kB per plot), needs no JavaScript, scales, and keeps text selectable. Plotly would embed
~3.5 MB of JavaScript per report. Output is deterministic: fixed hash salt per figure (so element ids are
stable and do not collide between the figures of one page) and no date/creator metadata.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from suite.report.escape import plot_label
from suite.report.table import PHASE_LABELS, Row, pareto_front

MAX_LINES = 12  # per-step plot: more lines than this is unreadable; the fastest cells are kept
MAX_POINT_LABELS = 30

_RC = {
    "svg.fonttype": "none",  # text stays text: smaller and selectable
    "font.size": 9,
    "font.family": ["DejaVu Sans", "sans-serif"],
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
}
PHASE_COLOURS = {
    "generation": "#4C72B0",
    "ref_logprob": "#55A868",
    "actor_update": "#C44E52",
    "other": "#BBBBBB",
}


def _svg(fig: Figure, salt: str) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt}):
        FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    # inline SVG in HTML: drop the XML prolog and doctype
    return text[text.index("<svg") :]


def _name(i: int, row: Row, limit: int = 40) -> str:
    return plot_label(f"#{i} {row.cell}", limit)


def throughput_vs_memory(rows: Sequence[Row], salt: str, title: str) -> str | None:
    indexed = list(enumerate(rows, 1))
    pts = [(i, r) for i, r in indexed if r.fits and r.throughput is not None and r.peak_memory_gb is not None]
    ooms = [(i, r) for i, r in indexed if r.status == "oom"]
    if not pts and not ooms:
        return None
    limit = next((r.gpu_memory_gb for _, r in indexed if r.gpu_memory_gb), None)
    front = {r.id for r in pareto_front([r for _, r in pts])}
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(7.5, 4.2), layout="constrained")
        ax = fig.add_subplot()
        others = [(i, r) for i, r in pts if r.id not in front]
        on = sorted(((i, r) for i, r in pts if r.id in front), key=lambda t: t[1].peak_memory_gb)
        if others:
            ax.scatter(
                [r.peak_memory_gb for _, r in others],
                [r.throughput for _, r in others],
                s=28,
                color="#8DA0CB",
                label="cell",
                zorder=3,
            )
        if on:
            ax.plot(
                [r.peak_memory_gb for _, r in on],
                [r.throughput for _, r in on],
                "-o",
                color="#D55E00",
                ms=6,
                lw=1.2,
                label="Pareto front (faster and/or smaller)",
                zorder=4,
                drawstyle="steps-post",
            )
        label_all = len(pts) <= MAX_POINT_LABELS
        for i, r in pts:
            if label_all or r.id in front:
                ax.annotate(
                    f"#{i}",
                    (r.peak_memory_gb, r.throughput),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                )
        if limit:
            ax.axvline(limit, color="#333333", ls="--", lw=1)
            ax.annotate(
                f"GPU memory {limit:g} GiB",
                (limit, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(-4, -4),
                textcoords="offset points",
                ha="right",
                va="top",
                fontsize=8,
            )
        if ooms:
            x = limit if limit else max((r.peak_memory_gb or 0.0) for _, r in indexed)
            ax.scatter(
                [x] * len(ooms),
                [0.0] * len(ooms),
                marker="X",
                s=60,
                color="#B2182B",
                label="OOM (drawn at the memory limit)",
                zorder=5,
                clip_on=False,
            )
            ax.annotate(
                plot_label("OOM: " + ", ".join(f"#{i}" for i, _ in ooms), 50),
                (x, 0.0),
                xytext=(-6, 8),
                textcoords="offset points",
                ha="right",
                fontsize=8,
                color="#B2182B",
            )
        ax.set_xlabel("peak memory, worst GPU (NVML, GiB)")
        ax.set_ylabel("throughput (tokens/s/GPU, median)")
        ax.set_ylim(bottom=0)
        ax.set_xlim(left=0, right=(limit * 1.05) if limit else None)
        ax.set_title(plot_label(title, 90))
        ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
        return _svg(fig, salt + "/mem")


def phase_bars(rows: Sequence[Row], salt: str, title: str) -> str | None:
    items = [(i, r) for i, r in enumerate(rows, 1) if r.phases]
    if not items:
        return None
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(7.5, 1.2 + 0.28 * len(items)), layout="constrained")
        ax = fig.add_subplot()
        ys = list(range(len(items)))
        left = [0.0] * len(items)
        for phase, name in PHASE_LABELS.items():
            widths = [r.phases.get(phase, 0.0) for _, r in items]
            ax.barh(ys, widths, left=left, height=0.7, color=PHASE_COLOURS[phase], label=name)
            left = [a + b for a, b in zip(left, widths, strict=True)]
        ax.set_yticks(ys, [_name(i, r) for i, r in items])
        ax.invert_yaxis()
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("mean time per step (s), measured steps")
        ax.set_title(plot_label(title, 90))
        fig.legend(loc="outside lower center", ncols=4, fontsize=8, frameon=False)
        return _svg(fig, salt + "/phases")


def throughput_per_step(rows: Sequence[Row], salt: str, title: str) -> tuple[str | None, int]:
    """Returns the SVG and how many cells were left out to keep it readable."""
    items = [(i, r) for i, r in enumerate(rows, 1) if any(r.per_step) and r.throughput is not None]
    if not items:
        return None, 0
    kept = sorted(items, key=lambda t: (-t[1].throughput, t[1].id))[:MAX_LINES]  # type: ignore[operator]
    kept.sort(key=lambda t: t[0])
    warmup = max(r.warmup_steps for _, r in kept)
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(7.5, 4.0), layout="constrained")
        ax = fig.add_subplot()
        if warmup:
            ax.axvspan(0.5, warmup + 0.5, color="#999999", alpha=0.2, lw=0, label="warm-up (excluded)")
        cmap = matplotlib.colormaps["tab20"]
        for n, (i, r) in enumerate(kept):
            runs = [run for run in r.per_step if run]
            for k, run in enumerate(runs):  # runs of one cell share a colour; one legend entry
                xs, ys = zip(*run, strict=True)
                ax.plot(
                    xs,
                    ys,
                    "-o",
                    ms=2.5,
                    lw=1.2,
                    color=cmap(n % 20),
                    alpha=1.0 if k == 0 else 0.6,
                    label=_name(i, r, 32) + (f" ({len(runs)} runs)" if len(runs) > 1 else "")
                    if k == 0
                    else None,
                )
        ax.set_xlabel("training step")
        ax.set_ylabel("throughput (tokens/s/GPU)")
        ax.set_ylim(bottom=0)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(plot_label(title, 90))
        fig.legend(loc="outside right center", fontsize=7, frameon=False)
        return _svg(fig, salt + "/steps"), len(items) - len(kept)


def accuracy_plot(rows: Sequence[Row], salt: str, title: str) -> str | None:
    items = [(i, r) for i, r in enumerate(rows, 1) if r.accuracy is not None]
    if not items:
        return None
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(7.5, 1.3 + 0.28 * len(items)), layout="constrained")
        ax = fig.add_subplot()
        ys = list(range(len(items)))
        acc = [100 * r.accuracy for _, r in items]  # type: ignore[operator]
        lo = [a - 100 * r.accuracy_lo for a, (_, r) in zip(acc, items, strict=True)]  # type: ignore[operator]
        hi = [100 * r.accuracy_hi - a for a, (_, r) in zip(acc, items, strict=True)]  # type: ignore[operator]
        ax.errorbar(
            acc,
            ys,
            xerr=[lo, hi],
            fmt="o",
            color="#4C72B0",
            capsize=3,
            ms=4,
            label="after training (95 % Wilson interval)",
        )
        before = [
            (y, 100 * r.accuracy_initial)
            for y, (_, r) in zip(ys, items, strict=True)
            if r.accuracy_initial is not None
        ]
        if before:
            ax.scatter(
                [b for _, b in before],
                [y for y, _ in before],
                marker="o",
                facecolors="none",
                edgecolors="#555555",
                s=24,
                label="before training",
                zorder=3,
            )
        ax.set_yticks(ys, [_name(i, r) for i, r in items])
        ax.invert_yaxis()
        ax.set_ylim(len(items) - 0.5, -0.5)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("GSM8K test accuracy, pass@1 (%)")
        ax.set_title(plot_label(title, 90))
        fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
        return _svg(fig, salt + "/acc")
