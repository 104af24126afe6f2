"""The baseline store: `baselines/<gen>/<matrix>/<full cell id>.json`, one file per GPU generation, matrix
and cell (the full id already holds model, `<gen>x<count>`, backend and axes; it comes from the matrix axes
alone, so two matrices with different `[base]` settings share ids, and the matrix folder keeps them apart).

A baseline's identity is (generation, matrix, id): the generation from the folder under the store root, the
matrix and id from the file's content (its results' `matrix` and `id`). Every `*.json` under
`baselines/<gen>/` is read; two files claiming one identity are bad input naming both. `promote` writes at
`baseline_path` and refuses when the identity's file lies elsewhere (move it there first).

The file format (results, history of promotions, later gated runs, calibration) is
`suite.results.baseline`: its one reader and one writer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from suite.errors import InputError
from suite.gate.cells import median, pool, window_throughput
from suite.gate.config import SentinelThresholds
from suite.gate.sentinel import rope_note, sentinel_outcome
from suite.results.baseline import (
    Baseline,
    GatedEntry,
    HistoryEntry,
    HistoryRun,
    RunSummary,
    read_baseline,
    write_baseline,
)
from suite.results.collect import EVIDENCE_DIR, in_evidence, read_results_file
from suite.results.provenance import run_stack, version_differences
from suite.results.schema import Provenance, Result
from suite.results.sentinels import probs_diff_median

# Re-exported: the memory stage reads result files through these names (the reader is suite.results).
__all__ = ["Baseline", "in_evidence", "read_baseline", "read_results_file"]


def summarize(result: Result) -> RunSummary:
    cell = pool([result])
    return RunSummary(
        status=result.status,
        measured_steps=len(cell.throughput),
        throughput_median=median(cell.throughput),
        time_per_step_median=median(cell.time_per_step),
        response_length_median=median(cell.response_length),
        peak_memory_worst_gb=cell.peak_memory_worst_gb,
        host_peak_memory_gb=cell.host_peak_gb,
        accuracy={k: {"correct": v.correct, "total": v.total} for k, v in result.accuracy.items()},
        throughput_window=window_throughput([result]) if result.status == "ok" else None,
        probs_diff_mean=probs_diff_median(result),
    )


Key = tuple[str, str, str]  # (GPU generation, matrix, full cell id): what names a baseline


def label(matrix: str, cell_id: str) -> str:
    """How messages name a cell: a cell id alone is ambiguous across matrices."""
    return f"{matrix}: {cell_id}"


def _check_part(value: str, what: str, folder: str) -> None:
    if not value or "/" in value or "\\" in value or value in (".", "..") or value == EVIDENCE_DIR:
        raise InputError(
            f"{what} {value!r} cannot name a baseline {folder} (empty, '/', '.', '..' or {EVIDENCE_DIR!r})"
        )


def baseline_path(root: Path, gpu: str, matrix: str, cell_id: str) -> Path:
    """Where `promote` writes the baseline of (gpu, matrix, cell_id): `<root>/<gpu>/<matrix>/<cell_id>.json`."""
    parts = cell_id.split("/")
    if not cell_id or cell_id.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InputError(f"cell id {cell_id!r} cannot name a baseline file (empty, absolute or '..' part)")
    _check_part(gpu, "GPU generation", "folder")
    _check_part(matrix, "matrix", "folder")
    return root / gpu / matrix / (cell_id + ".json")


def list_baselines(root: Path, gpus: Sequence[str] | None = None) -> list[tuple[Path, Baseline]]:
    """Every baseline under `<root>/<gen>/` (all generations, or those given), in path order. Two files
    claiming one (generation, matrix, id) are bad input naming both."""
    return sorted(index_baselines(root, gpus).values(), key=lambda item: item[0])


def index_baselines(root: Path, gpus: Sequence[str] | None = None) -> dict[Key, tuple[Path, Baseline]]:
    """The store by identity: (folder generation, matrix, id) -> (path, baseline)."""
    if not root.is_dir():
        raise InputError(f"baseline folder {root} does not exist")
    for gpu in gpus or ():
        _check_part(gpu, "GPU generation", "folder")
    folders = (
        [root / g for g in gpus] if gpus else sorted(p for p in root.iterdir() if p.is_dir() and p.name != EVIDENCE_DIR)
    )
    found: dict[Key, tuple[Path, Baseline]] = {}
    claims: dict[Key, list[Path]] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.json")):
            if not path.is_file() or in_evidence(path, root):
                continue
            baseline = read_baseline(path)
            key = (folder.name, baseline.matrix, baseline.id)
            claims.setdefault(key, []).append(path)
            found.setdefault(key, (path, baseline))
    twice = {k: v for k, v in claims.items() if len(v) > 1}
    if twice:
        raise InputError(
            "\n  ".join(
                ["several baseline files claim one (GPU generation, matrix, cell id); keep one:"]
                + [f"{g}, {label(m, i)}: {', '.join(map(str, paths))}" for (g, m, i), paths in sorted(twice.items())]
            )
        )
    return found


def lookup(root: Path, gpu: str, matrix: str, cell_id: str) -> tuple[Path, Baseline] | None:
    """The baseline of (gpu, matrix, cell_id), wherever under `<root>/<gpu>/` its file lies, or None."""
    return index_baselines(root, [gpu]).get((gpu, matrix, cell_id))


@dataclass(frozen=True)
class Promotion:
    id: str
    path: Path
    runs: int
    measured_steps: int
    status: str
    replaced: str | None  # promoted_at of the baseline that was replaced, "unknown" when it had none
    matrix: str = ""
    calibration_dropped: bool = False  # the replaced baseline was calibrated: its tolerances described other runs


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def stack_disagreement(runs: Sequence[Result]) -> str | None:
    """The packages whose recorded versions differ between runs (`provenance.version_differences`), or None: a
    baseline pools runs of one stack, so that its spread is the cell's and not two stacks'."""
    return version_differences([run_stack(r.provenance) for r in runs])


@dataclass(frozen=True)
class Refusal:
    """One reason the runs of a cell cannot be its baseline (pure data: the promotion's error and the report's
    "why not a baseline" column are both written from it)."""

    kind: Literal["status", "sentinel", "steps"]
    detail: str  # status: "'timeout' (timed out ...)"; sentinel: its problems; steps: the count and the need
    run: int | None = None  # status: the run's index among the runs given
    hint: str | None = None  # sentinel: the known cause, where there is one (gate.sentinel.rope_note)

    def short(self) -> str:
        if self.kind == "status":
            return f"status {self.detail}"
        if self.kind == "sentinel":
            return f"log-prob sentinel fails: {self.detail}"
        return self.detail


def refusals(
    runs: Sequence[Result], *, allow_failed: bool, min_samples: int, sentinel: SentinelThresholds | None
) -> list[Refusal]:
    """Why these runs of one cell cannot serve as its baseline; [] when they can. A run whose status is not ok
    (unless `allow_failed`); ok runs whose rollout/actor mismatch fails the gate's absolute limits (`sentinel`,
    unless `allow_failed`: every later run would be gated against them); and, where no run failed, fewer
    measured steps than the gate needs."""
    out = [
        Refusal("status", f"{r.status!r} ({r.reason or 'no reason'})", run=i)
        for i, r in enumerate(runs)
        if r.status != "ok" and not allow_failed
    ]
    failed = any(r.status != "ok" for r in runs)
    ok_runs = [r for r in runs if r.status == "ok"]
    if sentinel is not None and not allow_failed:
        outcome = sentinel_outcome(ok_runs, None, sentinel)
        if outcome is not None and outcome.failed:
            out.append(Refusal("sentinel", "; ".join(outcome.problems), hint=rope_note(ok_runs)))
    steps = sum(len(r.measured_steps()) for r in ok_runs)
    if not failed and steps < min_samples:
        out.append(
            Refusal(
                "steps",
                f"{steps} measured step(s) over {len(runs)} run(s); the gate needs at least {min_samples}",
            )
        )
    return out


def plan_promotions(
    results: Sequence[tuple[Path, Result]],
    *,
    allow_failed: bool,
    min_samples: int,
    sentinel: Callable[[str], SentinelThresholds] | None = None,
) -> dict[tuple[str, str, str], list[tuple[Path, Result]]]:
    """Group results by (GPU generation, matrix, cell id) and check each group can serve as a baseline; errors
    are collected. The generation is the one a result ran on: runs of one planned cell on two generations are
    two baselines, never one pool. `sentinel` (cell id -> its thresholds): ok runs whose rollout/actor mismatch
    fails the gate's absolute limits are refused too, since every later run would be gated against them."""
    groups: dict[tuple[str, str, str], list[tuple[Path, Result]]] = {}
    for item in results:
        groups.setdefault((item[1].gpu, item[1].matrix, item[1].id), []).append(item)
    errors = []
    for (_gpu, matrix, cell_id), items in groups.items():
        name = label(matrix, cell_id)
        keys = {(r.gpu, r.n_gpus, r.model, r.profile) for _, r in items}
        if len(keys) > 1:
            errors.append(f"{name}: runs disagree on (gpu, n_gpus, model, profile): {sorted(keys)}")
        if stacks := stack_disagreement([r for _, r in items]):
            errors.append(f"{name}: runs disagree on package versions ({stacks}); pool only runs of one stack")
        try:
            baseline_path(Path(), items[0][1].gpu, matrix, cell_id)
        except InputError as exc:
            errors.append(f"{name}: {exc}")
        thresholds = sentinel(cell_id) if sentinel is not None else None
        runs = [r for _, r in items]
        for why in refusals(runs, allow_failed=allow_failed, min_samples=min_samples, sentinel=thresholds):
            if why.kind == "status":
                assert why.run is not None
                errors.append(
                    f"{items[why.run][0]}: status {why.detail}; only ok results are promoted "
                    "(pass --allow-failed to record a failure as the baseline)"
                )
            elif why.kind == "sentinel":
                errors.append(
                    f"{name}: the rollout/actor log-prob sentinel fails ({why.detail}); a baseline "
                    "must pass the gate's correctness check (pass --allow-failed to record it anyway)"
                    + (f"; {why.hint}" if why.hint else "")
                )
            else:
                errors.append(f"{name}: {why.detail} (run more steps or more runs)")
    if errors:
        raise InputError("\n  ".join(["cannot promote:", *errors]))
    return groups


