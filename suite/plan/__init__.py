"""plan stage: matrix -> cells, each a validated verl command. `plan_matrix` is the entry point."""

from suite.matrix import load_matrix
from suite.plan.cell import Cell
from suite.plan.planner import plan_matrix

__all__ = ["Cell", "load_matrix", "plan_matrix"]
