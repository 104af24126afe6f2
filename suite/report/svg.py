"""A minimal SVG chart kit: linear scales, nice ticks, axes, marks and legends as plain strings.

Hand-written rather than matplotlib because a report of 1,000 cells has ~80 plots: matplotlib needs
0.3-1 s per figure (text layout), this needs milliseconds, and its output is deterministic by
construction (no ids, dates or hash salts) and small. Every text goes through `html.escape`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

FONT = 12.0
CHAR_W = 0.56  # average glyph width / font size of a sans-serif font: enough to size margins


def text_width(s: str, size: float = FONT) -> float:
    return len(s) * size * CHAR_W


def f(v: float) -> str:
    """Coordinates at 0.1 px: short and stable output."""
    r = round(v, 1)
    return str(int(r)) if r == int(r) else f"{r:.1f}"


@dataclass(frozen=True)
class Scale:
    d0: float
    d1: float
    r0: float
    r1: float

    def __call__(self, v: float) -> float:
        span = self.d1 - self.d0 or 1.0
        return self.r0 + (v - self.d0) / span * (self.r1 - self.r0)


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * 0.999)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


def tick_label(v: float, ticks: Sequence[float]) -> str:
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else (1 if step % 1 else 0)
    return f"{v:,.{decimals}f}"


def covering_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """Nice ticks whose first is <= lo and last >= hi, so the axis ends on a labelled tick."""
    ticks = nice_ticks(lo, hi, n)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    if ticks[0] > lo + 1e-12:
        ticks.insert(0, round(ticks[0] - step, 10))
    if ticks[-1] < hi - 1e-12:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


@dataclass
class Chart:
    width: float
    height: float
    left: float
    right: float
    top: float
    bottom: float
    title: str
    parts: list[str] = field(default_factory=list)

    @property
    def x0(self) -> float:
        return self.left

    @property
    def x1(self) -> float:
        return self.width - self.right

    @property
    def y0(self) -> float:  # bottom of the plot area
        return self.height - self.bottom

    @property
    def y1(self) -> float:
        return self.top

    def add(self, element: str) -> None:
        self.parts.append(element)

    def text(
        self,
        x: float,
        y: float,
        s: str,
        *,
        size: float = FONT,
        anchor: str = "start",
        colour: str = "#222",
        weight: str = "normal",
        rotate: float = 0.0,
        baseline: str = "auto",
    ) -> None:
        rot = f' transform="rotate({f(rotate)} {f(x)} {f(y)})"' if rotate else ""
        bl = f' dominant-baseline="{baseline}"' if baseline != "auto" else ""
        wt = f' font-weight="{weight}"' if weight != "normal" else ""
        self.add(
            f'<text x="{f(x)}" y="{f(y)}" font-size="{f(size)}" text-anchor="{anchor}" fill="{colour}"'
            f"{wt}{bl}{rot}>{escape(s)}</text>"
        )

    def line(
        self,
        pts: Sequence[tuple[float, float]],
        *,
        colour: str,
        width: float = 1.5,
        dash: str | None = None,
        opacity: float = 1.0,
    ) -> None:
        d = " ".join(f"{f(x)},{f(y)}" for x, y in pts)
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        extra += f' stroke-opacity="{opacity}"' if opacity != 1.0 else ""
        self.add(f'<polyline points="{d}" fill="none" stroke="{colour}" stroke-width="{f(width)}"{extra}/>')

    def rect(
        self, x: float, y: float, w: float, h: float, *, fill: str, tip: str | None = None, opacity: float = 1.0
    ) -> None:
        op = f' fill-opacity="{opacity}"' if opacity != 1.0 else ""
        body = f"<title>{escape(tip)}</title>" if tip else ""
        end = f">{body}</rect>" if body else "/>"
        self.add(
            f'<rect x="{f(x)}" y="{f(y)}" width="{f(max(w, 0.0))}" height="{f(max(h, 0.0))}" fill="{fill}"{op}{end}'
        )

    def marker(
        self,
        x: float,
        y: float,
        *,
        kind: str = "circle",
        colour: str,
        r: float = 4.0,
        hollow: bool = False,
        tip: str | None = None,
    ) -> None:
        paint = f'fill="white" stroke="{colour}" stroke-width="1.5"' if hollow else f'fill="{colour}"'
        body = f"<title>{escape(tip)}</title>" if tip else ""
        if kind == "x":
            d = f"M{f(x - r)},{f(y - r)}L{f(x + r)},{f(y + r)}M{f(x - r)},{f(y + r)}L{f(x + r)},{f(y - r)}"
            self.add(f'<path d="{d}" stroke="{colour}" stroke-width="2.5" fill="none">{body}</path>')
        else:
            self.add(f'<circle cx="{f(x)}" cy="{f(y)}" r="{f(r)}" {paint}>{body}</circle>')

    def frame(
        self, xs: Scale, ys: Scale | None, xticks: Sequence[float], yticks: Sequence[float], xlabel: str, ylabel: str
    ) -> None:
        """Grid, axes, tick labels and axis titles. `ys` None: a categorical y axis (labels drawn by caller)."""
        for t in xticks:
            x = xs(t)
            self.line([(x, self.y1), (x, self.y0)], colour="#e3e3e3", width=1)
            self.text(x, self.y0 + 16, tick_label(t, xticks), anchor="middle", size=12, colour="#444")
        if ys is not None:
            for t in yticks:
                y = ys(t)
                self.line([(self.x0, y), (self.x1, y)], colour="#e3e3e3", width=1)
                self.text(
                    self.x0 - 6, y, tick_label(t, yticks), anchor="end", size=12, colour="#444", baseline="middle"
                )
        self.line([(self.x0, self.y1), (self.x0, self.y0), (self.x1, self.y0)], colour="#555", width=1)
        self.text((self.x0 + self.x1) / 2, self.y0 + 34, xlabel, anchor="middle", colour="#222")
        if ylabel:
            cy = (self.y0 + self.y1) / 2
            self.text(14, cy, ylabel, anchor="middle", rotate=-90, colour="#222")

    def legend(
        self, items: Sequence[tuple[str, str, str]], x: float, y: float, *, vertical: bool = False, size: float = 11
    ) -> None:
        """items: (kind, colour, label) with kind in box|line|dot|hollow|x|band."""
        cx, cy = x, y
        for kind, colour, label in items:
            if kind in ("box", "band"):
                self.rect(cx, cy - 5, 12, 10, fill=colour, opacity=0.35 if kind == "band" else 1.0)
            elif kind == "line":
                self.line([(cx, cy), (cx + 12, cy)], colour=colour, width=2)
                self.marker(cx + 6, cy, colour=colour, r=2.5)
            elif kind in ("dot", "hollow", "x"):
                self.marker(
                    cx + 6,
                    cy,
                    colour=colour,
                    r=4,
                    hollow=kind == "hollow",
                    kind="x" if kind == "x" else "circle",
                )
            self.text(cx + 17, cy, label, size=size, baseline="middle")
            if vertical:
                cy += size + 5
            else:
                cx += 17 + text_width(label, size) + 16

    def render(self) -> str:
        title = escape(self.title)
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {f(self.width)} {f(self.height)}" '
            f'width="{f(self.width)}" height="{f(self.height)}" role="img" aria-label="{title}" '
            'font-family="system-ui,-apple-system,Segoe UI,Roboto,DejaVu Sans,sans-serif">'
        )
        t = f'<text x="{f(self.left)}" y="18" font-size="13" font-weight="bold" fill="#111">{title}</text>'
        return head + t + "".join(self.parts) + "</svg>"
