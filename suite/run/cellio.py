"""Cell <-> JSON, as `Cell.to_dict()` writes it: the one reader and the one writer of `cell.json` and plan JSON.

Derived keys (`n_gpus`, `full_id`, `argv`, `paths`) are dropped on read. A cell written before cells carried their
overrides as data (only `argv`) is read through the recorded-command reader, `suite.plan.hydra.split_argv`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from suite.errors import InputError
from suite.plan.cell import Cell
from suite.plan.hydra import PREFIXES, Override, split_argv
from suite.results.io import write_text_atomic
from suite.run.files import CELL_FILE

_DERIVED = ("n_gpus", "full_id", "argv", "paths")
_FIELDS = {f.name for f in dataclasses.fields(Cell)}
_REQUIRED = {
    f.name
    for f in dataclasses.fields(Cell)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
}


def _override(x: Any, source: str) -> Override:
    if not isinstance(x, dict) or set(x) - {"key", "value", "prefix"} or "key" not in x:
        raise InputError(f"bad override {x!r}; expected {{key, value, prefix}}", source=source, field="overrides")
    prefix = x.get("prefix", "")
    if prefix not in PREFIXES:
        raise InputError(
            f"bad prefix {prefix!r}; allowed: {', '.join(map(repr, PREFIXES))}", source=source, field="overrides"
        )
    return Override(str(x["key"]), x.get("value"), prefix)


def cell_from_dict(data: dict, *, source: str = "cell") -> Cell:
    data = dict(data)
    if "command" not in data and isinstance(data.get("argv"), list):
        # Written before cells carried their overrides as data: the command line is all there is.
        data["command"], data["overrides"] = split_argv([str(a) for a in data["argv"]])
        argv = None
    else:
        argv = data.get("argv")
    missing = sorted(_REQUIRED - set(data))
    if missing:
        raise InputError(f"missing field(s) {', '.join(missing)}", source=source)
    unknown = sorted(set(data) - _FIELDS - set(_DERIVED))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_FIELDS))}", source=source)
    fields = {k: v for k, v in data.items() if k in _FIELDS}
    fields["overrides"] = tuple(
        o if isinstance(o, Override) else _override(o, source) for o in fields.get("overrides", ())
    )
    cell = Cell(**fields)
    if argv is not None and argv != cell.argv:
        # argv is derived: an edit there would silently not run. Say where the command lives instead.
        raise InputError(
            "argv differs from command + overrides (argv is derived from them): edit overrides, or drop them "
            "and command to run the argv as written",
            source=source,
            field="argv",
        )
    return cell


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
    return json.dumps(cell.to_dict(), indent=2, sort_keys=True) + "\n"


def write_cell(directory: Path, cell: Cell) -> Path:
    """`<directory>/cell.json`, atomically: what the in-cell runner (container, job) reads."""
    return write_text_atomic(Path(directory) / CELL_FILE, dump_cell(cell))
