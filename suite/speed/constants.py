"""The speed model's constants: one non-negative number per feature of each phase (suite/speed/work.py) and of
the run around the steps, with what they were fitted on. `constants.toml` is written by `grpo-suite speed fit`
and read here; this module is its one reader and one writer."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from suite.errors import InputError
from suite.speed.work import FEATURES

DEFAULT_PATH = Path(__file__).with_name("constants.toml")

# the run around the steps: start-up to verl's `fit`, step 1's extra over a steady step, the end after the
# last step; each a combination of its features (suite/speed/duration.py)
RUN_FEATURES: dict[str, tuple[str, ...]] = {
    "to_fit": ("fixed", "checkpoint", "offload"),
    "warmup_extra": ("fixed", "step"),
    "teardown": ("fixed",),
}


@dataclass(frozen=True)
class Constants:
    phases: dict[str, dict[str, float]]  # phase -> feature -> constant
    run: dict[str, dict[str, float]]  # run part -> feature -> constant
    prompt_tokens: float  # mean prompt length assumed for a planned cell (the committed runs' data)
    max_gpus: int  # the most GPUs of a run fitted on: a cell with more is outside what was measured
    fitted_on: tuple[str, ...] = ()  # the results' ids (matrix/cell @ start time)
    source: str = field(default="<constants>", compare=False)


def _table(data: dict[str, Any], section: str, names: tuple[str, ...], source: str) -> dict[str, float]:
    t = data.get(section)
    if not isinstance(t, dict):
        raise InputError(f"missing table [{section}]", source=source)
    unknown = sorted(set(t) - set(names))
    missing = [n for n in names if n not in t]
    if unknown or missing:
        raise InputError(
            f"[{section}] must have exactly {', '.join(names)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            + (f"; missing: {', '.join(missing)}" if missing else ""),
            source=source,
        )
    out: dict[str, float] = {}
    for n in names:
        v = t[n]
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise InputError(f"[{section}] {n} must be a non-negative number, got {v!r}", source=source)
        out[n] = float(v)
    return out


def constants_from_dict(data: dict[str, Any], source: str = "<constants>") -> Constants:
    phases = {p: _table(data, p, names, source) for p, names in FEATURES.items()}
    run = {f"run.{k}": _table(data.get("run", {}), k, names, source) for k, names in RUN_FEATURES.items()}
    fit = data.get("fit", {})
    prompt = fit.get("prompt_tokens")
    if isinstance(prompt, bool) or not isinstance(prompt, int | float) or prompt <= 0:
        raise InputError(f"[fit] prompt_tokens must be a positive number, got {prompt!r}", source=source)
    max_gpus = fit.get("max_gpus")
    if isinstance(max_gpus, bool) or not isinstance(max_gpus, int) or max_gpus < 1:
        raise InputError(f"[fit] max_gpus must be a positive integer, got {max_gpus!r}", source=source)
    on = fit.get("results", [])
    if not isinstance(on, list) or not all(isinstance(x, str) for x in on):
        raise InputError("[fit] results must be a list of strings", source=source)
    return Constants(
        phases=phases,
        run={k.removeprefix("run."): v for k, v in run.items()},
        prompt_tokens=float(prompt),
        max_gpus=max_gpus,
        fitted_on=tuple(on),
        source=source,
    )


def load_constants(path: str | Path) -> Constants:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise InputError("no such file", source=str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not TOML: {exc}", source=str(p)) from None
    return constants_from_dict(data, str(p))


@cache
def default_constants() -> Constants:
    return load_constants(DEFAULT_PATH)


def _num(v: float) -> str:
    return f"{v:.6g}"


def dumps(c: Constants, *, header: str = "") -> str:
    lines = [f"# {ln}" if ln else "#" for ln in header.splitlines()]
    lines += ["", "[fit]", f"prompt_tokens = {_num(c.prompt_tokens)}", f"max_gpus = {c.max_gpus}"]
    lines += ["results = ["]
    lines += [f'  "{r}",' for r in c.fitted_on] + ["]"]
    for phase, names in FEATURES.items():
        lines += ["", f"[{phase}]"] + [f"{n} = {_num(c.phases[phase][n])}" for n in names]
    for part, names in RUN_FEATURES.items():
        lines += ["", f"[run.{part}]"] + [f"{n} = {_num(c.run[part][n])}" for n in names]
    return "\n".join(lines) + "\n"
