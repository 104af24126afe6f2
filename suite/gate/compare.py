"""Verdicts: each result cell against its baseline, per metric. Plain data in, plain rows out."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from suite.errors import InputError
from suite.gate import stats
from suite.gate.cells import Cell, median, pool
from suite.gate.config import (
    AccuracyThresholds,
    GateConfig,
    GateSettings,
    MemoryThresholds,
    ThroughputThresholds,
)
from suite.gate.reference import CellRatios, cell_ratios, find_reference, reference_id
from suite.gate.store import Baseline, Key, index_baselines, label
from suite.results.schema import Result

Verdict = Literal["improved", "unchanged", "regressed", "new", "missing", "failed"]
VERDICTS: tuple[Verdict, ...] = ("regressed", "failed", "missing", "new", "improved", "unchanged")
# Not `matrix`: a result is paired only with the baseline of its own (generation, matrix, id), so the
# matrix always agrees (cell ids come from the axes alone; matrices with other [base] settings share them).
MATCH_FIELDS = ("gpu", "n_gpus", "model", "profile")
VERSION_KEYS = ("verl", "vllm", "torch", "ray", "transformers", "megatron-core")


@dataclass(frozen=True)
class Row:
    cell: str
    metric: str  # status | throughput | memory | accuracy:<name>
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


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)  # allowed with --allow-mismatch, shown as a label
    versions: dict[str, list[str]] = field(default_factory=dict)  # "verl 0.9.0 -> 0.9.1" -> "matrix: id"s
    notes: list[str] = field(default_factory=list)
    config_source: str = ""
    reference_notes: list[str] = field(default_factory=list)  # per group: which reference, from where

    @property
    def regressions(self) -> list[Row]:
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


def throughput_outcome(
    current: Sequence[float],
    baseline: Sequence[float],
    t: ThroughputThresholds,
    g: GateSettings,
    *,
    seed: int,
    always_interval: bool = True,
) -> ThroughputOutcome:
    """Regressed when the rank test says slower at `alpha` AND the effect rule passes `min_effect`;
    improved symmetrically; unchanged otherwise. Shared with benchmarks/gate_power.py."""
    p_less = stats.mann_whitney_p(current, baseline, "less")
    p_greater = stats.mann_whitney_p(current, baseline, "greater")
    significant = p_less < t.alpha or p_greater < t.alpha
    change = None
    if always_interval or (significant and t.effect_rule == "interval"):
        change = stats.median_change(current, baseline, resamples=g.bootstrap_resamples, level=g.ci_level, seed=seed)
    if significant and change is None:
        est = float(np.median(current) / np.median(baseline) - 1.0)
        change = stats.Change(est, est, est)
    verdict: Verdict = "unchanged"
    if change is not None:
        drop = change.low if t.effect_rule == "interval" else change.estimate
        gain = change.high if t.effect_rule == "interval" else change.estimate
        if p_less < t.alpha and drop <= -t.min_effect:
            verdict = "regressed"
        elif p_greater < t.alpha and gain >= t.min_effect:
            verdict = "improved"
    return ThroughputOutcome(verdict, p_less, p_greater, change)


def _pct(change: stats.Change) -> str:
    return f"{change.estimate * 100:+.1f} % [{change.low * 100:+.1f}, {change.high * 100:+.1f}]"


def _throughput_row(cur: Cell, base: Cell, t: ThroughputThresholds, g: GateSettings) -> Row:
    seed = g.seed + zlib.crc32(cur.id.encode())
    out = throughput_outcome(cur.throughput, base.throughput, t, g, seed=seed)
    assert out.change is not None
    p = out.p_less if out.verdict != "improved" else out.p_greater
    context = (
        f"p={p:.2g}, n={len(cur.throughput)} vs {len(base.throughput)}; "
        f"step {median(base.time_per_step):.2f} -> {median(cur.time_per_step):.2f} s; "
        f"response {median(base.response_length):.0f} -> {median(cur.response_length):.0f} tok"
    )
    return Row(
        cell=cur.id,
        metric="throughput",
        verdict=out.verdict,
        regression=out.verdict == "regressed",
        change=_pct(out.change),
        baseline=f"{median(base.throughput):.1f}",
        current=f"{median(cur.throughput):.1f}",
        detail=context,
        estimate=out.change.estimate,
        low=out.change.low,
        high=out.change.high,
        p_value=p,
        n_baseline=len(base.throughput),
        n_current=len(cur.throughput),
    )


# --- memory and accuracy ----------------------------------------------------------------------------------


def memory_verdict(current_gb: float, baseline_gb: float, m: MemoryThresholds) -> tuple[Verdict, float]:
    tolerance = max(m.rel_tolerance * baseline_gb, m.abs_tolerance_gib)
    if current_gb > baseline_gb + tolerance:
        return "regressed", tolerance
    if current_gb < baseline_gb - tolerance:
        return "improved", tolerance
    return "unchanged", tolerance


def _memory_row(cur: Cell, base: Cell, m: MemoryThresholds) -> Row | None:
    if cur.peak_memory_worst_gb is None or base.peak_memory_worst_gb is None:
        return None
    c, b = cur.peak_memory_worst_gb, base.peak_memory_worst_gb
    verdict, tol = memory_verdict(c, b, m)
    return Row(
        cell=cur.id,
        metric="memory",
        verdict=verdict,
        regression=verdict == "regressed",
        change=f"{c - b:+.2f} GiB ({(c / b - 1) * 100 if b else 0.0:+.1f} %)",
        baseline=f"{b:.2f} GiB",
        current=f"{c:.2f} GiB",
        detail=f"NVML peak, worst GPU; tolerance ±{tol:.2f} GiB",
        estimate=c - b,
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


def _accuracy_rows(cur: Cell, base: Cell, a: AccuracyThresholds, level: float, notes: list[str]) -> list[Row]:
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
            Row(
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


def _versions(cur: Cell, base: Cell, into: dict[str, list[str]]) -> None:
    b, c = base.first.provenance, cur.first.provenance
    pairs = [(k, b.versions.get(k), c.versions.get(k)) for k in sorted(set(b.versions) | set(c.versions))]
    pairs.append(("image", b.image_digest or b.image, c.image_digest or c.image))
    for key, old, new in pairs:
        if old != new:
            into.setdefault(f"{key} {old or '?'} -> {new or '?'}", []).append(label(cur.first.matrix, cur.id))


def _status_rows(cur: Cell, base: Cell | None) -> list[Row]:
    if cur.status == "ok" and (base is None or base.status == "ok"):
        return []
    if cur.status != "ok":
        was = base.status if base else "no baseline"
        return [
            Row(
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
    return [Row(cur.id, "status", "improved", False, f"{base.status} -> ok", base.status, "ok", base.reason or "")]


def compare(
    results: Sequence[tuple[Path, Result]],
    baselines_root: Path,
    config: GateConfig,
    *,
    allow_mismatch: bool = False,
) -> Report:
    """Each result cell (all runs of one (generation, matrix, id), pooled) against the baseline of the same GPU
    generation, matrix and id; a cell without one is `new`, whatever other matrices hold."""
    if not baselines_root.is_dir():
        # A typo in --baselines would otherwise turn every cell into `new` and pass the gate.
        raise InputError(f"baseline folder {baselines_root} does not exist (create it, or promote results into it)")
    report = Report(config_source=config.source)
    groups: dict[tuple[str, str, str], list[Result]] = {}
    for _, result in results:
        groups.setdefault((result.gpu, result.matrix, result.id), []).append(result)
    store = index_baselines(baselines_root, sorted({r.gpu for _, r in results}))
    errors: list[str] = []
    mismatches: list[str] = []
    for gpu, matrix, cell_id in sorted(groups):
        runs = groups[(gpu, matrix, cell_id)]
        name = label(matrix, cell_id)
        mismatches += _mismatches("other runs of the cell", runs[1:], runs[0])
        cur = pool(runs)
        found = store.get((gpu, matrix, cell_id))
        rows: list[Row] = []
        if found is None:
            others = sorted(m for g, m, i in store if (g, i) == (gpu, cell_id))
            elsewhere = f"; matrix {', '.join(others)} has one, not compared" if others else ""
            rows += _status_rows(cur, None) or [
                Row(
                    cell_id,
                    "all",
                    "new",
                    False,
                    detail=f"no baseline under {baselines_root}/{gpu}/ for matrix {matrix}{elsewhere}",
                )
            ]
            report.rows += [replace(r, matrix=matrix, gpu=gpu) for r in rows]
            continue
        path, baseline = found
        mismatches += _mismatches(f"baseline {path}", runs, baseline.results[0])
        base = baseline.cell()
        _versions(cur, base, report.versions)
        rows += _status_rows(cur, base)
        th = config.for_cell(cell_id)
        if cur.status == "oom" and base.status == "ok":
            rows.append(
                Row(
                    cell_id,
                    "memory",
                    "regressed",
                    True,
                    "ok -> oom",
                    f"{base.peak_memory_worst_gb or 0:.2f} GiB",
                    "oom",
                    cur.reason or "",
                )
            )
        report.rows += [replace(r, matrix=matrix, gpu=gpu) for r in rows]
        if cur.status != "ok" or base.status != "ok":
            continue
        need = required_samples(th.throughput)
        for side, cell, where in (
            ("result", cur, ", ".join(sorted({str(p) for p, r in results if (r.gpu, r.matrix, r.id) == (gpu, matrix, cell_id)}))),
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
        rows = [_throughput_row(cur, base, th.throughput, config.gate)]
        mem = _memory_row(cur, base, th.memory)
        if mem is None:
            report.notes.append(f"{name}: no NVML peak memory on one side; memory not compared")
        else:
            rows.append(mem)
        rows += _accuracy_rows(cur, base, th.accuracy, config.gate.ci_level, report.notes)
        report.rows += [replace(r, matrix=matrix, gpu=gpu) for r in rows]
    if mismatches and not allow_mismatch:
        errors.append(
            "results and baselines differ in GPU generation, GPU count, model or profile (pass "
            "--allow-mismatch to compare anyway):\n    " + "\n    ".join(mismatches)
        )
    if errors:
        raise InputError("\n  ".join(["cannot gate:", *errors]))
    report.mismatches = mismatches
    report.rows, report.reference_notes = _with_reference(report.rows, groups, store, baselines_root)
    report.rows += _missing_rows(results, groups, store, config)
    return report


def _with_reference(
    rows: list[Row],
    groups: dict[tuple[str, str, str], list[Result]],
    store: dict[Key, tuple[Path, Baseline]],
    root: Path,
) -> tuple[list[Row], list[str]]:
    """Rows with their cell's ratios to the reference cell, and one note per reference saying where its
    numbers came from (this run, or its baseline when the reference was not run)."""
    ratios: dict[tuple[str, str, str], CellRatios] = {}
    notes: dict[tuple[str, str, str], str] = {}
    for key in sorted(groups):
        runs = groups[key]
        first = runs[0]
        if not first.reference:
            continue
        ref_key = (first.gpu, first.matrix, reference_id(first.id, first.reference))
        ref = find_reference(runs, groups, store)
        where = f"reference cell {ref_key[2]} (matrix {first.matrix}, {first.gpu})"
        if ref is None:
            notes[ref_key] = f"{where} is neither in these results nor under {root}/{first.gpu}/: no ratios"
            continue
        if ref.status != "ok" or ref.throughput is None:
            side = "in these results" if ref.source == "current" else f"in its baseline {ref.where}"
            notes[ref_key] = f"{where} has status {ref.status} {side}: no ratios"
            continue
        ratios[key] = cell_ratios(runs, ref)
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
            )
            if c
            else r
        )
    return out, [notes[k] for k in sorted(notes)]


def _missing_rows(
    results: Sequence[tuple[Path, Result]],
    groups: dict[tuple[str, str, str], list[Result]],
    store: dict[Key, tuple[Path, Baseline]],
    config: GateConfig,
) -> list[Row]:
    # Only baselines of what was run (generation, matrix, profile) count as missing: a bench of one matrix
    # says nothing about the cells of another.
    scope = {(r.gpu, r.matrix, r.profile) for _, r in results}
    rows = []
    for path, baseline in sorted(store.values(), key=lambda item: item[0]):
        first = baseline.results[0]
        if (first.gpu, baseline.matrix, baseline.id) in groups or (first.gpu, first.matrix, first.profile) not in scope:
            continue
        rows.append(
            Row(
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
