"""Verdicts: each result cell against its baseline, per metric. Plain data in, plain rows out.

Per cell: status, throughput, memory and accuracy against the baseline (tolerances from the baseline's
calibration where it has one, from the thresholds file otherwise), the correctness sentinel (rollout-vs-actor
mismatch, `suite.gate.sentinel`), and the consecutive rule over the recorded series (`suite.gate.history`):
a throughput, memory or accuracy violation is `suspicious` until it is the Nth in a row."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from suite.errors import InputError
from suite.gate import stats
from suite.gate.cells import PooledCell, median, pool
from suite.gate.config import (
    AccuracyThresholds,
    CellThresholds,
    GateConfig,
    GateSettings,
    HostMemoryThresholds,
    MemoryThresholds,
    ThroughputThresholds,
)
from suite.gate.history import decide, prior_streak, waits
from suite.gate.objective import note
from suite.gate.reference import CellRatios, cell_ratios, compared, find_reference, reference_id, stack_note
from suite.gate.sentinel import adapter_note, rope_note, sentinel_outcome
from suite.gate.store import Key, index_baselines, label
from suite.results.baseline import Baseline
from suite.results.schema import HOST_OOM_KINDS, Result
from suite.results.sentinels import PROBS_DIFF_MEAN as MISMATCH_KEY

Verdict = Literal["improved", "unchanged", "suspicious", "regressed", "new", "missing", "failed"]
VERDICTS: tuple[Verdict, ...] = ("regressed", "failed", "suspicious", "missing", "new", "improved", "unchanged")
# Not `matrix`: a result is paired only with the baseline of its own (generation, matrix, id), so the
# matrix always agrees (cell ids come from the axes alone; matrices with other [base] settings share them).
MATCH_FIELDS = ("gpu", "n_gpus", "model", "profile")
VERSION_KEYS = ("verl", "vllm", "torch", "ray", "transformers", "megatron-core")


@dataclass(frozen=True)
class Comparison:
    cell: str
    metric: str  # status | throughput | memory | host_memory | accuracy:<name> | sentinel:logprob
    verdict: Verdict
    regression: bool
    change: str = ""
    baseline: str = ""
    current: str = ""
    detail: str = ""
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    p_value: float | None = None
    n_baseline: int | None = None
    n_current: int | None = None
    matrix: str = ""  # the matrix of the result (or of the baseline, when missing)
    gpu: str = ""  # the generation it ran on: a cell is (gpu, matrix, cell)
    # The cell's current numbers over its matrix's reference cell (same generation, GPU count, model, backend
    # and matrix); shown beside the verdict, never part of it. Same on every row of a cell.
    reference: str = ""  # full id of the reference cell; "" when there is none to divide by
    reference_source: str = ""  # "current": the reference ran in this gate's results; "baseline": its stored one
    throughput_vs_reference: float | None = None
    peak_memory_vs_reference: float | None = None
    host_memory_vs_reference: float | None = None
    # objective axes in which the cell differs from its reference: its ratios compare other work
    reference_objective_differences: tuple[str, ...] = ()
    # packages whose versions differ from the reference's run: its ratios measure the stack too
    reference_stack_differences: str | None = None
    # The tolerance the verdict used (throughput: fraction; memory: GiB) and where it came from:
    # "calibration (N runs)" from the baseline's own runs, or "thresholds" (the TOML).
    tolerance: float | None = None
    tolerance_source: str = ""
    streak: int | None = None  # violations in a row of this metric, this run included (consecutive rule)


@dataclass
class GateReport:
    rows: list[Comparison] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)  # allowed with --allow-mismatch, shown as a label
    versions: dict[str, list[str]] = field(default_factory=dict)  # "verl 0.9.0 -> 0.9.1" -> "matrix: id"s
    notes: list[str] = field(default_factory=list)
    config_source: str = ""
    reference_notes: list[str] = field(default_factory=list)  # per group: which reference, from where
    sentinel_notes: list[str] = field(default_factory=list)  # per LoRA cell: what says the adapter reached vLLM

    @property
    def regressions(self) -> list[Comparison]:
        return [r for r in self.rows if r.regression]

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0

    def counts(self) -> dict[str, int]:
        return {v: sum(1 for r in self.rows if r.verdict == v) for v in VERDICTS}


# --- throughput -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThroughputOutcome:
    verdict: Verdict
    p_less: float
    p_greater: float
    change: stats.Change | None  # None only when not needed (interval not asked for and nothing significant)


def required_samples(t: ThroughputThresholds) -> int:
    return max(t.min_samples, stats.min_rank_test_samples(t.alpha))


Window = tuple[Sequence[float], Sequence[float]]  # per measured step: (tokens, seconds)


def _has_window(w: Window | None) -> bool:
    return w is not None and len(w[0]) > 0 and all(t is not None for t in w[0])


def throughput_outcome(
    current: Sequence[float],
    baseline: Sequence[float],
    t: ThroughputThresholds,
    g: GateSettings,
    *,
    seed: int,
    always_interval: bool = True,
    current_window: Window | None = None,
    baseline_window: Window | None = None,
    min_effect: float | None = None,
) -> ThroughputOutcome:
    """Regressed when the rank test on per-step tokens/s says slower at `alpha` AND the effect rule passes the
    minimum effect (`min_effect` when given, a calibrated tolerance; `t.min_effect` otherwise); improved
    symmetrically; unchanged otherwise. The change is that of the window throughput (`t.measure = "window"`,
    when both windows are given and every step has a token count) or of the median per-step throughput.
    Shared with benchmarks/gate_power.py."""
    effect = t.min_effect if min_effect is None else min_effect
    p_less = stats.mann_whitney_p(current, baseline, "less")
    p_greater = stats.mann_whitney_p(current, baseline, "greater")
    significant = p_less < t.alpha or p_greater < t.alpha
    window = t.measure == "window" and _has_window(current_window) and _has_window(baseline_window)
    change = None
    if always_interval or (significant and t.effect_rule == "interval"):
        if window:
            assert current_window is not None and baseline_window is not None
            change = stats.window_change(
                current_window, baseline_window, resamples=g.bootstrap_resamples, level=g.ci_level, seed=seed
            )
        else:
            change = stats.median_change(
                current, baseline, resamples=g.bootstrap_resamples, level=g.ci_level, seed=seed
            )
    if significant and change is None:
        if window:
            assert current_window is not None and baseline_window is not None
            est = float(
                (sum(current_window[0]) / sum(current_window[1])) / (sum(baseline_window[0]) / sum(baseline_window[1]))
                - 1.0
            )
        else:
            est = float(np.median(current) / np.median(baseline) - 1.0)
        change = stats.Change(est, est, est)
    verdict: Verdict = "unchanged"
    if change is not None:
        drop = change.low if t.effect_rule == "interval" else change.estimate
        gain = change.high if t.effect_rule == "interval" else change.estimate
        if p_less < t.alpha and drop <= -effect:
            verdict = "regressed"
        elif p_greater < t.alpha and gain >= effect:
            verdict = "improved"
    return ThroughputOutcome(verdict, p_less, p_greater, change)


def _pct(change: stats.Change) -> str:
    return f"{change.estimate * 100:+.1f} % [{change.low * 100:+.1f}, {change.high * 100:+.1f}]"


@dataclass(frozen=True)
class Tolerances:
    """What the throughput and memory verdicts of one cell compare against, and where it came from."""

    throughput: float  # minimum effect, fraction
    memory: MemoryThresholds
    host_memory: HostMemoryThresholds
    source: str  # "thresholds" | "calibration (N runs)"
    memory_gib: float | None = None  # calibrated memory tolerance; None: from `memory` (rel/abs)
    host_memory_gib: float | None = None  # calibrated; None: from `host_memory` (rel/abs)


def tolerances(baseline: Baseline, th: CellThresholds) -> Tolerances:
    cal = baseline.calibration
    if cal is None:
        return Tolerances(th.throughput.min_effect, th.memory, th.host_memory, "thresholds")
    return Tolerances(
        cal.throughput_tolerance,
        th.memory,
        th.host_memory,
        f"calibration ({cal.runs} runs)",
        cal.memory_tolerance_gib,
        cal.host_memory_tolerance_gib,
    )


def _window(cell: PooledCell) -> Window:
    return (
        ([t for t in cell.tokens if t is not None], cell.time_per_step)
        if all(t is not None for t in cell.tokens)
        else ((), ())
    )


def _throughput_row(
    cur: PooledCell, base: PooledCell, t: ThroughputThresholds, g: GateSettings, tol: Tolerances
) -> Comparison:
    seed = g.seed + zlib.crc32(cur.id.encode())
    out = throughput_outcome(
        cur.throughput,
        base.throughput,
        t,
        g,
        seed=seed,
        current_window=_window(cur),
        baseline_window=_window(base),
        min_effect=tol.throughput,
    )
    assert out.change is not None
    p = out.p_less if out.verdict != "improved" else out.p_greater
    window = t.measure == "window" and cur.window is not None and base.window is not None
    context = (
        f"p={p:.2g}, n={len(cur.throughput)} vs {len(base.throughput)}; "
        f"step {median(base.time_per_step):.2f} -> {median(cur.time_per_step):.2f} s; "
        f"response {median(base.response_length):.0f} -> {median(cur.response_length):.0f} tok; "
        f"{'window' if window else 'median step'} throughput; min effect {tol.throughput:.1%} ({tol.source})"
    )
    base_v, cur_v = (base.window, cur.window) if window else (median(base.throughput), median(cur.throughput))
    return Comparison(
        cell=cur.id,
        metric="throughput",
        verdict=out.verdict,
        regression=out.verdict == "regressed",
        change=_pct(out.change),
        baseline=f"{base_v:.1f}",
        current=f"{cur_v:.1f}",
        detail=context,
        estimate=out.change.estimate,
        low=out.change.low,
        high=out.change.high,
        p_value=p,
        n_baseline=len(base.throughput),
        n_current=len(cur.throughput),
        tolerance=tol.throughput,
        tolerance_source=tol.source,
    )


# --- memory and accuracy ----------------------------------------------------------------------------------


def memory_verdict(
    current_gb: float, baseline_gb: float, m: MemoryThresholds, calibrated_gib: float | None = None
) -> tuple[Verdict, float]:
    tolerance = max(m.rel_tolerance * baseline_gb, m.abs_tolerance_gib) if calibrated_gib is None else calibrated_gib
    if current_gb > baseline_gb + tolerance:
        return "regressed", tolerance
    if current_gb < baseline_gb - tolerance:
        return "improved", tolerance
    return "unchanged", tolerance


def _gib_row(
    cell: str, metric: str, c: float, b: float, th: MemoryThresholds, calibrated: float | None, cal: str, what: str
) -> Comparison:
    """A memory row (NVML or host, GiB): the verdict against the calibrated tolerance (`cal` names the
    calibration) or the thresholds'."""
    verdict, tol = memory_verdict(c, b, th, calibrated)
    source = cal if calibrated is not None else "thresholds"
    return Comparison(
        cell=cell,
        metric=metric,
        verdict=verdict,
        regression=verdict == "regressed",
        change=f"{c - b:+.2f} GiB ({(c / b - 1) * 100 if b else 0.0:+.1f} %)",
        baseline=f"{b:.2f} GiB",
        current=f"{c:.2f} GiB",
        detail=f"{what}; tolerance ±{tol:.2f} GiB ({source})",
        estimate=c - b,
        tolerance=tol,
        tolerance_source=source,
    )


