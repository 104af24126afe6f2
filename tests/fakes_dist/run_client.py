"""Run one cell with a distributed runtime in its own process, so a test can Ctrl-C it (SIGINT) like a user.

    python run_client.py RUNTIME CELL.json CELL_DIR [--timeout S] [--option KEY=VALUE ...]

Exit code: 0 ok, 1 failed cell, 130 interrupted (the runtime recorded the cell and re-raised Ctrl-C)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from suite.run.cellio import load_cell
from suite.run.runtime import make_runtime


def main() -> int:
    # Like a user's terminal process: Ctrl-C raises KeyboardInterrupt even when the test's shell started us
    # with SIGINT ignored (background commands of a shell without job control).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    p = argparse.ArgumentParser()
    p.add_argument("runtime")
    p.add_argument("cell")
    p.add_argument("cell_dir")
    p.add_argument("--timeout", type=float, default=None)
    p.add_argument("--option", action="append", default=[])
    a = p.parse_args()
    opts = dict(o.split("=", 1) for o in a.option)
    runtime = make_runtime(a.runtime, **opts)
    try:
        result = runtime.run_cell(
            load_cell(a.cell),
            Path(a.cell_dir),
            timeout_s=a.timeout,
            on_step=lambda n: print(f"client: step {n}", flush=True),
        )
    except KeyboardInterrupt:
        print("client: interrupted", flush=True)
        return 130
    print(f"client: {result.status}", flush=True)
    return 0 if result.status == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
