"""Cell <-> JSON, as `Cell.to_dict()` writes it (derived keys `n_gpus` / `full_id` are dropped on read)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from suite.errors import InputError
from suite.plan.cell import Cell

_DERIVED = ("n_gpus", "full_id")


def cell_from_dict(data: dict, *, source: str = "cell") -> Cell:
    fields = {f.name for f in dataclasses.fields(Cell)}
    required = {f.name for f in dataclasses.fields(Cell)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(data))
    if missing:
        raise InputError(f"missing field(s) {', '.join(missing)}", source=source)
    unknown = sorted(set(data) - fields - set(_DERIVED))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}",
                         source=source)
    return Cell(**{k: v for k, v in data.items() if k in fields})


def read_json(path: str | Path) -> Any:
    """A JSON file's content, or an InputError naming the file (missing, not JSON)."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError("file not found", source=str(p)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc})", source=str(p)) from None


def load_cell(path: str | Path) -> Cell:
    p = Path(path)
    data = read_json(p)
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object, got {type(data).__name__}", source=str(p))
    return cell_from_dict(data, source=str(p))


def dump_cell(cell: Cell) -> str:
    return json.dumps(cell.to_dict(), indent=2, sort_keys=True)