def _memory_row(cur: PooledCell, base: PooledCell, t: Tolerances) -> Comparison | None:
    if cur.peak_memory_worst_gb is None or base.peak_memory_worst_gb is None:
        return None
    c, b = cur.peak_memory_worst_gb, base.peak_memory_worst_gb
    return _gib_row(cur.id, "memory", c, b, t.memory, t.memory_gib, t.source, "NVML peak, worst GPU")


def _host_memory_row(cur: PooledCell, base: PooledCell, t: Tolerances) -> Comparison | None:
    if cur.host_peak_gb is None or base.host_peak_gb is None:
        return None
    th = t.host_memory
    row = _gib_row(
        cur.id,
        "host_memory",
        cur.host_peak_gb,
        base.host_peak_gb,
        th,
        t.host_memory_gib,
        t.source,
        "host peak of the process tree (RSS)",
    )
    if cur.host_system_fraction is not None and cur.host_system_fraction >= th.warn_fraction:
        row = replace(
            row,
            detail=f"{row.detail}; the host's used memory peaked at {cur.host_system_fraction * 100:.0f} % of its "
            f"total (over {th.warn_fraction * 100:.0f} %; Ray's OOM monitor kills at 95 %)",
        )
    return row


def _oom_row(cur: PooledCell, base: PooledCell) -> Comparison:
    """ok -> oom: a memory regression whatever the speed; the host's when the run's oom_kind says the host's
    memory ran out (Ray's OOM monitor, the host-memory guard, Slurm's limit), the GPU's otherwise."""
    oom = next((r for r in cur.runs if r.status == "oom"), cur.first)
    host = oom.oom_kind in HOST_OOM_KINDS
    was = base.host_peak_gb if host else base.peak_memory_worst_gb
    return Comparison(
        cur.id,
        "host_memory" if host else "memory",
        "regressed",
        True,
        "ok -> oom",
        f"{was or 0:.2f} GiB",
        "oom",
        cur.reason or "",
    )


