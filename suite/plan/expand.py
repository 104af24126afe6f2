"""Matrix -> points: the cartesian product of the axes (in file order of values) minus `[[exclude]]`."""

from __future__ import annotations

import itertools
from typing import Any

from suite.matrix.ids import cell_id
from suite.matrix.offload import canonical
from suite.matrix.schema import Matrix


def _excluded(point: dict[str, Any], excludes: list[dict[str, Any]]) -> bool:
    return any(all(point[k] in (v if isinstance(v, list) else [v]) for k, v in ex.items()) for ex in excludes)


def expand(m: Matrix) -> list[dict[str, Any]]:
    values = m.axis_values()
    excludes = [
        {
            k: ([canon(x) for x in v] if isinstance(v, list) else canon(v)) if k == "offload" else v
            for k, v in ex.items()
        }
        for ex in m.exclude
    ]
    names = list(values)
    points = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(values[a] for a in names))]
    return [p for p in points if not _excluded(p, excludes)]


def point_id(m: Matrix, point: dict[str, Any]) -> str:
    return cell_id(point, list(m.axes.extra()))


def canon(v: Any) -> Any:
    return canonical(v) if isinstance(v, str) else v


__all__ = ["cell_id", "expand", "point_id"]
