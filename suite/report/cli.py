"""`grpo-suite report`: tables and plots (Markdown, HTML, JSON, CSV) from results or baselines."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from suite.report.evidence import EvidenceRun


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="write index.md, index.html, results.json and results.csv from results (no GPU needed)",
        description="Comparison tables and plots per GPU generation and model. Without RESULTS the "
        "baseline store is reported. Results sharing a matrix and cell id are runs of that cell and are pooled, as the "
        "gate pools them. With --gate, each cell of RESULTS gets its verdict against --baselines and the "
        "exit code is the gate's (1 on a regression).",
    )
    p.add_argument(
        "results",
        nargs="*",
        type=Path,
        metavar="RESULTS",
        help="result or baseline files, or folders searched recursively (default: --baselines)",
    )
    p.add_argument("--baselines", type=Path, default=Path("baselines"), help="baseline store (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default: %(default)s)")
    p.add_argument("--gate", action="store_true", help="add the gate verdict of each cell against --baselines")
    p.add_argument("--gate-config", type=Path, help="gate thresholds TOML (default: the shipped one)")
    p.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="with --gate: compare across GPU generation, count, model or profile (labelled)",
    )
    p.add_argument(
        "--plan",
        action="append",
        type=Path,
        default=[],
        metavar="MATRIX",
        help="also plan these matrix files, or the *.toml in these folders (CPU only, nothing runs), and list "
        "each one without a result: how many cells fit and why the reference does or does not (repeatable)",
    )
    p.add_argument(
        "--evidence",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="also list the runs under these folders (raw GPU files kept beside the store, e.g. "
        "baselines/evidence) whose cell has no baseline: what each measured and why it is not a baseline "
        "(repeatable)",
    )
    p.add_argument(
        "--speed",
        action="store_true",
        help="also check the speed planner against every measured run read (the store and --evidence): each "
        "run's step predicted by constants fitted without its cell",
    )
    p.add_argument(
        "--reference-gpu",
        default="h100",
        help="generation the cross-generation ratios divide by (default: %(default)s)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from suite.errors import InputError
    from suite.report.build import write_report
    from suite.report.load import load_results
    from suite.report.table import flatten_all, with_verdicts

    if args.gate and not args.results:
        raise InputError("--gate needs RESULTS to compare with --baselines (the baselines match themselves)")
    sources = args.results or [args.baselines]
    if not args.results and args.baselines.is_dir():
        from suite.gate.store import index_baselines

        index_baselines(args.baselines)  # the store as the gate reads it: two files of one baseline are refused
    results = load_results(sources)
    if not results:
        raise InputError(f"no results found in {', '.join(map(str, sources))}")
    rows = flatten_all(results)
    notes: list[str] = []
    code = 0
    if args.gate:
        from suite.report.verdicts import gate

        outcome = gate(results, args.baselines, config=args.gate_config, allow_mismatch=args.allow_mismatch)
        rows = with_verdicts(rows, outcome.verdicts)
        notes, code = outcome.notes, outcome.exit_code
    from suite.report.history import collect

    # the store's series (promotions, recorded gate runs) of the cells shown, when the store is read anyway:
    # reported itself, or gated against
    reads_store = (args.gate or not args.results) and args.baselines.is_dir()
    histories = collect(args.baselines, {r.key for r in rows}) if reads_store else []
    from suite.report.planned import plan_matrices

    planned = plan_matrices(args.plan) if args.plan else []
    evidence, skipped = _evidence(args.evidence, {r.key for r in rows}, args.gate_config)
    speed = None
    if args.speed:
        from suite.report.speedcheck import speed_checks

        speed = speed_checks([p for p in [*sources, *args.evidence] if p.exists()])
    written = write_report(
        rows,
        args.out,
        reference=args.reference_gpu,
        gated=args.gate,
        notes=notes,
        histories=histories,
        planned=planned,
        evidence=evidence,
        evidence_skipped=skipped,
        speed=speed,
    )
    for path in written.values():
        print(path)
    if code:
        print("grpo-suite report: the gate found a regression (see the verdict column)", file=sys.stderr)
    return code


def _evidence(
    folders: list[Path], shown: set[tuple[str, str, str]], gate_config: Path | None
) -> tuple[list[EvidenceRun], list[str]]:
    """The evidence runs of cells the report shows no row of, from each folder, and the files the result reader
    refused there (old raw files are never edited to agree with today's checks)."""
    from suite.errors import InputError
    from suite.gate.config import load_config
    from suite.report.evidence import evidence_runs
    from suite.results.collect import load_results

    runs: list[EvidenceRun] = []
    skipped: list[str] = []
    if not folders:
        return runs, skipped
    config = load_config(gate_config)
    for folder in folders:
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder", field="--evidence")
        found = load_results([folder], on_error="skip", skipped=skipped)
        runs += evidence_runs(found, folder, shown, config)
    return runs, skipped