def accuracy_outcome(
    correct: int, total: int, base_correct: int, base_total: int, a: AccuracyThresholds, level: float
) -> tuple[Verdict, float, float, stats.Change, str]:
    """(verdict, p_less, p_greater, change in rate, test name)."""
    small = stats.min_expected_count(correct, total, base_correct, base_total) < a.fisher_below
    test = stats.fisher_p if small else stats.two_proportion_p
    p_less = test(correct, total, base_correct, base_total, "less")
    p_greater = test(correct, total, base_correct, base_total, "greater")
    change = stats.proportion_change(correct, total, base_correct, base_total, level)
    drop = change.low if a.effect_rule == "interval" else change.estimate
    gain = change.high if a.effect_rule == "interval" else change.estimate
    verdict: Verdict = "unchanged"
    if p_less < a.alpha and drop <= -a.min_drop:
        verdict = "regressed"
    elif p_greater < a.alpha and gain >= a.min_drop:
        verdict = "improved"
    return verdict, p_less, p_greater, change, "Fisher exact" if small else "z test"


def _accuracy_rows(
    cur: PooledCell, base: PooledCell, a: AccuracyThresholds, level: float, notes: list[str]
) -> list[Comparison]:
    rows = []
    for name in sorted(set(cur.accuracy) | set(base.accuracy)):
        if name not in cur.accuracy or name not in base.accuracy:
            side = "result" if name not in cur.accuracy else "baseline"
            notes.append(f"{label(cur.first.matrix, cur.id)}: accuracy {name!r} not in the {side}; not compared")
            continue
        c, b = cur.accuracy[name], base.accuracy[name]
        verdict, p_less, p_greater, change, test = accuracy_outcome(c.correct, c.total, b.correct, b.total, a, level)
        p = p_greater if verdict == "improved" else p_less
        rows.append(
            Comparison(
                cell=cur.id,
                metric=f"accuracy:{name}",
                verdict=verdict,
                regression=verdict == "regressed",
                change=f"{change.estimate * 100:+.1f} pt [{change.low * 100:+.1f}, {change.high * 100:+.1f}]",
                baseline=f"{b.rate * 100:.1f} % ({b.correct}/{b.total})",
                current=f"{c.rate * 100:.1f} % ({c.correct}/{c.total})",
                detail=f"{test}, p={p:.2g}",
                estimate=change.estimate,
                low=change.low,
                high=change.high,
                p_value=p,
                n_baseline=b.total,
                n_current=c.total,
            )
        )
    return rows


