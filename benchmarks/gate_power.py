"""How good is the throughput gate, measured on real per-step samples.

For every committed baseline cell (default glob `baselines/**/*.json`) this resamples its measured steps
into a simulated baseline and a simulated new result of N runs x M steps each, multiplies the new one by
(1 - slowdown) and applies the gate's own decision (`suite.gate.compare.throughput_outcome`, thresholds from
the shipped TOML or --config). It reports the false-alarm rate (slowdown 0) and the detection power for
slowdowns of 1-10 %, per design, averaged over cells and for the worst cell.

Resampling: when a cell has several runs, a simulated run is one real run drawn at random, then M of its
steps drawn with replacement, so run-to-run offsets seen on the GPUs carry into the simulation; with a
single run only step-to-step noise is present (the report says which). Steps are treated as exchangeable
within a run (no autocorrelation).

    python benchmarks/gate_power.py                       # committed baselines, default thresholds
    python benchmarks/gate_power.py --baselines '/tmp/standin/**/*.json' --trials 500
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suite.gate.compare import throughput_outcome
from suite.gate.config import GateConfig, load_config
from suite.gate.store import label, read_baseline

GOAL_SLOWDOWN, GOAL_POWER, GOAL_FALSE_ALARM = 3.0, 0.95, 0.01


@dataclass(frozen=True)
class CellSamples:
    id: str
    source: str
    runs: tuple[tuple[float, ...], ...]  # measured throughput per run, tokens/s/GPU
    seed_key: str = ""  # the bare cell id: random streams stay those of tables made before ids were labelled


def load_cells(pattern: str) -> list[CellSamples]:
    cells = []
    for path in sorted(glob.glob(pattern, recursive=True)):
        baseline = read_baseline(Path(path))
        runs = tuple(
            tuple(s.throughput for s in r.measured_steps())
            for r in baseline.results
            if r.status == "ok" and r.measured_steps()
        )
        if runs:
            # a cell id alone is ambiguous across matrices
            cells.append(CellSamples(label(baseline.matrix, baseline.id), path, runs, baseline.id))
    return cells


def noise(cell: CellSamples) -> tuple[float, float | None]:
    """Within-run CV of steps (pooled) and CV of the run medians (None with one run)."""
    within = [np.std(r, ddof=1) / np.mean(r) for r in cell.runs if len(r) > 1]
    medians = [statistics.median(r) for r in cell.runs]
    between = float(np.std(medians, ddof=1) / np.mean(medians)) if len(medians) > 1 else None
    return float(np.mean(within)) if within else float("nan"), between


def simulate(cell: CellSamples, n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    picks = rng.integers(0, len(cell.runs), size=n)
    return np.concatenate([rng.choice(np.asarray(cell.runs[i]), size=m, replace=True) for i in picks])


def rates(
    cell: CellSamples, n: int, m: int, slowdowns: list[float], trials: int, config: GateConfig, seed: int
) -> dict[float, float]:
    """Fraction of trials the gate says `regressed`, per slowdown (%)."""
    th = config.for_cell(cell.id).throughput
    rng = np.random.default_rng([seed, zlib.crc32((cell.seed_key or cell.id).encode()), n, m])
    out = {}
    for s in slowdowns:
        flagged = 0
        for t in range(trials):
            base = simulate(cell, n, m, rng)
            cur = simulate(cell, n, m, rng) * (1.0 - s / 100.0)
            verdict = throughput_outcome(cur, base, th, config.gate, seed=t, always_interval=False).verdict
            flagged += verdict == "regressed"
        out[s] = flagged / trials
    return out


def with_rule(config: GateConfig, rule: str | None) -> GateConfig:
    if rule is None:
        return config
    throughput = config.throughput.model_copy(update={"effect_rule": rule})
    return config.model_copy(update={"throughput": throughput})


def _job(args: tuple) -> tuple[str, str, int, int, dict[float, float]]:
    cell, rule, n, m, slowdowns, trials, config_path, seed, bootstrap = args
    config = with_rule(load_config(config_path), rule)
    if bootstrap:
        config = config.model_copy(update={"gate": config.gate.model_copy(update={"bootstrap_resamples": bootstrap})})
    return cell.id, config.throughput.effect_rule, n, m, rates(cell, n, m, slowdowns, trials, config, seed)


def parse_designs(text: str) -> list[tuple[int, int]]:
    designs = []
    for part in text.split(","):
        n, _, m = part.strip().partition("x")
        designs.append((int(n), int(m)))
    return designs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baselines", default="baselines/**/*.json", help="glob of baseline files")
    ap.add_argument("--config", help="thresholds TOML merged over the shipped defaults")
    ap.add_argument("--designs", default="1x8,2x8,3x8,1x16,3x16,1x32,5x16", help="N runs x M steps, comma list")
    ap.add_argument("--slowdowns", default="0,1,2,3,4,5,7,10", help="percent, comma list")
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument(
        "--bootstrap", type=int, help="bootstrap resamples per decision (default: the config's; fewer is faster)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--per-cell", action="store_true", help="also print one table per cell")
    ap.add_argument(
        "--rules", default="", help="effect rules to compare, e.g. interval,estimate (default: the config's)"
    )
    args = ap.parse_args(argv)

    config = load_config(args.config)
    cells = load_cells(args.baselines)
    if not cells:
        print(f"no baselines with measured steps match {args.baselines!r}", file=sys.stderr)
        return 2
    designs = parse_designs(args.designs)
    slowdowns = [float(s) for s in args.slowdowns.split(",")]
    t = config.throughput
    print(
        f"Gate power on {len(cells)} baseline cell(s) from `{args.baselines}`; thresholds {config.source}: "
        f"alpha={t.alpha}, min_effect={t.min_effect:.0%}, default effect_rule={t.effect_rule}; "
        f"{args.trials} trials per point, {args.bootstrap or config.gate.bootstrap_resamples} bootstrap "
        "resamples; baseline and result both N runs x M steps.\n"
    )

    rows = []
    for cell in cells:
        within, between = noise(cell)
        rows.append(
            [
                cell.id,
                f"{len(cell.runs)} x {statistics.median(len(r) for r in cell.runs):.0f}",
                f"{statistics.median(x for r in cell.runs for x in r):.1f}",
                f"{within:.2%}",
                "n/a (1 run)" if between is None else f"{between:.2%}",
            ]
        )
    print(tabulate(rows, ["cell", "runs x steps", "median tok/s/GPU", "step CV", "run-median CV"], tablefmt="github"))
    print()

    rules = [r.strip() for r in args.rules.split(",") if r.strip()] or [None]
    jobs = [
        (c, rule, n, m, slowdowns, args.trials, args.config, args.seed, args.bootstrap)
        for rule in rules
        for c in cells
        for n, m in designs
    ]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(_job, jobs))
    by_design: dict[tuple[str, int, int], list[dict[float, float]]] = {}
    by_cell: dict[str, list[tuple[tuple[str, int, int], dict[float, float]]]] = {}
    for cell_id, rule, n, m, r in results:
        by_design.setdefault((rule, n, m), []).append(r)
        by_cell.setdefault(cell_id, []).append(((rule, n, m), r))

    headers = (
        ["effect rule", "N runs x M steps", "false alarm (mean / worst cell)"]
        + [f"power {s:g} %" for s in slowdowns if s > 0]
        + ["goal met"]
    )
    table, met = [], []
    for (rule, n, m), per_cell in by_design.items():
        fa = [r[0.0] for r in per_cell] if 0.0 in slowdowns else [float("nan")]
        row = [rule, f"{n} x {m}", f"{np.mean(fa):.1%} / {max(fa):.1%}"]
        for s in slowdowns:
            if s > 0:
                vals = [r[s] for r in per_cell]
                row.append(f"{np.mean(vals):.0%}" + (f" (min {min(vals):.0%})" if len(vals) > 1 else ""))
        ok = (
            GOAL_SLOWDOWN in slowdowns
            and max(fa) <= GOAL_FALSE_ALARM
            and min(r[GOAL_SLOWDOWN] for r in per_cell) >= GOAL_POWER
        )
        row.append("yes" if ok else "no")
        met += [(n * m, n, m, rule)] if ok else []
        table.append(row)
    print(tabulate(table, headers, tablefmt="github"))
    print()
    if met:
        _, n, m, rule = min(met)
        print(
            f"Smallest design meeting the goal ({GOAL_SLOWDOWN:g} % drop, power >= {GOAL_POWER:.0%}, "
            f"false alarms <= {GOAL_FALSE_ALARM:.0%}, every cell): {n} runs x {m} steps ({rule} rule)."
        )
    else:
        print(
            f"No design tried meets the goal ({GOAL_SLOWDOWN:g} % drop, power >= {GOAL_POWER:.0%}, "
            f"false alarms <= {GOAL_FALSE_ALARM:.0%}, every cell); try larger --designs."
        )
    if args.per_cell:
        for cell_id, items in by_cell.items():
            print(f"\n{cell_id}")
            print(
                tabulate(
                    [[rule, f"{n} x {m}", *(f"{r[s]:.1%}" for s in slowdowns)] for (rule, n, m), r in items],
                    ["rule", "design", *(f"{s:g} %" for s in slowdowns)],
                    tablefmt="github",
                )
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