def promote(
    results: Sequence[tuple[Path, Result]],
    root: Path,
    *,
    allow_failed: bool,
    min_samples: int,
    now: str | None = None,
    sentinel: Callable[[str], SentinelThresholds] | None = None,
) -> list[Promotion]:
    """Add or replace the baselines of the given results: all runs of one (matrix, id) become one baseline
    at `baseline_path`. The replaced baseline's runs go to `history` (provenance and summary); its gated
    series stays; its calibration is dropped, since it described the replaced runs."""
    groups = plan_promotions(results, allow_failed=allow_failed, min_samples=min_samples, sentinel=sentinel)
    gpus = sorted({items[0][1].gpu for items in groups.values()})
    existing = index_baselines(root, gpus) if root.is_dir() else {}
    at = {path: key for key, (path, _) in existing.items()}
    clashes = []
    for key in groups:
        target = baseline_path(root, *key)
        other = at.get(target)
        if other is not None and other != key:
            clashes.append(f"{target} holds the baseline of {other[0]}, {label(*other[1:])}")
        found = existing.get(key)
        if found is not None and found[0].resolve() != target.resolve():
            clashes.append(
                f"the baseline of {key[0]}, {label(*key[1:])} lies at {found[0]}, not at {target}; move it there "
                "(git mv keeps its history) and promote again"
            )
    if clashes:
        raise InputError("\n  ".join(["cannot promote:", *clashes]))
    stamp = now or now_iso()
    done = []
    for (gpu, matrix, cell_id), items in groups.items():
        runs = [r for _, r in items]
        path = baseline_path(root, gpu, matrix, cell_id)
        history: list[HistoryEntry] = []
        gated: list[GatedEntry] = []
        replaced = None
        dropped = False
        found = existing.get((gpu, matrix, cell_id))
        if found is not None:
            old = found[1]
            replaced = old.promoted_at or "unknown"
            entry = HistoryEntry(
                promoted_at=old.promoted_at,
                replaced_at=stamp,
                runs=[HistoryRun(provenance=r.provenance, summary=summarize(r)) for r in old.results],
            )
            history, gated, dropped = [entry, *old.history], old.gated, old.calibration is not None
        baseline = Baseline(id=cell_id, gpu=gpu, promoted_at=stamp, results=runs, history=history, gated=gated)
        write_baseline(path, baseline)
        cell = pool(runs)
        done.append(Promotion(cell_id, path, len(runs), len(cell.throughput), cell.status, replaced, matrix, dropped))
    return done


def describe_versions(provenance: Provenance, keys: Sequence[str] = ("verl", "vllm", "torch")) -> dict[str, Any]:
    out: dict[str, Any] = {k: provenance.versions.get(k) for k in keys}
    out["image"] = provenance.image_digest or provenance.image
    return out
