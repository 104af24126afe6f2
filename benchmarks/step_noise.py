"""Where the step-to-step noise of bench cells comes from, measured on the committed results.

For every ok result with at least 5 measured steps (the store, or any glob of result/baseline files) this
prints, per cell: the CV of per-step tokens/s and of step time; verl's `gen` timer (mean, sd and how many
2-second polling quanta it spans: verl 0.9.1's v1 trainer times `ReplayBuffer.sample`, which sleeps
`poll_interval = 2.0` s between checks); the sd of the other timed phases and the correlation of
`old_log_prob` with `ref` (adjacent phases that trade time); the CV of the step's token count and its
correlation with step time; the lag-1 autocorrelation of step time (iid steps give about -1/n); and how many
other committed runs overlapped it in time (cells side by side on one host). Then, pooled over the cells, the
share of the step-time variance each phase carries.

    python benchmarks/step_noise.py                          # baselines/h100, baselines/h200
    python benchmarks/step_noise.py 'baselines/**/*.json'    # with the evidence folders
"""

from __future__ import annotations

import argparse
import glob
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suite.errors import InputError
from suite.results.collect import read_results_file
from suite.results.schema import Result

PHASES = ("gen", "old_log_prob", "ref", "update_actor", "update_weights", "adv")
POLL_S = 2.0


def _cv(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1) / np.mean(x))


def _lag1(x: np.ndarray) -> float:
    d = x - x.mean()
    return float(np.sum(d[1:] * d[:-1]) / np.sum(d * d))


def _when(r: Result) -> tuple[datetime, datetime] | None:
    p = r.provenance
    if not p.start_time or not p.end_time:
        return None
    return datetime.fromisoformat(p.start_time), datetime.fromisoformat(p.end_time)


def load(patterns: list[str], statuses: tuple[str, ...] = ("ok",)) -> list[tuple[str, Result]]:
    """Results of the given statuses with >= 5 measured steps, one per distinct step series (a promoted copy
    of an evidence run is the same run)."""
    seen: set[tuple[float, ...]] = set()
    out = []
    for pattern in patterns:
        for name in sorted(glob.glob(pattern, recursive=True)):
            try:
                results = read_results_file(Path(name), in_folder=True) or []
            except InputError as exc:
                print(f"skipped (refused by the reader): {exc}", file=sys.stderr)
                continue
            for r in results:
                steps = r.measured_steps()
                key = tuple(round(s.time_per_step, 4) for s in steps)
                if r.status not in statuses or len(steps) < 5 or key in seen:
                    continue
                seen.add(key)
                out.append((name, r))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("patterns", nargs="*", default=["baselines/h100/**/*.json", "baselines/h200/**/*.json"])
    ap.add_argument(
        "--with-partial",
        action="store_true",
        help="also runs cut off (interrupted, timeout): their measured steps are real steps",
    )
    args = ap.parse_args(argv)
    found = load(args.patterns, ("ok", "interrupted", "timeout") if args.with_partial else ("ok",))
    if not found:
        print(f"no ok result with >= 5 measured steps in {args.patterns}", file=sys.stderr)
        return 2
    spans = [(r.id, _when(r)) for _, r in found]
    rows, shares = [], {p: 0.0 for p in (*PHASES, "untimed")}
    total_var = 0.0
    for _name, r in found:
        steps = r.measured_steps()
        tput = np.array([s.throughput for s in steps])
        time = np.array([s.time_per_step for s in steps])
        tokens = np.array([s.total_num_tokens or np.nan for s in steps])
        phase = {p: np.array([s.timing_s.get(p, 0.0) for s in steps]) for p in PHASES}
        untimed = time - sum(phase.values())
        gen = phase["gen"]
        quanta = sorted({int(g // POLL_S) for g in gen})
        mine = _when(r)
        beside = (
            sum(1 for other, w in spans if w and other != r.id and w[0] < mine[1] and mine[0] < w[1]) if mine else None
        )
        corr_tok = float(np.corrcoef(tokens, time)[0, 1]) if not np.isnan(tokens).any() else float("nan")
        rows.append(
            [
                f"{r.gpu} {r.matrix}: {r.id.split('/', 3)[-1]}" + ("" if r.status == "ok" else f" ({r.status})"),
                r.profile,
                len(steps),
                f"{time.mean():.2f}",
                f"{_cv(tput):.1%}",
                f"{_cv(time):.1%}",
                f"{gen.mean():.2f} ± {gen.std(ddof=1):.2f}",
                f"{len(quanta)} ({', '.join(f'{2 * q}-{2 * q + 2}' for q in quanta)} s)",
                " / ".join(f"{phase[p].std(ddof=1):.2f}" for p in ("old_log_prob", "ref", "update_actor")),
                f"{np.corrcoef(phase['old_log_prob'], phase['ref'])[0, 1]:+.2f}",
                f"{_cv(tokens):.1%}" if not np.isnan(tokens).any() else "-",
                f"{corr_tok:+.2f}",
                f"{_lag1(time):+.2f}",
                "-" if beside is None else str(beside),
            ]
        )
        # variance shares: cov(phase, step) / var(step) adds up to 1 over the phases and the untimed rest
        var = float(np.var(time, ddof=1))
        total_var += var
        for p in PHASES:
            shares[p] += float(np.cov(phase[p], time, ddof=1)[0, 1])
        shares["untimed"] += float(np.cov(untimed, time, ddof=1)[0, 1])
    headers = [
        "cell",
        "profile",
        "steps",
        "step s",
        "CV tok/s",
        "CV step",
        "gen s",
        "gen quanta",
        "sd old_log_prob / ref / update_actor s",
        "corr(old_log_prob, ref)",
        "CV tokens",
        "corr(tokens, step)",
        "lag-1 autocorr",
        "runs beside",
    ]
    print(f"{len(found)} runs with >= 5 measured steps from {', '.join(args.patterns)}\n")
    print(tabulate(rows, headers, tablefmt="github"))
    print("\nShare of the step-time variance, pooled over these runs (cov(phase, step) / var(step)):\n")
    print(tabulate([[p, f"{v / total_var:.0%}"] for p, v in shares.items()], ["phase", "share"], tablefmt="github"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
