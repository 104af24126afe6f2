"""matrix stage: the TOML matrix format and its loader."""

from suite.matrix.load import load_matrix, parse_matrix
from suite.matrix.schema import AXES, Matrix, Profile

__all__ = ["AXES", "Matrix", "Profile", "load_matrix", "parse_matrix"]
