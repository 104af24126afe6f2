"""grpo-suite: reproducible GRPO benchmarks with verl."""

__version__ = "0.1.0"
