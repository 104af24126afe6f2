"""The baseline store: `baselines/<gen>/<matrix>/<full cell id>.json`, one file per GPU generation, matrix
and cell (the full id already holds model, `<gen>x<count>`, backend and axes; it comes from the matrix axes
alone, so two matrices with different `[base]` settings share ids, and the matrix folder keeps them apart).

A baseline's identity is (generation, matrix, id): the generation from the folder under the store root, the
matrix and id from the file's content (its results' `matrix` and `id`). Every `*.json` under
`baselines/<gen>/` is read, wherever it lies, so a file at the older layout `baselines/<gen>/<full id>.json`
still counts; two files claiming one identity are bad input. `promote` writes the current layout (and
removes a file of the same identity at another path, keeping its history).

A baseline file is a wrapper, not a Result with extra keys, because one baseline may pool several runs of
the cell (N runs x M steps is what gives the gate its power) and the Result schema forbids extra keys:

    {"format": 1, "id": ..., "gpu": ..., "promoted_at": ..., "results": [Result, ...],
     "history": [{"promoted_at", "replaced_at", "runs": [{"provenance", "summary"}]}, ...]}   # newest first

A bare Result JSON committed in the store is read as a baseline of one run with no history.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from suite.errors import InputError
from suite.gate.cells import Cell, median, pool
from suite.gate.load import RESULT_NAME, looks_like_result, read_json, result_from_dict
from suite.results.schema import Provenance, Result

BASELINE_FORMAT = 1
# `baselines/evidence/`: raw files of GPU sessions (logs, partial runs) kept beside the store, not part of it
EVIDENCE_DIR = "evidence"


def in_evidence(path: Path, root: Path) -> bool:
    """Whether `path` lies in the evidence folder of the store or results tree `root` (searched recursively)."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return False
    return EVIDENCE_DIR in rel.parts[:-1]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunSummary(_Model):
    status: str
    measured_steps: int
    throughput_median: float | None = None
    time_per_step_median: float | None = None
    response_length_median: float | None = None
    peak_memory_worst_gb: float | None = None
    accuracy: dict[str, dict[str, int]] = Field(default_factory=dict)


class HistoryRun(_Model):
    provenance: Provenance
    summary: RunSummary


class HistoryEntry(_Model):
    promoted_at: str | None
    replaced_at: str
    runs: list[HistoryRun]


class Baseline(_Model):
    format: int = BASELINE_FORMAT
    id: str
    gpu: str
    promoted_at: str | None = None
    results: list[Result] = Field(min_length=1)
    history: list[HistoryEntry] = Field(default_factory=list)

    @property
    def matrix(self) -> str:
        return self.results[0].matrix

    def cell(self) -> Cell:
        return pool(self.results)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"


