"""Hydra's override grammar, both ways: a typed value -> the text verl's `main_ppo` reads back, and the one reader
of a *recorded* command (a result's `provenance.argv`, a plan JSON written before cells carried their overrides).

A planned cell never goes through `split_argv`: it carries its overrides as `Override`s and its argv is derived
from them (`suite.plan.cell.Cell.argv`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, cast

Scalar = bool | int | float | str | None
OverrideValue = Scalar | list[Scalar]
# Hydra's prefixes: "" sets a key verl's config has, "+" adds a new one, "++" adds or sets, "~" deletes.
Prefix = Literal["", "+", "++", "~"]
PREFIXES: tuple[Prefix, ...] = ("++", "+", "~", "")

_SAFE = re.compile(r"^[A-Za-z_/~.][A-Za-z0-9_./:@\-]*$")
NOT_STRING = re.compile(r"^(?i:true|false|null|none|[-+]?(inf|nan)|[-+]?[0-9][0-9_]*(\.[0-9_]*)?(e[-+]?[0-9]+)?)$")
_KEY = re.compile(r"^(\+\+|\+|~)?([A-Za-z_][A-Za-z0-9_.@/-]*)$")
_INT = re.compile(r"^[-+]?[0-9][0-9_]*$")
_FLOAT = re.compile(r"^[-+]?([0-9][0-9_]*)?\.?[0-9_]*(e[-+]?[0-9]+)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Override:
    """One Hydra override: `key` without its prefix, the typed value, and the prefix kind."""

    key: str
    value: OverrideValue
    prefix: Prefix = ""

    @property
    def text(self) -> str:
        return f"{self.prefix}{self.key}={format_value(self.value)}"

    def to_dict(self) -> dict[str, object]:
        return {"key": self.key, "value": self.value, "prefix": self.prefix}


def split_key(key: str) -> tuple[Prefix, str]:
    """`++a.b` -> ("++", "a.b")."""
    for p in PREFIXES:
        if p and key.startswith(p):
            return p, key[len(p) :]
    return "", key


def format_value(v: OverrideValue | tuple[Scalar, ...]) -> str:
    """A Python value as Hydra's override grammar reads it back (strings quoted when they would not be)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list | tuple):
        # Strings in lists are always quoted: trainer.logger=["console","file"] as verl's docs write it.
        return "[" + ",".join(_quote(x) if isinstance(x, str) else format_value(x) for x in v) + "]"
    s = str(v)
    if _SAFE.match(s) and not NOT_STRING.match(s) and not s.startswith("~"):
        return s
    return _quote(s)


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_value(text: str) -> OverrideValue:
    """A recorded override value as Python (the inverse of `format_value`)."""
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    low = s.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    if low in ("null", "none", "~"):
        return None
    if _INT.match(s):
        return int(s.replace("_", ""))
    if _FLOAT.match(s) and any(c.isdigit() for c in s):
        return float(s.replace("_", ""))
    if s.startswith("[") and s.endswith("]"):
        inner = s[1:-1].strip()
        return [cast(Scalar, parse_value(x)) for x in inner.split(",")] if inner else []
    return s


def split_argv(argv: list[str]) -> tuple[list[str], tuple[Override, ...]]:
    """A recorded command -> (the program and its own arguments, its Hydra overrides). The program part ends at the
    first `key=value`; a later argument that is no override (a flag) stays out of the overrides."""
    command: list[str] = []
    overrides: list[Override] = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        m = _KEY.match(key) if sep and not arg.startswith("-") else None
        if m is None:
            if not overrides:
                command.append(arg)
            continue
        overrides.append(Override(m[2], parse_value(value), cast(Prefix, m[1] or "")))
    return command, tuple(overrides)
