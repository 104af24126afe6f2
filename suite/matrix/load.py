"""Read a matrix file: TOML -> validated `Matrix`, or one `InputError` naming file, field, value, allowed."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from suite.errors import InputError
from suite.matrix.schema import AXES, Matrix, Profile


def load_matrix(path: str | Path) -> Matrix:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read matrix file: {exc.strerror}", source=str(p)) from None
    return parse_matrix(text, source=str(p))


def parse_matrix(text: str, *, source: str = "<matrix>") -> Matrix:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib says "(at line L, column C)", or "(at end of document)": name the last line then.
        msg = str(exc).replace("at end of document", f"at end of document, line {len(text.splitlines())}")
        raise InputError(f"TOML syntax error: {msg}", source=source) from None
    if isinstance(data.get("overrides"), dict):
        data["overrides"] = flatten(data["overrides"])
    try:
        m = Matrix.model_validate(data)
    except ValidationError as exc:
        raise _input_error(exc, data, source) from None
    m._source = source
    for name in m.profiles:  # an unknown or circular `extends` is an input error at load, not at plan time
        m.profile(name)
    return m


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: nested TOML tables and dotted keys mean the same override."""
    out: dict[str, Any] = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the last element of `loc`, to list its allowed keys."""
    model: Any = Matrix
    for part in loc[:-1]:
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return None
        if part not in fields:
            # dict[str, Profile]: the key is a profile name; step into the value type.
            if model is Matrix and loc[0] == "profiles":
                model = Profile
                continue
            return None
        ann = fields[part].annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if model is None and part == "profiles":
            model = Matrix  # the next part is a profile name
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unknown(key: str, model: type[BaseModel] | None) -> str:
    allowed = list(model.model_fields if model else {})
    if model is Matrix:
        return f"unknown table [{key}]; allowed: {', '.join(f'[{a}]' for a in allowed)}"
    return f"unknown key {key!r}; allowed: {', '.join(allowed)}"


def _input_error(exc: ValidationError, data: dict[str, Any], source: str) -> InputError:
    errors = exc.errors(include_url=False)
    # A missing table or key hides nothing else, so report a concrete bad value first when there is one.
    err = next((e for e in errors if e["type"] != "missing"), errors[0])
    loc = tuple(err["loc"])
    # Union members add their type names to loc (e.g. 'int', 'constrained-str'); keep the data path.
    loc = tuple(p for p in loc if not (isinstance(p, str) and (p in _TYPE_TAGS or p.startswith("function-"))))
    field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
    # A validator that knows the exact field (e.g. an extra axis) says so on its exception.
    field = getattr((err.get("ctx") or {}).get("error"), "field", None) or field
    if err["type"] == "extra_forbidden":
        if loc and loc[0] == "axes":
            msg = f"unknown axis {loc[-1]!r}; allowed: {', '.join(AXES)}"
        else:
            msg = _unknown(str(loc[-1]), _model_at(loc))
        return InputError(msg, source=source, field=field or None)
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    if err["type"] == "missing":
        model = _model_at(loc)
        ann = model.model_fields[str(loc[-1])].annotation if model and str(loc[-1]) in model.model_fields else None
        what = f"table [{field}]" if isinstance(ann, type) and issubclass(ann, BaseModel) else f"key {field!r}"
        return InputError(f"required {what} is missing", source=source, field=field)
    bad = err.get("input")
    if err["type"] == "too_short":
        msg = "must not be empty (give at least one value, or omit the axis to take it from [base])"
    elif err["type"] in ("greater_than", "greater_than_equal") or "greater than" in msg:
        msg = f"must be {msg.removeprefix('Input should be ')}"
    elif err["type"] == "literal_error":
        msg = f"allowed: {msg.removeprefix('Input should be ')}"
    if "got" not in msg and not isinstance(bad, dict) and "unknown" not in msg:
        msg = f"bad value {bad!r}: {msg}"
    return InputError(msg, source=source, field=field)


_TYPE_TAGS = {
    "int",
    "float",
    "str",
    "bool",
    "list[str]",
    "constrained-str",
    "list[constrained-int]",
    "constrained-int",
    "function-after",
    "none",
    "list[union[bool,int,float,str]]",
    "union[bool,int,float,str]",
}
