"""Matrix -> points: the cartesian product of the axes (in file order of values) minus `[[exclude]]`."""

from __future__ import annotations

import itertools
from typing import Any

from suite.matrix.schema import AXES, Matrix


def cell_id(point: dict[str, Any]) -> str:
    """Readable and stable: the same axes give the same id, e.g. `lora32-off_param+optimizer-tp4-rb180`."""
    lora = point["lora_rank"]
    head = "full" if lora == 0 else f"lora{lora}"
    return f"{head}-off_{point['offload']}-tp{point['tp']}-rb{point['rollout_batch']}"


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
    points = [dict(zip(AXES, combo, strict=True)) for combo in itertools.product(*(values[a] for a in AXES))]
    return [p for p in points if not _excluded(p, excludes)]


def canon(v: Any) -> Any:
    from suite.matrix.offload import canonical

    return canonical(v) if isinstance(v, str) else v
