"""plan stage: matrix -> cells, each a validated verl command. `plan_matrix` is the entry point.

The exports load on first use: the in-cell runner imports `suite.plan.cell` alone, and must not pay for the
matrix schema and the planner (pydantic models, verl's key tables) inside every container and job."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"Cell": "suite.plan.cell", "load_matrix": "suite.matrix", "plan_matrix": "suite.plan.planner"}
__all__ = ["Cell", "load_matrix", "plan_matrix"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'suite.plan' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