# --- the whole comparison ---------------------------------------------------------------------------------


def _mismatches(against: str, runs: Sequence[Result], reference: Result) -> list[str]:
    out = []
    for run in runs:
        for name in MATCH_FIELDS:
            mine, theirs = getattr(run, name), getattr(reference, name)
            if mine != theirs:
                out.append(f"{label(run.matrix, run.id)}: {name} {mine!r} in the result vs {theirs!r} in the {against}")
    return sorted(set(out))


def _versions(cur: PooledCell, base: PooledCell, into: dict[str, list[str]]) -> None:
    b, c = base.first.provenance, cur.first.provenance
    pairs = [(k, b.versions.get(k), c.versions.get(k)) for k in sorted(set(b.versions) | set(c.versions))]
    pairs.append(("image", b.image_digest or b.image, c.image_digest or c.image))
    for key, old, new in pairs:
        if old != new:
            into.setdefault(f"{key} {old or '?'} -> {new or '?'}", []).append(label(cur.first.matrix, cur.id))


def _status_rows(cur: PooledCell, base: PooledCell | None) -> list[Comparison]:
    if cur.status == "ok" and (base is None or base.status == "ok"):
        return []
    if cur.status != "ok":
        was = base.status if base else "no baseline"
        return [
            Comparison(
                cell=cur.id,
                metric="status",
                verdict="failed",
                regression=base is not None and base.status == "ok",
                change=f"{was} -> {cur.status}",
                baseline=was,
                current=cur.status,
                detail=cur.reason or "",
            )
        ]
    assert base is not None
    return [
        Comparison(cur.id, "status", "improved", False, f"{base.status} -> ok", base.status, "ok", base.reason or "")
    ]


