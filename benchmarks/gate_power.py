"""How good is the throughput gate, measured on real per-step samples.

For every committed baseline cell (default glob `baselines/**/*.json`) this resamples its measured steps
into a simulated baseline and a simulated new result of N runs x M steps each, slows the new one by the
slowdown (tokens/s x (1 - s), seconds / (1 - s)) and applies the gate's own decision
(`suite.gate.compare.throughput_outcome`, thresholds from the shipped TOML or --config). It reports the
false-alarm rate (slowdown 0) and the detection power per slowdown, per design and measured quantity
(`--measures`: the median of per-step tokens/s, "step", or tokens over the whole window / its seconds,
"window"), averaged over cells and for the worst cell, and the smallest drop caught at >= 95 % power in
every cell by the designs whose false alarms stay <= 1 %.

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
    # per run and measured step: (tokens, seconds x GPUs), so that a resampled step keeps its own pair
    windows: tuple[tuple[tuple[float, float], ...], ...] = ()


def load_cells(pattern: str) -> list[CellSamples]:
    cells = []
    for path in sorted(glob.glob(pattern, recursive=True)):
        baseline = read_baseline(Path(path))
        ok = [r for r in baseline.results if r.status == "ok" and r.measured_steps()]
        runs = tuple(tuple(s.throughput for s in r.measured_steps()) for r in ok)
        windows = tuple(
            tuple((s.total_num_tokens or float("nan"), s.time_per_step * r.n_gpus) for s in r.measured_steps())
            for r in ok
        )
        if runs:
            # a cell id alone is ambiguous across matrices
            cells.append(CellSamples(label(baseline.matrix, baseline.id), path, runs, baseline.id, windows))
    return cells


def noise(cell: CellSamples) -> tuple[float, float | None]:
    """Within-run CV of steps (pooled) and CV of the run medians (None with one run)."""
    within = [np.std(r, ddof=1) / np.mean(r) for r in cell.runs if len(r) > 1]
    medians = [statistics.median(r) for r in cell.runs]
    between = float(np.std(medians, ddof=1) / np.mean(medians)) if len(medians) > 1 else None
    return float(np.mean(within)) if within else float("nan"), between


Sample = tuple[np.ndarray, np.ndarray, np.ndarray]  # per simulated step: tokens/s/GPU, tokens, seconds x GPUs


def simulate(cell: CellSamples, n: int, m: int, rng: np.random.Generator) -> Sample:
    """N runs x M steps: a run drawn at random, then M of its steps with replacement (each step keeps its
    throughput, token count and seconds together)."""
    picks = rng.integers(0, len(cell.runs), size=n)
    idx = [rng.integers(0, len(cell.runs[i]), size=m) for i in picks]
    tput = np.concatenate([np.asarray(cell.runs[i])[j] for i, j in zip(picks, idx, strict=True)])
    if not cell.windows:
        nan = np.full(tput.shape, np.nan)
        return tput, nan, nan
    pairs = [np.asarray(cell.windows[i])[j] for i, j in zip(picks, idx, strict=True)]
    tokens = np.concatenate([p[:, 0] for p in pairs])
    seconds = np.concatenate([p[:, 1] for p in pairs])
    return tput, tokens, seconds


def rates(
    cell: CellSamples, n: int, m: int, slowdowns: list[float], trials: int, config: GateConfig, seed: int
) -> dict[float, float]:
    """Fraction of trials the gate says `regressed`, per slowdown (%)."""
    th = config.for_cell(cell.id).throughput
    rng = np.random.default_rng([seed, zlib.crc32((cell.seed_key or cell.id).encode()), n, m])
    out = {}
    for s in slowdowns:
        flagged = 0
        keep = 1.0 - s / 100.0
        for t in range(trials):
            b_tput, b_tok, b_sec = simulate(cell, n, m, rng)
            c_tput, c_tok, c_sec = simulate(cell, n, m, rng)
            windows = {}
            if not (np.isnan(b_tok).any() or np.isnan(c_tok).any()):
                windows = {"current_window": (c_tok, c_sec / keep), "baseline_window": (b_tok, b_sec)}
            verdict = throughput_outcome(
                c_tput * keep, b_tput, th, config.gate, seed=t, always_interval=False, **windows
            ).verdict
            flagged += verdict == "regressed"
        out[s] = flagged / trials
    return out


def with_options(config: GateConfig, rule: str | None, measure: str | None) -> GateConfig:
    update = {k: v for k, v in (("effect_rule", rule), ("measure", measure)) if v is not None}
    if not update:
        return config
    return config.model_copy(update={"throughput": config.throughput.model_copy(update=update)})


def _job(args: tuple) -> tuple[str, str, int, int, dict[float, float]]:
    cell, (rule, measure), n, m, slowdowns, trials, config_path, seed, bootstrap = args
    config = with_options(load_config(config_path), rule, measure)
    if bootstrap:
        config = config.model_copy(update={"gate": config.gate.model_copy(update={"bootstrap_resamples": bootstrap})})
    variant = f"{config.throughput.measure}, {config.throughput.effect_rule}"
    return cell.id, variant, n, m, rates(cell, n, m, slowdowns, trials, config, seed)


def smallest_caught(per_cell: list[dict[float, float]], slowdowns: list[float]) -> float | None:
    """The smallest slowdown (%) detected with >= 95 % power in every cell, or None within the grid."""
    return next((s for s in slowdowns if s > 0 and min(r[s] for r in per_cell) >= GOAL_POWER), None)


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
    ap.add_argument("--slowdowns", default="0,1,2,3,4,5,6,7,8,10,12,15,20", help="percent, comma list")
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
    ap.add_argument(
        "--measures", default="", help="measured quantities to compare: step,window (default: the config's)"
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
        f"alpha={t.alpha}, min_effect={t.min_effect:.0%}, default effect_rule={t.effect_rule}, "
        f"default measure={t.measure}; "
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
    measures = [r.strip() for r in args.measures.split(",") if r.strip()] or [None]
    jobs = [
        (c, (rule, measure), n, m, slowdowns, args.trials, args.config, args.seed, args.bootstrap)
        for measure in measures
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
        ["measure, effect rule", "N runs x M steps", "false alarm (mean / worst cell)"]
        + [f"power {s:g} %" for s in slowdowns if s > 0]
        + ["smallest drop caught", "goal met"]
    )
    table, met, smallest = [], [], []
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
        caught = smallest_caught(per_cell, slowdowns) if max(fa) <= GOAL_FALSE_ALARM else None
        shown = (
            f"{caught:g} %"
            if caught is not None
            else (f"> {max(slowdowns):g} %" if max(fa) <= GOAL_FALSE_ALARM else "false alarms > 1 %")
        )
        row.append(shown)
        smallest.append([rule, f"{n} x {m}", f"{max(fa):.1%}", shown])
        row.append("yes" if ok else "no")
        met += [(n * m, n, m, rule)] if ok else []
        table.append(row)
    print(tabulate(table, headers, tablefmt="github"))
    print()
    print(
        f"Smallest drop caught with >= {GOAL_POWER:.0%} power in every cell, where false alarms stay <= "
        f"{GOAL_FALSE_ALARM:.0%} in every cell (slowdown grid {', '.join(f'{s:g}' for s in slowdowns)} %):\n"
    )
    print(
        tabulate(
            smallest,
            ["measure, effect rule", "N runs x M steps", "worst false alarm", "smallest drop"],
            tablefmt="github",
        )
    )
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
