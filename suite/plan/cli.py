"""`grpo-suite plan`: print the cells of a matrix (table or JSON).

The planner is imported inside `run`: every `grpo-suite` command registers this parser, and must not load the
matrix schema and the planner to do so."""

from __future__ import annotations

import argparse
import json
import sys

from suite.errors import EXIT_OK, EXIT_USAGE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="expand a matrix into cells, each a validated verl command")
    p.add_argument("matrix", help="matrix TOML file (e.g. suite/matrices/h100.toml)")
    p.add_argument("--profile", default="bench", help="profile of the matrix: bench (default) or train")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--strict", action="store_true", help="exit 2 when any cell is invalid")
    p.add_argument("--out", default="runs", help="directory the cells' files go to (default: ./runs)")
    p.add_argument("--data-root", default=None, help="directory holding train.parquet/test.parquet")
    p.add_argument("--no-verl-check", action="store_true", help="skip composing each cell with verl's config")
    p.add_argument(
        "--predict-memory",
        action="store_true",
        help="predict each cell's peak GPU memory; cells that cannot fit become predicted-oom",
    )
    p.set_defaults(func=run)


def _reference_elsewhere(matrix, args: argparse.Namespace):
    """The reference cell of `[matrix] reference_matrix`, planned and predicted, for the `vs ref` column."""
    from suite.memory.predict import annotate_cells
    from suite.plan.planner import plan_reference_cell

    ref = plan_reference_cell(matrix, args.profile, out_dir=args.out, data_root=args.data_root)
    return annotate_cells([ref])[0] if ref is not None else None


def run(args: argparse.Namespace) -> int:
    from suite.matrix import load_matrix
    from suite.plan.planner import plan_matrix
    from suite.plan.render import table

    m = load_matrix(args.matrix)
    cells = plan_matrix(
        m, args.profile, out_dir=args.out, data_root=args.data_root, validate_with_verl=not args.no_verl_check
    )
    if args.predict_memory:
        from suite.memory.predict import annotate_cells  # only with --predict-memory

        cells = annotate_cells(cells)
    if args.format == "json":
        print(json.dumps([c.to_dict() for c in cells], indent=2))
    else:
        print(table(cells, reference=_reference_elsewhere(m, args) if args.predict_memory else None))
    from suite.containers.lock import image_pin
    from suite.run.preflight import torch_gaps

    for gap in torch_gaps(cells, image_pin(m.matrix.gpu, "torch"), m.matrix.gpu):
        print(f"grpo-suite: note: {gap}: run these cells on a torch that has it", file=sys.stderr)
    bad = [c for c in cells if c.status != "ok"]
    if args.strict and bad:
        print(
            f"grpo-suite: error: {args.matrix}: {len(bad)} of {len(cells)} cells are not ok (--strict)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return EXIT_OK
