"""`grpo-suite gate` and `grpo-suite baseline promote|list`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    gate = subparsers.add_parser(
        "gate",
        help="compare results with their baselines; exit 0 no regression, 1 regression, 2 bad input",
        description="Compare each result cell with its stored baseline, one verdict per cell and metric: "
        "improved / unchanged / regressed / new / missing / failed. Several result files of one matrix and "
        "cell id are pooled (N runs x M steps); each cell is paired with the baseline of its own GPU generation, "
        "matrix and cell id.",
    )
    gate.add_argument("results", nargs="+", metavar="RESULTS", help="result files or folders (searched recursively)")
    gate.add_argument("--baselines", default="baselines", type=Path, help="baseline store (default: %(default)s)")
    gate.add_argument("--config", type=Path, help="thresholds TOML merged over the shipped defaults")
    gate.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    gate.add_argument("--output", type=Path, help="also write the report to this file (e.g. $GITHUB_STEP_SUMMARY)")
    gate.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="compare even when GPU generation, GPU count, model or profile differ (the report says so)",
    )
    gate.set_defaults(func=run_gate)

    baseline = subparsers.add_parser("baseline", help="manage the baseline store")
    sub = baseline.add_subparsers(dest="baseline_command", metavar="ACTION", parser_class=type(baseline))
    promote = sub.add_parser(
        "promote", help="add or replace baselines from results (runs of one matrix and cell id are pooled)"
    )
    promote.add_argument("results", nargs="+", metavar="RESULT", help="result files or folders")
    promote.add_argument("--baselines", default="baselines", type=Path)
    promote.add_argument("--config", type=Path, help="thresholds TOML (for the minimum number of samples)")
    promote.add_argument("--allow-failed", action="store_true", help="also promote results whose status is not ok")
    promote.set_defaults(func=run_promote)
    listing = sub.add_parser("list", help="list stored baselines")
    listing.add_argument("--baselines", default="baselines", type=Path)
    listing.add_argument("--gpu", action="append", help="only this GPU generation (repeatable)")
    listing.set_defaults(func=run_list)


def run_gate(args: argparse.Namespace) -> int:
    from suite.gate.compare import compare
    from suite.gate.config import load_config
    from suite.gate.load import load_results
    from suite.gate.render import RENDERERS

    config = load_config(args.config)
    results = load_results(args.results)
    report = compare(results, args.baselines, config, allow_mismatch=args.allow_mismatch)
    text = RENDERERS[args.format](report)
    print(text)
    if args.output:
        with args.output.open("a", encoding="utf-8") as fh:  # append: $GITHUB_STEP_SUMMARY is shared
            fh.write(text + "\n")
    return report.exit_code


def run_promote(args: argparse.Namespace) -> int:
    from suite.gate.compare import required_samples
    from suite.gate.config import load_config
    from suite.gate.load import load_results
    from suite.gate.store import promote

    config = load_config(args.config)
    results = load_results(args.results)
    need = max(required_samples(config.for_cell(r.id).throughput) for _, r in results)
    for p in promote(results, args.baselines, allow_failed=args.allow_failed, min_samples=need):
        replaced = f"; replaced the baseline of {p.replaced}" if p.replaced else ""
        replaced += f"; removed {p.moved_from} (older layout)" if p.moved_from else ""
        print(f"promoted {p.id} -> {p.path} ({p.runs} run(s), {p.measured_steps} measured steps, {p.status}{replaced})")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from suite.gate.cells import median
    from suite.gate.store import describe_versions, list_baselines

    rows = []
    for _path, b in list_baselines(args.baselines, args.gpu):
        cell = b.cell()
        tput = median(cell.throughput)
        v = describe_versions(b.results[0].provenance)
        rows.append(
            [
                b.gpu,
                b.matrix,
                b.id,
                b.results[0].profile,
                len(b.results),
                len(cell.throughput),
                cell.status,
                f"{tput:.1f}" if tput else "-",
                f"{cell.peak_memory_worst_gb:.2f}" if cell.peak_memory_worst_gb is not None else "-",
                " ".join(f"{k} {v[k]}" for k in ("verl", "vllm", "torch") if v[k]) or "-",
                b.promoted_at or "-",
                len(b.history),
            ]
        )
    headers = [
        "gpu",
        "matrix",
        "cell",
        "profile",
        "runs",
        "steps",
        "status",
        "tok/s/GPU",
        "peak GiB",
        "versions",
        "promoted",
        "history",
    ]
    print(tabulate(rows, headers, tablefmt="simple") if rows else f"no baselines in {args.baselines}")
    return 0
