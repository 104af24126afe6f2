"""The one reader and the one writer of result JSON, used by run (`--resume`), gate, report and memory.

Reading applies one set of rules wherever a result comes from (its own file, a baseline's `results`, a
`{"result": ...}` wrapper): the schema version, the pydantic model, the samples the gate needs (positive
throughput, finite memory peaks) and the consistency of the fields (`suite.results.consistency`: `gpu` is the
generation the result ran on, so it cannot contradict `provenance.gpu_name`). Errors name the file, the field
and the value, and are `InputError`s (exit 2).

Writes are atomic: a reader (report, gate, a resumed run) sees the old file or the new one, never half of
one, even if the writer is killed mid-write. The writer checks what it writes with the reader, so no
contradicting result reaches the disk.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from suite.errors import InputError
from suite.results.consistency import contradictions
from suite.results.schema import SCHEMA_VERSION, Result


def write_text_atomic(path: str | Path, text: str) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        # mkstemp makes the file 0600, and the rename would keep that: a result or baseline other users of a
        # shared folder cannot read. Keep the replaced file's mode, else the usual 0644.
        os.fchmod(fd, p.stat().st_mode & 0o777 if p.exists() else 0o644)
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
    # Round-trip through the reader so that what lands on disk is exactly what every reader accepts.
    text = result.to_json()
    result_from_dict(json.loads(text), str(path))
    return write_text_atomic(path, text + "\n")


# --- JSON -------------------------------------------------------------------------------------------------


def parse_json(text: str, source: str) -> Any:
    if not text.strip():
        raise InputError("empty file; expected a result JSON object", source=source)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        if _unclosed(text):
            raise InputError(
                f"truncated JSON (ends at {where}: {exc.msg}); not valid JSON, likely a file cut off while written",
                source=source,
            ) from None
        raise InputError(f"invalid JSON at {where}: {exc.msg} (not valid JSON)", source=source) from None


def read_json(path: str | Path) -> Any:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", source=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {getattr(exc, 'strerror', None) or exc}", source=str(p)) from None
    return parse_json(text, str(p))


def _unclosed(text: str) -> bool:
    """True when the text ends inside a string or an open object/array: a file cut off while written."""
    depth, in_string, escape = 0, False, False
    for ch in text:
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
    return in_string or depth > 0


# --- results ----------------------------------------------------------------------------------------------


def looks_like_result(data: Any) -> bool:
    return isinstance(data, dict) and "id" in data and "schema" in data


def result_from_dict(data: Any, source: str, prefix: str = "") -> Result:
    """Validate one result object; `prefix` names where it sits inside a larger file (a baseline)."""
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object, got {type(data).__name__}", source=source, field=prefix or None)
    version = data.get("schema")
    if version != SCHEMA_VERSION:
        raise InputError(
            f"schema version {version!r} is not supported; this grpo-suite reads schema {SCHEMA_VERSION} "
            "(re-run the cell, or read it with the grpo-suite that wrote it)",
            source=source,
            field=f"{prefix}schema",
        )
    try:
        result = Result.model_validate(data)
    except ValidationError as exc:
        raise InputError(describe(exc, prefix), source=source) from None
    _check_samples(result, source, prefix)
    bad = contradictions(result)
    if bad:
        raise InputError(
            "fields contradict each other: " + "; ".join(f"{prefix}{c}" for c in bad) + " (a result is not edited "
            "to agree: re-run the cell, or fix the file by hand if you know which side is right)",
            source=source,
        )
    return result


def describe(exc: ValidationError, prefix: str = "") -> str:
    """A pydantic error as `field: problem (got value)`, up to five of them."""
    parts = []
    for err in exc.errors()[:5]:
        loc = prefix + ".".join(str(p) for p in err["loc"])
        value = err.get("input")
        if isinstance(value, float) and not math.isfinite(value):
            parts.append(f"{loc}: NaN/inf sample {value!r}; every sample must be a finite number")
        elif err["type"] == "literal_error":
            parts.append(f"{loc}: {value!r} is not allowed; {err['msg']}")
        elif err["type"] == "missing":
            parts.append(f"{loc}: required field is missing")
        else:
            parts.append(f"{loc}: {err['msg']} (got {value!r})")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _check_samples(result: Result, source: str, prefix: str) -> None:
    # The schema checks finiteness of the per-step numbers; the gate also needs positive throughput and
    # finite memory peaks, which the schema leaves open.
    for i, step in enumerate(result.steps):
        if step.throughput <= 0:
            raise InputError(
                f"throughput {step.throughput!r} must be > 0 tokens/s/GPU",
                source=source,
                field=f"{prefix}steps[{i}].throughput",
            )
    for i, gb in enumerate(result.peak_memory_gb):
        if not math.isfinite(gb) or gb < 0:
            raise InputError(
                f"NaN/inf or negative sample {gb!r}; must be a finite number >= 0",
                source=source,
                field=f"{prefix}peak_memory_gb[{i}]",
            )


def parse_result(text: str, *, source: str = "result") -> Result:
    return result_from_dict(parse_json(text, source), source)


def read_result(path: str | Path) -> Result:
    return result_from_dict(read_json(path), str(path))


def try_read_result(path: str | Path) -> Result | None:
    """The result at `path`, or None when there is none or it is unreadable (resume treats both alike)."""
    try:
        return read_result(path)
    except InputError:
        return None