def _sentinel_row(
    cur_runs: Sequence[Result], base_runs: Sequence[Result] | None, th: CellThresholds
) -> Comparison | None:
    out = sentinel_outcome(cur_runs, base_runs, th.sentinel)
    if out is None:
        return None
    base = f"{out.baseline_median:.3g}" if out.baseline_median is not None else "-"
    ratio = f"x{out.current_median / out.baseline_median:.2f}" if out.baseline_median else ""
    detail = "; ".join(out.problems) or (
        f"rollout vs actor |p| diff, median of {out.steps} steps; worst step {out.worst.step}: "
        f"{out.worst.probs_diff_mean:.3g} (limit {th.sentinel.max_probs_diff_mean:g})"
    )
    return Comparison(
        cell=cur_runs[0].id,
        metric="sentinel:logprob",
        verdict="failed" if out.failed else "unchanged",
        regression=out.failed,
        change=ratio,
        baseline=base,
        current=f"{out.current_median:.3g}",
        detail=detail,
        estimate=out.current_median,
        n_current=out.steps,
    )


def _with_streaks(
    rows: list[Comparison], baseline: Baseline, runs: Sequence[Result], consecutive: int
) -> list[Comparison]:
    """Violations of throughput, memory and accuracy rows become `suspicious` until they are the Nth in a row
    against the current baseline (the recorded series); other rows are left as they are."""
    out = []
    for row in rows:
        if row.verdict != "regressed" or not waits(row.metric) or row.change == "ok -> oom":
            out.append(row)
            continue
        d = decide(prior_streak(baseline, row.metric, runs), consecutive)
        out.append(
            replace(
                row,
                verdict="regressed" if d.regression else "suspicious",
                regression=d.regression,
                streak=d.streak,
                detail=f"{row.detail}; {d.detail}",
            )
        )
    return out


def _new_rows(cur: PooledCell, cell_id: str, detail: str, require: bool) -> list[Comparison]:
    rows = _status_rows(cur, None) or [Comparison(cell_id, "all", "new", False, detail=detail)]
    if not require:
        return rows
    return [
        replace(r, regression=True, detail=f"{r.detail}; --require-baseline: a cell needs a baseline") for r in rows
    ]


