"""Matrix -> cells: expand, check the plan-time rules, build each verl command, validate it against verl."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from suite.errors import InputError
from suite.gpus import GPUS
from suite.matrix.schema import Matrix
from suite.plan.cell import Cell
from suite.plan.constraints import check_cell
from suite.plan.expand import expand, point_id
from suite.plan.overrides import ENTRY, as_overrides, cell_env, cell_inputs, cell_overrides
from suite.plan.verl_check import VerlValidator


def plan_matrix(
    matrix: Matrix,
    profile: str = "bench",
    *,
    out_dir: Path | str,
    data_root: str | None = None,
    validate_with_verl: bool = True,
    validator: VerlValidator | None = None,
) -> list[Cell]:
    """Every cell of the matrix, in expansion order. Each cell's files go to `out_dir / cell.full_id`
    (metrics.jsonl, validation/, ckpt/); its argv and env already point there."""
    prof = matrix.profile(profile)
    out = Path(out_dir).expanduser().resolve()
    mx = matrix.matrix
    host_gb = mx.host_memory_gb if mx.host_memory_gb is not None else GPUS[mx.gpu].host_memory_gib
    cells: list[Cell] = []
    points = expand(matrix)
    ids = [point_id(matrix, p) for p in points]
    _check_ids(matrix, ids)
    for point, cid in zip(points, ids, strict=True):
        stub = Cell(
            id=cid,
            matrix=mx.name,
            gpu=mx.gpu,
            gpus_per_node=mx.gpus_per_node,
            nnodes=mx.nnodes,
            model=mx.model,
            backend=mx.backend,
            profile=profile,
            axes=point,
            status="ok",
            reason=None,
            command=list(ENTRY),
            host_memory_gb=host_gb,
            reference=mx.reference,
            reference_matrix=mx.reference_matrix,
            flash_attn=mx.flash_attn,
        )
        cell_dir = out / stub.full_id
        # A raw-key axis that is a readable setting (`"...rollout.gpu_memory_utilization"`) counts as that setting.
        readable = matrix.readable_point(point)
        overrides = cell_overrides(
            matrix,
            readable,
            prof,
            cell_dir=cell_dir,
            experiment=stub.full_id.replace("/", "__"),
            data_root=data_root,
        )
        reason = check_cell(matrix, readable)
        cells.append(
            replace(
                stub,
                status="invalid" if reason else "ok",
                reason=reason,
                overrides=as_overrides(overrides),
                env=cell_env(cell_dir, lora=bool(readable.get("lora_rank"))),
                inputs=dict(cell_inputs(matrix, readable, prof, cell_dir=cell_dir, data_root=data_root)),
                warmup_steps=prof.warmup_steps,
                total_steps=prof.total_steps,
            )
        )
    if validate_with_verl:
        v = validator or _shared_validator()
        checked: list[Cell] = []
        for c in cells:
            if c.status == "ok":
                err = v.check(c.override_args)
                if err:
                    c = replace(c, status="invalid", reason=f"verl-config: {err}")
            checked.append(c)
        cells = checked
    return cells


def _check_ids(matrix: Matrix, ids: list[str]) -> None:
    seen: set[str] = set()
    for cid in ids:
        if cid in seen:
            raise InputError(
                f"two cells would share the id {cid!r}: axis values that differ only in characters "
                "an id cannot hold (kept: letters, digits, '.', '+', '_')",
                source=matrix.source,
                field="axes",
            )
        seen.add(cid)
    ref = matrix.matrix.reference
    if matrix.matrix.reference_matrix is not None:
        _check_reference_matrix(matrix)
    elif ref is not None and ref not in seen:
        raise InputError(
            f"reference {ref!r} is not a cell of this matrix (after [[exclude]]); cells include: {_near(ref, ids)}",
            source=matrix.source,
            field="matrix.reference",
        )


def _near(ref: str, ids: list[str]) -> str:
    """Up to six cell ids to offer for a reference that is none of them: those sharing its first part."""
    near = [c for c in ids if c.split("-")[0] == ref.split("-")[0]][:6] or ids[:6]
    return f"{', '.join(near)}{' ...' if len(ids) > len(near) else ''}"


# What two matrices must share for one's cells to be divided by the other's reference.
_SHARED = ("gpu", "gpus_per_node", "nnodes", "model", "backend")


def reference_matrix_path(matrix: Matrix) -> Path:
    """`[matrix] reference_matrix` as a file: beside this matrix's own file, else among the shipped ones."""
    name = matrix.matrix.reference_matrix
    beside = Path(matrix.source).parent / f"{name}.toml"
    return beside if beside.is_file() else Path(__file__).resolve().parents[1] / "matrices" / f"{name}.toml"


def plan_reference_cell(
    matrix: Matrix, profile: str = "bench", *, out_dir: Path | str, data_root: str | None = None
) -> Cell | None:
    """`[matrix] reference`, planned in `[matrix] reference_matrix` (no verl check: only this one cell is read);
    None where the matrix names no reference matrix."""
    from suite.matrix.load import load_matrix

    ref = matrix.matrix.reference
    if matrix.matrix.reference_matrix is None or ref is None:
        return None
    other = load_matrix(reference_matrix_path(matrix))
    cells = plan_matrix(other, profile, out_dir=out_dir, data_root=data_root, validate_with_verl=False)
    return next((c for c in cells if c.id == ref), None)


def _check_reference_matrix(matrix: Matrix) -> None:
    """The named matrix exists, shares the hardware, model and backend, and has the reference as a cell."""
    from suite.matrix.load import load_matrix

    mx = matrix.matrix
    path = reference_matrix_path(matrix)
    if mx.reference is None:
        raise InputError(
            f"reference_matrix {mx.reference_matrix!r} names no cell: set reference too",
            source=matrix.source,
            field="matrix.reference",
        )
    if mx.reference_matrix == mx.name or not path.is_file():
        raise InputError(
            f"reference_matrix {mx.reference_matrix!r}: "
            + (
                "this matrix itself (leave reference_matrix out)"
                if mx.reference_matrix == mx.name
                else f"no such matrix ({path.name} beside this file or in suite/matrices)"
            ),
            source=matrix.source,
            field="matrix.reference_matrix",
        )
    other = load_matrix(path)
    differ = [
        f"{k} {getattr(mx, k)!r} vs {getattr(other.matrix, k)!r}"
        for k in _SHARED
        if getattr(mx, k) != getattr(other.matrix, k)
    ]
    if differ:
        raise InputError(
            f"reference_matrix {mx.reference_matrix!r} runs on other hardware or another model: {'; '.join(differ)}",
            source=matrix.source,
            field="matrix.reference_matrix",
        )
    ids = [point_id(other, p) for p in expand(other)]
    if mx.reference not in ids:
        raise InputError(
            f"reference {mx.reference!r} is not a cell of {mx.reference_matrix!r} (after its [[exclude]]); its cells "
            f"include: {_near(mx.reference, ids)}",
            source=matrix.source,
            field="matrix.reference",
        )


_VALIDATOR: VerlValidator | None = None


def _shared_validator() -> VerlValidator:
    """One validator per process: its caches make later plans of similar matrices cheap."""
    global _VALIDATOR
    if _VALIDATOR is None:
        _VALIDATOR = VerlValidator()
    return _VALIDATOR


__all__ = ["plan_matrix"]
