"""`grpo-suite` command line: a thin dispatcher. Each stage owns its sub-commands in `<stage>/cli.py`,
which exposes `register(subparsers)`; the work itself lives in plain functions of that stage.

Exit codes: 0 success / no regression, 1 regression or failed cells, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from suite import __version__
from suite.errors import EXIT_USAGE, InputError

# Order is the order of `--help`, which reads as the pipeline.
STAGE_CLIS = (
    "suite.plan.cli",
    "suite.memory.cli",
    "suite.speed.cli",
    "suite.models.cli",
    "suite.data.cli",
    "suite.run.cli",
    "suite.results.cli",
    "suite.gate.cli",
    "suite.report.cli",
    "suite.containers.cli",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 as well; keep one message format
        self.print_usage(sys.stderr)
        print(f"grpo-suite: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="grpo-suite", description="GRPO benchmark suite for verl")
    parser.add_argument("--version", action="version", version=f"grpo-suite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in STAGE_CLIS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # stage not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"grpo-suite: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
