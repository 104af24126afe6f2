"""Typed runtime options: one frozen dataclass per runtime, and the one converter from keyword options.

`--runtime-option KEY=VALUE` hands strings, tests and `make_runtime` hand Python values: both go through
`parse_options`, which converts to the field's type (bool, int, float, str, a Literal's choices, `X | None`)
and refuses unknown keys and bad values with an InputError that names the option and what is allowed."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union

from suite.errors import InputError


@dataclass(frozen=True)
class RuntimeOptions:
    """What every runtime takes."""

    dry_run: bool = False  # print what would run, run and write nothing
    poll_s: float = 1.0  # how often the lifecycle asks the runtime for the cell's state


OptionsT = TypeVar("OptionsT", bound=RuntimeOptions)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _convert(value: Any, kind: Any) -> Any:
    """`value` as `kind`; ValueError (with what is allowed) when it is not one."""
    origin = typing.get_origin(kind)
    if origin is Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise ValueError(f"allowed: {', '.join(map(str, choices))}")
        return value
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return _convert(value, inner[0])
    if kind is bool:
        if isinstance(value, bool):
            return value
        low = str(value).strip().lower()
        if low in _TRUE + _FALSE:
            return low in _TRUE
        raise ValueError("expected bool: true or false")
    if kind in (int, float):
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected {kind.__name__}") from None
        if number < 0:
            raise ValueError("allowed: >= 0")
        return number
    return str(value)


def parse_options(cls: type[OptionsT], options: Mapping[str, Any], runtime: str) -> OptionsT:
    """`cls` from keyword options over its defaults. None means "not given" (the run CLI leaves --address and
    --image unset unless the user gives them)."""
    given = {k: v for k, v in options.items() if v is not None}
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise InputError(
            f"option(s) {', '.join(unknown)} not supported by the {runtime} runtime; allowed: {', '.join(names)}",
            field=f"--runtime {runtime}",
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in given.items():
        try:
            values[key] = _convert(value, hints[key])
        except ValueError as exc:
            raise InputError(f"bad value {value!r} for option {key!r}; {exc}", field="--runtime-option") from None
    return cls(**values)


def split_list(value: str) -> list[str]:
    """A comma-separated option value as its non-empty items."""
    return [x.strip() for x in value.split(",") if x.strip()]