def compare(
    results: Sequence[tuple[Path, Result]],
    baselines_root: Path,
    config: GateConfig,
    *,
    allow_mismatch: bool = False,
    require_baseline: bool = False,
) -> GateReport:
    """Each result cell (all runs of one (generation, matrix, id), pooled) against the baseline of the same GPU
    generation, matrix and id; a cell without one is `new`, whatever other matrices hold (and fails with
    `require_baseline`)."""
    if not baselines_root.is_dir():
        # A typo in --baselines would otherwise turn every cell into `new` and pass the gate.
        raise InputError(f"baseline folder {baselines_root} does not exist (create it, or promote results into it)")
    report = GateReport(config_source=config.source)
    groups: dict[tuple[str, str, str], list[Result]] = {}
    for _, result in results:
        groups.setdefault((result.gpu, result.matrix, result.id), []).append(result)
    store = index_baselines(baselines_root, sorted({r.gpu for _, r in results}))
    if require_baseline and not index_baselines(baselines_root):
        raise InputError(
            f"baseline folder {baselines_root} holds no baseline at all (--require-baseline): is it the store? "
            "(expected <gen>/<matrix>/<cell id>.json files)"
        )
    errors: list[str] = []
    mismatches: list[str] = []
    checked: list[Comparison] = []  # sentinels that passed
    for gpu, matrix, cell_id in sorted(groups):
        runs = groups[(gpu, matrix, cell_id)]
        name = label(matrix, cell_id)
        mismatches += _mismatches("other runs of the cell", runs[1:], runs[0])
        cur = pool(runs)
        found = store.get((gpu, matrix, cell_id))
        th = config.for_cell(cell_id)
        for said in (adapter_note(runs), rope_note(runs)):
            if said:
                report.sentinel_notes.append(f"{name}: {said}")
        if found is None:
            others = sorted(m for g, m, i in store if (g, i) == (gpu, cell_id))
            elsewhere = f"; matrix {', '.join(others)} has one, not compared" if others else ""
            detail = f"no baseline under {baselines_root}/{gpu}/ for matrix {matrix}{elsewhere}"
            rows = _new_rows(cur, cell_id, detail, require_baseline)
            if (sentinel := _sentinel_row(runs, None, th)) is not None and sentinel.regression:
                rows.append(sentinel)  # a broken rollout fails even without a baseline to compare with
            report.rows += [replace(r, matrix=matrix, gpu=gpu) for r in rows]
            continue
        path, baseline = found
        mismatches += _mismatches(f"baseline {path}", runs, baseline.results[0])
        base = pool(baseline.results)
        _versions(cur, base, report.versions)
        rows = _status_rows(cur, base)
        if cur.status == "oom" and base.status == "ok":
            rows.append(_oom_row(cur, base))
        sentinel = _sentinel_row(runs, baseline.results, th)
        if sentinel is None:
            report.notes.append(f"{name}: no rollout/actor mismatch recorded (verl's {MISMATCH_KEY}); not checked")
        elif sentinel.regression:
            rows.append(sentinel)  # only a failure is a row: a passing sentinel is one line in the notes
        else:
            checked.append(replace(sentinel, matrix=matrix, gpu=gpu))
        report.rows += [replace(r, matrix=matrix, gpu=gpu) for r in rows]
        if cur.status != "ok" or base.status != "ok":
            continue
        need = required_samples(th.throughput)
        for side, cell, where in (
            (
                "result",
                cur,
                ", ".join(sorted({str(p) for p, r in results if (r.gpu, r.matrix, r.id) == (gpu, matrix, cell_id)})),
            ),
            ("baseline", base, str(path)),
        ):
            if len(cell.throughput) < need:
                errors.append(
                    f"{where}: {name}: too few throughput samples in the {side}: {len(cell.throughput)} "
                    f"measured step(s) (after {cell.first.warmup_steps} warm-up) "
                    f"over {len(cell.runs)} run(s); "
                    f"the test needs at least {need} (min_samples={th.throughput.min_samples}, "
                    f"alpha={th.throughput.alpha})"
                )
        if errors:
            continue
        tol = tolerances(baseline, th)
        rows = [_throughput_row(cur, base, th.throughput, config.gate, tol)]
        mem = _memory_row(cur, base, tol)
        if mem is None:
            report.notes.append(f"{name}: no NVML peak memory on one side; memory not compared")
        else:
            rows.append(mem)
        host = _host_memory_row(cur, base, tol)
        if host is not None:
            rows.append(host)
        elif (cur.host_peak_gb is None) != (base.host_peak_gb is None):
            side = "result" if cur.host_peak_gb is None else "baseline"
            report.notes.append(f"{name}: no host peak of the process tree in the {side}; host memory not compared")
        rows += _accuracy_rows(cur, base, th.accuracy, config.gate.ci_level, report.notes)
        rows = _with_streaks(rows, baseline, runs, config.gate.consecutive)
        report.rows += [replace(r, matrix=matrix, gpu=gpu) for r in rows]
    if mismatches and not allow_mismatch:
        errors.append(
            "results and baselines differ in GPU generation, GPU count, model or profile (pass "
            "--allow-mismatch to compare anyway):\n    " + "\n    ".join(mismatches)
        )
    if errors:
        raise InputError("\n  ".join(["cannot gate:", *errors]))
    report.mismatches = mismatches
    if checked:
        worst = max(checked, key=lambda r: r.estimate or 0.0)
        report.sentinel_notes.insert(
            0,
            f"sentinel:logprob: {len(checked)} cell(s) within limits against their baselines (largest median "
            f"rollout/actor |p| diff {worst.current}, {label(worst.matrix, worst.cell)})",
        )
    report.rows, report.reference_notes = _with_reference(report.rows, groups, store, baselines_root)
    report.rows += _missing_rows(results, groups, store, config)
    return report


