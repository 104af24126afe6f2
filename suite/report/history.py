"""The baseline store's series for the report: per cell, its promotions and recorded gated runs
(`suite.gate.history.series`), for the cells the report shows. Only series of two points or more are kept:
one point is the baseline itself, which the tables already show."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from suite.gate.history import Point, series
from suite.gate.store import list_baselines

MAX_SERIES = 24  # history plots per report: the most recent changes matter, and a page of 1,000 would not load


@dataclass(frozen=True)
class HistorySeries:
    gpu: str
    matrix: str
    id: str
    path: str
    points: list[Point]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.gpu, self.matrix, self.id)


def collect(root: Path, keys: Iterable[tuple[str, str, str]] | None = None) -> list[HistorySeries]:
    """Series of the store at `root` for the cells `keys` ((gpu, matrix, id); all when None), longest first."""
    if not root.is_dir():
        return []
    wanted = set(keys) if keys is not None else None
    out = []
    for path, b in list_baselines(root):
        key = (b.gpu, b.matrix, b.id)
        if wanted is not None and key not in wanted:
            continue
        points = series(b)
        if len(points) >= 2:
            out.append(HistorySeries(b.gpu, b.matrix, b.id, str(path), points))
    out.sort(key=lambda s: (-len(s.points), s.key))
    return out[:MAX_SERIES]
