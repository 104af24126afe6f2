"""Reading and writing result files. Writes are atomic: a reader (report, gate, a resumed run) sees the
old file or the new one, never half of one, even if the runner is killed mid-write."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from suite.errors import InputError
from suite.results.schema import SCHEMA_VERSION, Result


def write_text_atomic(path: str | Path, text: str) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return p


def write_result(path: str | Path, result: Result) -> Path:
    # Round-trip through the model so that what lands on disk is exactly what a reader accepts.
    text = result.to_json()
    Result.model_validate_json(text)
    return write_text_atomic(path, text + "\n")


def parse_result(text: str, *, source: str = "result") -> Result:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc})", source=source) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", source=source)
    version = data.get("schema")
    if version != SCHEMA_VERSION:
        raise InputError(f"schema version {version!r} not supported; allowed: {SCHEMA_VERSION}",
                         source=source, field="schema")
    try:
        return Result.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise InputError(f"{first['msg']} (value {first.get('input')!r})", source=source, field=loc) from None


def read_result(path: str | Path) -> Result:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", source=str(p)) from None
    return parse_result(text, source=str(p))


def try_read_result(path: str | Path) -> Result | None:
    """The result at `path`, or None when there is none or it is unreadable (resume treats both alike)."""
    try:
        return read_result(path)
    except InputError:
        return None
