"""Reading result files for the gate, with errors that say which file, which field and what is allowed."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from suite.errors import InputError
from suite.results.build import measured_generation
from suite.results.schema import SCHEMA_VERSION, Result

RESULT_NAME = "result.json"


def read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {getattr(exc, 'strerror', None) or exc}", source=str(path)) from None
    if not text.strip():
        raise InputError("empty file; expected a result JSON object", source=str(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        if _unclosed(text):
            raise InputError(f"truncated JSON (ends at {where}: {exc.msg})", source=str(path)) from None
        raise InputError(f"invalid JSON at {where}: {exc.msg}", source=str(path)) from None


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
            "(re-run the cell, or gate with the grpo-suite that wrote it)",
            source=source,
            field=f"{prefix}schema",
        )
    try:
        result = Result.model_validate(data)
    except ValidationError as exc:
        raise InputError(_describe(exc, prefix), source=source) from None
    _check_samples(result, source, prefix)
    # Results written before the generation came from the hardware (suite.results.build.measured_generation)
    # may name their matrix's generation; the gate, the store and the report must see where they ran.
    gpu, provenance = measured_generation(result.gpu, result.provenance)
    if gpu != result.gpu:
        result = result.model_copy(update={"gpu": gpu, "provenance": provenance})
    return result


def _describe(exc: ValidationError, prefix: str) -> str:
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


def read_result(path: Path) -> Result:
    return result_from_dict(read_json(path), str(path))


def _candidates(root: Path) -> Iterable[Path]:
    return sorted(p for p in root.rglob("*.json") if p.is_file())


def load_results(paths: Iterable[str | Path]) -> list[tuple[Path, Result]]:
    """Results from files and directories. A file named on the command line must be a result. Inside a
    directory, `result.json` files must be results and any other `*.json` is taken when it is one (an
    object with `schema` and `id`) and skipped when it is some other JSON (a plan, a report); a file that is
    not JSON at all is an error, since it may be a truncated result. All errors are reported together."""
    found: list[tuple[Path, Result]] = []
    errors: list[str] = []
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            errors.append(f"{root}: no such file or directory")
            continue
        files = [root] if root.is_file() else list(_candidates(root))
        for path in files:
            try:
                data = read_json(path)
                if root.is_dir() and path.name != RESULT_NAME and not looks_like_result(data):
                    continue
                found.append((path, result_from_dict(data, str(path))))
            except InputError as exc:
                errors.append(str(exc))
    if errors:
        raise InputError("\n  ".join(["bad result input:", *errors]))
    if not found:
        raise InputError(f"no result files found in {', '.join(map(str, paths))} (expected *.json results)")
    return found
