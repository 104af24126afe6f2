"""Gate thresholds: the shipped `thresholds.toml`, a user file merged over it, and per-cell overrides."""

from __future__ import annotations

import fnmatch
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from suite.errors import InputError

EffectRule = Literal["interval", "estimate"]
Measure = Literal["window", "step"]
DEFAULT_FILE = "thresholds.toml"
TABLES = ("gate", "throughput", "memory", "host_memory", "accuracy", "sentinel", "calibration", "override")
PER_CELL = ("throughput", "memory", "host_memory", "accuracy", "sentinel")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GateSettings(_Section):
    missing_is_regression: bool = False
    bootstrap_resamples: int = Field(2000, ge=100)
    ci_level: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 0
    consecutive: int = Field(2, ge=1)


class ThroughputThresholds(_Section):
    alpha: float = Field(gt=0.0, lt=0.5)
    min_effect: float = Field(ge=0.0, lt=1.0)
    effect_rule: EffectRule
    min_samples: int = Field(ge=2)
    measure: Measure = "step"


class MemoryThresholds(_Section):
    rel_tolerance: float = Field(ge=0.0, lt=1.0)
    abs_tolerance_gib: float = Field(ge=0.0)


class HostMemoryThresholds(MemoryThresholds):
    # the fraction of the host's memory at which a cell is named as close to being killed (Ray's OOM monitor
    # kills at 0.95 of it by default)
    warn_fraction: float = Field(0.9, gt=0.0, le=1.0)


class AccuracyThresholds(_Section):
    alpha: float = Field(gt=0.0, lt=0.5)
    min_drop: float = Field(ge=0.0, lt=1.0)
    effect_rule: EffectRule
    fisher_below: float = Field(ge=0.0)


class SentinelThresholds(_Section):
    max_probs_diff_mean: float = Field(gt=0.0)
    min_pearson: float = Field(ge=-1.0, le=1.0)
    max_growth: float = Field(gt=1.0)
    growth_floor: float = Field(ge=0.0)


class CalibrationSettings(_Section):
    factor: float = Field(gt=0.0)
    min_runs: int = Field(ge=2)
    throughput_floor: float = Field(ge=0.0, lt=1.0)
    memory_floor_gib: float = Field(ge=0.0)
    host_memory_floor_gib: float = Field(0.5, ge=0.0)


class CellThresholds(_Section):
    throughput: ThroughputThresholds
    memory: MemoryThresholds
    host_memory: HostMemoryThresholds
    accuracy: AccuracyThresholds
    sentinel: SentinelThresholds


class Override(_Section):
    cells: list[str] = Field(min_length=1)
    throughput: dict[str, Any] = Field(default_factory=dict)
    memory: dict[str, Any] = Field(default_factory=dict)
    host_memory: dict[str, Any] = Field(default_factory=dict)
    accuracy: dict[str, Any] = Field(default_factory=dict)
    sentinel: dict[str, Any] = Field(default_factory=dict)

    @field_validator("cells", mode="before")
    @classmethod
    def _one_pattern(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class GateConfig(_Section):
    gate: GateSettings
    throughput: ThroughputThresholds
    memory: MemoryThresholds
    host_memory: HostMemoryThresholds
    accuracy: AccuracyThresholds
    sentinel: SentinelThresholds
    calibration: CalibrationSettings
    override: list[Override] = Field(default_factory=list)
    source: str = DEFAULT_FILE

    def for_cell(self, cell_id: str) -> CellThresholds:
        merged: dict[str, dict[str, Any]] = {name: getattr(self, name).model_dump() for name in PER_CELL}
        for ov in self.override:
            if any(fnmatch.fnmatchcase(cell_id, pat) for pat in ov.cells):
                for name in merged:
                    merged[name].update(getattr(ov, name))
        try:
            return CellThresholds.model_validate(merged)
        except ValidationError as exc:
            raise InputError(_describe(exc, "override for " + cell_id), source=self.source) from None


def _describe(exc: ValidationError, where: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            parts.append(f"{where}: unknown key {loc!r}; allowed keys: see suite/gate/{DEFAULT_FILE}")
        elif err["type"] == "literal_error":
            parts.append(f"{where}: {loc} = {value!r}: {err['msg']}")
        else:
            parts.append(f"{where}: {loc} = {value!r}: {err['msg']}")
    return "; ".join(parts)


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", source=source) from None


def _merge(base: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in user.items():
        if key == "override":
            out["override"] = list(out.get("override", [])) + list(value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def default_text() -> str:
    return resources.files("suite.gate").joinpath(DEFAULT_FILE).read_text(encoding="utf-8")


def load_config(path: str | Path | None = None) -> GateConfig:
    """The shipped defaults, with the TOML file at `path` (if any) merged over them."""
    data = _read_toml(default_text(), DEFAULT_FILE)
    shipped = len(data.get("override", []))  # the user's overrides follow these: errors number them in their file
    source = f"suite/gate/{DEFAULT_FILE}"
    file = str(path) if path is not None else source
    if path is not None:
        source = f"{path} over the defaults"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read config: {exc.strerror}", source=str(path)) from None
        user = _read_toml(text, str(path))
        unknown = set(user) - set(TABLES)
        if unknown:
            raise InputError(f"unknown table(s) {sorted(unknown)}; allowed: {', '.join(TABLES)}", source=str(path))
        data = _merge(data, user)
    try:
        config = GateConfig.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise InputError(_describe(exc, "config"), source=file) from None
    # Validate every override now so that a typo fails before any comparison is printed.
    for i, ov in enumerate(config.override):
        try:
            CellThresholds.model_validate({n: {**getattr(config, n).model_dump(), **getattr(ov, n)} for n in PER_CELL})
        except ValidationError as exc:
            own, where = (i, f"suite/gate/{DEFAULT_FILE}") if i < shipped else (i - shipped, file)
            raise InputError(_describe(exc, f"override[{own}] (cells {ov.cells})"), source=where) from None
    return config
