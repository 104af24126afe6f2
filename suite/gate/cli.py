"""`grpo-suite gate` and `grpo-suite baseline promote|list|calibrate|history`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    gate = subparsers.add_parser(
        "gate",
        help="compare results with their baselines; exit 0 no regression, 1 regression, 2 bad input",
        description="Compare each result cell with its stored baseline, one verdict per cell and metric: "
        "improved / unchanged / suspicious / regressed / new / missing / failed. Several result files of one "
        "matrix and cell id are pooled (N runs x M steps); each cell is paired with the baseline of its own GPU "
        "generation, matrix and cell id.",
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
    gate.add_argument(
        "--require-baseline",
        action="store_true",
        help="a cell without a baseline fails (exit 1) instead of passing as new; a --baselines folder holding "
        "no baseline at all is an input error (exit 2)",
    )
    gate.add_argument(
        "--record",
        action="store_true",
        help="append each compared cell's runs and verdicts to its baseline file (the series that "
        "`baseline history` prints and the consecutive rule counts)",
    )
    gate.set_defaults(func=run_gate)

    baseline = subparsers.add_parser("baseline", help="manage the baseline store")
    sub = baseline.add_subparsers(dest="baseline_command", metavar="ACTION", parser_class=type(baseline))
    promote = sub.add_parser(
        "promote", help="add or replace baselines from results (runs of one matrix and cell id are pooled)"
    )
    promote.add_argument("results", nargs="+", metavar="RESULT", help="result files or folders")
    promote.add_argument("--baselines", default="baselines", type=Path)
    promote.add_argument(
        "--config", type=Path, help="thresholds TOML (the minimum number of samples, the correctness sentinel)"
    )
    promote.add_argument(
        "--allow-failed",
        action="store_true",
        help="also promote results whose status is not ok or whose rollout/actor mismatch fails the sentinel",
    )
    promote.set_defaults(func=run_promote)
    listing = sub.add_parser("list", help="list stored baselines")
    listing.add_argument("--baselines", default="baselines", type=Path)
    listing.add_argument("--gpu", action="append", help="only this GPU generation (repeatable)")
    listing.set_defaults(func=run_list)
    cal = sub.add_parser(
        "calibrate", help="derive each cell's throughput and memory tolerance from its baseline's own runs"
    )
    cal.add_argument("cells", nargs="*", metavar="CELL", help="full cell ids or fnmatch patterns (default: all)")
    cal.add_argument("--baselines", default="baselines", type=Path)
    cal.add_argument("--gpu", action="append", help="only this GPU generation (repeatable)")
    cal.add_argument("--config", type=Path, help="thresholds TOML ([calibration] factor, min_runs, floors)")
    cal.set_defaults(func=run_calibrate)
    hist = sub.add_parser("history", help="print a cell's series: promotions and recorded gated runs")
    hist.add_argument("cell", metavar="CELL", help="full cell id or fnmatch pattern")
    hist.add_argument("--baselines", default="baselines", type=Path)
    hist.add_argument("--gpu", action="append", help="only this GPU generation (repeatable)")
    hist.add_argument("--matrix", help="only this matrix")
    hist.add_argument("--format", choices=("table", "json"), default="table")
    hist.set_defaults(func=run_history)


def _results(paths: list[str]) -> list:
    from suite.errors import InputError
    from suite.results.collect import load_results

    results = load_results(paths)
    if not results:
        raise InputError(f"no result files found in {', '.join(map(str, paths))} (expected *.json results)")
    return results


def run_gate(args: argparse.Namespace) -> int:
    from suite.gate.compare import compare
    from suite.gate.config import load_config
    from suite.gate.record import record_report
    from suite.gate.render import RENDERERS

    config = load_config(args.config)
    results = _results(args.results)
    report = compare(
        results,
        args.baselines,
        config,
        allow_mismatch=args.allow_mismatch,
        require_baseline=args.require_baseline,
    )
    if args.record:
        report.notes += record_report(report, results, args.baselines)
    text = RENDERERS[args.format](report)
    print(text)
    if args.output:
        with args.output.open("a", encoding="utf-8") as fh:  # append: $GITHUB_STEP_SUMMARY is shared
            fh.write(text + "\n")
    return report.exit_code


def run_promote(args: argparse.Namespace) -> int:
    from suite.gate.compare import required_samples
    from suite.gate.config import SentinelThresholds, load_config
    from suite.gate.store import promote

    config = load_config(args.config)
    results = _results(args.results)
    need = max(required_samples(config.for_cell(r.id).throughput) for _, r in results)

    def sentinel(cell_id: str) -> SentinelThresholds:
        return config.for_cell(cell_id).sentinel

    promoted = promote(results, args.baselines, allow_failed=args.allow_failed, min_samples=need, sentinel=sentinel)
    for p in promoted:
        replaced = f"; replaced the baseline of {p.replaced}" if p.replaced else ""
        replaced += "; its calibration is dropped (run baseline calibrate again)" if p.calibration_dropped else ""
        print(f"promoted {p.id} -> {p.path} ({p.runs} run(s), {p.measured_steps} measured steps, {p.status}{replaced})")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from suite.gate.cells import median, pool
    from suite.gate.store import describe_versions, list_baselines

    rows = []
    for _path, b in list_baselines(args.baselines, args.gpu):
        cell = pool(b.results)
        tput = median(cell.throughput)
        v = describe_versions(b.results[0].provenance)
        cal = b.calibration
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
                len(b.gated),
                f"±{cal.throughput_tolerance:.1%} ({cal.runs} runs)" if cal else "-",
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
        "gated",
        "calibrated",
    ]
    print(tabulate(rows, headers, tablefmt="simple") if rows else f"no baselines in {args.baselines}")
    return 0


def _matches(cell_id: str, patterns: list[str]) -> bool:
    import fnmatch

    return not patterns or any(cell_id == p or fnmatch.fnmatchcase(cell_id, p) for p in patterns)


def run_calibrate(args: argparse.Namespace) -> int:
    from suite.errors import InputError
    from suite.gate.calibrate import calibrate
    from suite.gate.config import load_config
    from suite.gate.store import label, list_baselines, now_iso
    from suite.results.baseline import write_baseline

    settings = load_config(args.config).calibration
    chosen = [(p, b) for p, b in list_baselines(args.baselines, args.gpu) if _matches(b.id, args.cells)]
    if not chosen:
        raise InputError(f"no baseline in {args.baselines} matches {args.cells or 'any cell'}")
    stamp = now_iso()
    done = 0
    for path, b in chosen:
        out = calibrate(b, settings, stamp)
        name = f"{b.gpu}, {label(b.matrix, b.id)}"
        if out.calibration is None:
            print(f"not calibrated {name}: {out.reason}")
            continue
        write_baseline(path, b.model_copy(update={"calibration": out.calibration}))
        done += 1
        print(f"calibrated {name}: {out.reason} -> {path}")
    print(f"{done} of {len(chosen)} baseline(s) calibrated (factor {settings.factor:g}, min {settings.min_runs} runs)")
    return 0


def run_history(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from suite.errors import InputError
    from suite.gate.history import series
    from suite.gate.render import render_history
    from suite.gate.store import list_baselines

    chosen = [
        (p, b)
        for p, b in list_baselines(args.baselines, args.gpu)
        if _matches(b.id, [args.cell]) and (args.matrix is None or b.matrix == args.matrix)
    ]
    if not chosen:
        raise InputError(f"no baseline in {args.baselines} for cell {args.cell!r}", field="CELL")
    if args.format == "json":
        doc = [
            {"gpu": b.gpu, "matrix": b.matrix, "cell": b.id, "file": str(p), "series": [asdict(x) for x in series(b)]}
            for p, b in chosen
        ]
        print(json.dumps(doc, indent=2))
        return 0
    print("\n\n".join(render_history(p, b, series(b)) for p, b in chosen))
    return 0
