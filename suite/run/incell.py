"""In-cell entry point: run ONE cell in the current environment and write `OUT/result.json`.

    python -m suite.run.incell --cell CELL.json --out DIR [--timeout S] [--gpus 0,1]

Docker containers, Ray jobs and Slurm jobs run this; it uses the host runtime, so the log
(`DIR/log.txt`), verl metrics (`DIR/metrics.jsonl`), validation dumps (`DIR/validation/`) and the result
land in DIR exactly as for `--runtime host`.

Note: the cell's argv already names its metrics / validation paths (the planner points them at
`<out>/<full_id>/`); the outer runtime must mount or map that directory to DIR, or pass the same DIR.

Exit codes: 0 cell ok, 1 cell failed (result written, see its status), 2 bad input,
130 interrupted (result written with status interrupted).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from suite.errors import EXIT_USAGE, InputError
from suite.run.cellio import load_cell
from suite.run.host import HostRuntime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suite.run.incell", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", required=True, help="Cell JSON as written by Cell.to_dict()")
    parser.add_argument("--out", required=True, help="cell directory: result.json, log.txt, metrics.jsonl")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before the cell is stopped")
    parser.add_argument("--gpus", default=None, help="GPU indices to pin, e.g. 0,1 (default: all visible)")
    parser.add_argument(
        "--runtime-name", default=None, help="runtime recorded in provenance (docker / ray / slurm); default host"
    )
    args = parser.parse_args(argv)
    try:
        cell = load_cell(args.cell)
        gpus = [int(x) for x in args.gpus.split(",") if x.strip()] if args.gpus else None
    except (InputError, ValueError) as exc:
        print(f"suite.run.incell: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    runtime = HostRuntime(record_as=args.runtime_name)

    # `docker stop`, a plain `scancel` and Ray's stop_job send SIGTERM: stop the cell as on Ctrl-C, so its
    # partial result is still written.
    def _term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    # Slurm's `scancel --signal=INT` and Ray reach a process whose shell may have started it with SIGINT
    # ignored (no job control): take SIGINT back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = runtime.run_cell(cell, Path(args.out), timeout_s=args.timeout, gpus=gpus)
    except KeyboardInterrupt:
        return 130
    return 0 if result.status == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