def summarize(result: Result) -> RunSummary:
    cell = pool([result])
    return RunSummary(
        status=result.status,
        measured_steps=len(cell.throughput),
        throughput_median=median(cell.throughput),
        time_per_step_median=median(cell.time_per_step),
        response_length_median=median(cell.response_length),
        peak_memory_worst_gb=cell.peak_memory_worst_gb,
        accuracy={k: {"correct": v.correct, "total": v.total} for k, v in result.accuracy.items()},
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


def read_baseline(path: Path) -> Baseline:
    data = read_json(path)
    source = str(path)
    if looks_like_result(data):
        result = result_from_dict(data, source)
        return Baseline(id=result.id, gpu=result.gpu, results=[result])
    if not isinstance(data, dict) or "results" not in data:
        raise InputError("neither a baseline (no 'results' list) nor a result (no 'schema'/'id')", source=source)
    if data.get("format") != BASELINE_FORMAT:
        raise InputError(
            f"baseline format {data.get('format')!r} is not supported; this grpo-suite reads {BASELINE_FORMAT}",
            source=source,
            field="format",
        )
    raw_results = data.get("results")
    if not isinstance(raw_results, list) or not raw_results:
        raise InputError("must be a non-empty list of results", source=source, field="results")
    results = [result_from_dict(r, source, prefix=f"results[{i}].") for i, r in enumerate(raw_results)]
    try:
        baseline = Baseline.model_validate({**data, "results": results})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise InputError(f"{err['msg']} (got {err.get('input')!r})", source=source, field=loc) from None
    ids = {r.id for r in results}
    if ids != {baseline.id}:
        raise InputError(f"results hold cell ids {sorted(ids)}, not only {baseline.id!r}", source=source, field="id")
    matrices = {r.matrix for r in results}
    if len(matrices) > 1:
        raise InputError(f"results come from several matrices {sorted(matrices)}", source=source, field="results")
    return baseline


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
    moved_from: Path | None = None  # the replaced baseline's file when it lay elsewhere (older layout); removed


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plan_promotions(
    results: Sequence[tuple[Path, Result]], *, allow_failed: bool, min_samples: int
) -> dict[tuple[str, str, str], list[tuple[Path, Result]]]:
    """Group results by (GPU generation, matrix, cell id) and check each group can serve as a baseline; errors
    are collected. The generation is the one a result ran on: runs of one planned cell on two generations are
    two baselines, never one pool."""
    groups: dict[tuple[str, str, str], list[tuple[Path, Result]]] = {}
    for item in results:
        groups.setdefault((item[1].gpu, item[1].matrix, item[1].id), []).append(item)
    errors = []
    for (_gpu, matrix, cell_id), items in groups.items():
        name = label(matrix, cell_id)
        keys = {(r.gpu, r.n_gpus, r.model, r.profile) for _, r in items}
        if len(keys) > 1:
            errors.append(f"{name}: runs disagree on (gpu, n_gpus, model, profile): {sorted(keys)}")
        try:
            baseline_path(Path(), items[0][1].gpu, matrix, cell_id)
        except InputError as exc:
            errors.append(f"{name}: {exc}")
        failed = [(p, r) for p, r in items if r.status != "ok"]
        if failed and not allow_failed:
            errors.extend(
                f"{p}: status {r.status!r} ({r.reason or 'no reason'}); only ok results are promoted "
                "(pass --allow-failed to record a failure as the baseline)"
                for p, r in failed
            )
        steps = sum(len(r.measured_steps()) for _, r in items if r.status == "ok")
        if not failed and steps < min_samples:
            errors.append(
                f"{name}: {steps} measured step(s) over {len(items)} run(s); the gate needs at least "
                f"{min_samples} (run more steps or more runs)"
            )
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
) -> list[Promotion]:
    """Add or replace the baselines of the given results: all runs of one (matrix, id) become one baseline
    at `baseline_path`. A baseline of the same identity at another path (the older layout) is replaced too:
    its history carries over and its file is removed."""
    groups = plan_promotions(results, allow_failed=allow_failed, min_samples=min_samples)
    gpus = sorted({items[0][1].gpu for items in groups.values()})
    existing = index_baselines(root, gpus) if root.is_dir() else {}
    at = {path: key for key, (path, _) in existing.items()}
    clashes = []
    for key in groups:
        other = at.get(baseline_path(root, *key))
        if other is not None and other != key:
            clashes.append(f"{baseline_path(root, *key)} holds the baseline of {other[0]}, {label(*other[1:])}")
    if clashes:
        raise InputError("\n  ".join(["cannot promote: the file to write holds another baseline:", *clashes]))
    stamp = now or _now()
    done = []
    for (gpu, matrix, cell_id), items in groups.items():
        runs = [r for _, r in items]
        path = baseline_path(root, gpu, matrix, cell_id)
        history: list[HistoryEntry] = []
        replaced = None
        old_path = None
        found = existing.get((gpu, matrix, cell_id))
        if found is not None:
            old_path, old = found
            replaced = old.promoted_at or "unknown"
            entry = HistoryEntry(
                promoted_at=old.promoted_at,
                replaced_at=stamp,
                runs=[HistoryRun(provenance=r.provenance, summary=summarize(r)) for r in old.results],
            )
            history = [entry, *old.history]
        baseline = Baseline(id=cell_id, gpu=gpu, promoted_at=stamp, results=runs, history=history)
        _write_atomic(path, baseline.to_json())
        moved = None
        if old_path is not None and old_path.resolve() != path.resolve():
            old_path.unlink()
            moved = old_path
        cell = pool(runs)
        done.append(Promotion(cell_id, path, len(runs), len(cell.throughput), cell.status, replaced, matrix, moved))
    return done


def describe_versions(provenance: Provenance, keys: Sequence[str] = ("verl", "vllm", "torch")) -> dict[str, Any]:
    out: dict[str, Any] = {k: provenance.versions.get(k) for k in keys}
    out["image"] = provenance.image_digest or provenance.image
    return out


def read_results_file(path: Path, *, in_folder: bool) -> list[Result] | None:
    """The results a file holds: a Result, a baseline's runs, or a `{"result": ...}` wrapper. Other JSON is
    None when it was found in a folder (a plan, a report's results.json) and bad input when named."""
    data = read_json(path)
    source = str(path)
    if looks_like_result(data):
        return [result_from_dict(data, source)]
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        return read_baseline(path).results
    if isinstance(data, dict) and isinstance(data.get("result"), dict):
        return [result_from_dict(data["result"], source, prefix="result.")]
    if in_folder and path.name != RESULT_NAME:
        return None  # other JSON in a folder (a plan, results.json of a report) is not a result
    raise InputError("neither a result (no 'schema'/'id') nor a baseline (no 'results' list)", source=source)