def _with_reference(
    rows: list[Comparison],
    groups: dict[tuple[str, str, str], list[Result]],
    store: dict[Key, tuple[Path, Baseline]],
    root: Path,
) -> tuple[list[Comparison], list[str]]:
    """Rows with their cell's ratios to the reference cell, and one note per reference saying where its
    numbers came from (this run, or its baseline when the reference was not run)."""
    ratios: dict[tuple[str, str, str], CellRatios] = {}
    notes: dict[tuple[str, str, str], str] = {}
    other: list[str] = []
    for key in sorted(groups):
        runs = groups[key]
        first = runs[0]
        if not first.reference:
            continue
        ref_key = (first.gpu, first.reference_matrix or first.matrix, reference_id(first.id, first.reference))
        ref = find_reference(runs, groups, store)
        where = f"reference cell {ref_key[2]} (matrix {ref_key[1]}, {first.gpu})"
        if ref is None:
            notes[ref_key] = f"{where} is neither in these results nor under {root}/{first.gpu}/: no ratios"
            continue
        if ref.status != "ok" or ref.throughput is None:
            side = "in these results" if ref.source == "current" else f"in its baseline {ref.where}"
            notes[ref_key] = f"{where} has status {ref.status} {side}: no ratios"
            continue
        ratios[key] = c = cell_ratios(runs, ref)
        if c.objective_differences:
            other.append(
                f"{key[2]} (matrix {first.matrix}, {first.gpu}) {note(*compared(first, ref), c.objective_differences)}"
            )
        if c.stack_differences:
            other.append(f"{key[2]} (matrix {first.matrix}, {first.gpu}) {stack_note(c.stack_differences)}")
        notes[ref_key] = (
            f"vs ref: ratio to the {where} in these results"
            if ref.source == "current"
            else f"vs ref (ref baseline): the {where} is not in these results; ratio to its stored baseline {ref.where}"
        )
    out = []
    for r in rows:
        c = ratios.get((r.gpu, r.matrix, r.cell))
        out.append(
            replace(
                r,
                reference=c.reference.id,
                reference_source=c.reference.source,
                throughput_vs_reference=c.throughput,
                peak_memory_vs_reference=c.peak_memory,
                host_memory_vs_reference=c.host_memory,
                reference_objective_differences=c.objective_differences,
                reference_stack_differences=c.stack_differences,
            )
            if c
            else r
        )
    return out, [notes[k] for k in sorted(notes)] + other


def _missing_rows(
    results: Sequence[tuple[Path, Result]],
    groups: dict[tuple[str, str, str], list[Result]],
    store: dict[Key, tuple[Path, Baseline]],
    config: GateConfig,
) -> list[Comparison]:
    # Only baselines of what was run (generation, matrix, profile) count as missing: a bench of one matrix
    # says nothing about the cells of another.
    scope = {(r.gpu, r.matrix, r.profile) for _, r in results}
    rows = []
    for path, baseline in sorted(store.values(), key=lambda item: item[0]):
        first = baseline.results[0]
        if (first.gpu, baseline.matrix, baseline.id) in groups or (first.gpu, first.matrix, first.profile) not in scope:
            continue
        rows.append(
            Comparison(
                baseline.id,
                "all",
                "missing",
                config.gate.missing_is_regression,
                detail=f"baseline {path}",
                matrix=baseline.matrix,
                gpu=first.gpu,
            )
        )
    return rows
