"""`grpo-suite speed predict MATRIX...` (predicted s/step, tokens/s/GPU and run wall time per cell, fastest
first), `grpo-suite speed validate RESULTS...` (predicted vs measured steps, in sample or leaving each cell
out) and `grpo-suite speed fit RESULTS... --out F` (the constants from measured steps)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "speed", help="predict seconds per step, tokens/s/GPU and run wall time of cells; validate and fit on results"
    )
    ssub = p.add_subparsers(dest="speed_command", metavar="SUBCOMMAND")

    pr = ssub.add_parser("predict", help="predicted speed of every cell of matrices, fastest first")
    pr.add_argument("matrix", nargs="+", help="matrix TOML files")
    pr.add_argument("--profile", default="bench", help="profile of the matrix (default: bench)")
    pr.add_argument("--window", type=float, default=None, help="seconds a host has: mark the cells whose run fits")
    pr.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    pr.add_argument("--constants", default=None, help="constants TOML (default: suite/speed/constants.toml)")
    pr.set_defaults(func=run_predict)

    va = ssub.add_parser("validate", help="predicted vs measured seconds per step of stored results")
    va.add_argument("results", nargs="+", help="result JSON files or directories (evidence folders included)")
    va.add_argument(
        "--leave-one-out",
        action="store_true",
        help="predict each cell with constants fitted on every other cell (an out-of-sample test)",
    )
    va.add_argument("--tolerance", type=float, default=10.0, help="goal for the median |error|, percent (10)")
    va.add_argument("--format", choices=("markdown", "json"), default="markdown")
    va.add_argument("--constants", default=None, help="constants TOML (default: suite/speed/constants.toml)")
    va.set_defaults(func=run_validate)

    fi = ssub.add_parser("fit", help="fit the constants on stored results and write them")
    fi.add_argument("results", nargs="+", help="result JSON files or directories (evidence folders included)")
    fi.add_argument("--out", required=True, help="constants TOML to write (e.g. suite/speed/constants.toml)")
    fi.set_defaults(func=run_fit)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _constants(path: str | None):  # -> Constants
    from suite.speed.constants import default_constants, load_constants

    return load_constants(path) if path else default_constants()


def _samples(paths: list[str]):  # -> list[Sample]
    from suite.errors import InputError
    from suite.speed.fit import measured_samples

    samples = measured_samples(paths)
    if not samples:
        raise InputError(f"no measured FSDP run with verl's phase timings under {' '.join(paths)}")
    return samples


def run_predict(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from suite.memory.cli import predicted_cells
    from suite.speed.predict import predict_cells
    from suite.speed.render import predict_table

    k = _constants(args.constants)
    rows = predict_cells([c for path in args.matrix for c in predicted_cells(path, args.profile)], k)
    if args.format == "json":
        out = []
        for r in rows:
            d = asdict(r)
            d["run_s"] = r.run_s
            if args.window is not None:
                d["fits_window"] = r.fits(args.window)
            out.append(d)
        print(json.dumps(out, indent=2))
    else:
        print(predict_table(rows, window_s=args.window, fmt=args.format))
    return 0


def run_validate(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from suite.errors import EXIT_OK, EXIT_REGRESSION
    from suite.speed.fit import compare, leave_one_out, summarize
    from suite.speed.render import validate_table

    samples = _samples(args.results)
    k = _constants(args.constants)
    rows = leave_one_out(samples, prompt_tokens=k.prompt_tokens) if args.leave_one_out else compare(samples, k)
    summary = summarize(rows)
    if args.format == "json":
        print(
            json.dumps(
                {"rows": [asdict(r) | {"error": r.error} for r in rows], "summary": asdict(summary)},
                indent=2,
            )
        )
    else:
        print(validate_table(rows, summary, leave_one_out=args.leave_one_out))
    return EXIT_OK if summary.median_abs_error <= args.tolerance / 100 else EXIT_REGRESSION


def run_fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from suite.results.io import write_text_atomic
    from suite.speed.constants import dumps
    from suite.speed.fit import compare, fit, summarize

    samples = _samples(args.results)
    k = fit(samples)
    s = summarize(compare(samples, k))
    header = (
        f"The speed model's constants (suite/speed/work.py names each feature), fitted by `grpo-suite speed fit "
        f"{' '.join(args.results)}`\non {len(samples)} measured runs: in sample, median |error| of the step "
        f"{s.median_abs_error:.1%}, {s.within_10} of {s.n} within 10 %.\nWritten by the command; do not edit "
        "by hand (refit instead)."
    )
    write_text_atomic(Path(args.out), dumps(k, header=header))
    print(f"wrote {args.out}: {len(samples)} runs, in sample median |error| {s.median_abs_error:.1%}")
    return 0
