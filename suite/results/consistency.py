"""Fields of one result that must agree with each other. Pure: a result in, the contradictions out.

One rule for `gpu`: it is the generation of the hardware the result ran on (`suite.results.build` derives it
from `provenance.gpu_name`; the plan's generation, when it differs, is `provenance.extra.planned_gpu`). A
result whose `gpu` says one generation and whose `provenance.gpu_name` another would be stored and gated
under the wrong card, so the reader refuses it instead of guessing which side is right.

The full cell id (`model/<gen>x<n>/<backend>/<axes>`, `suite.plan.cell.Cell.full_id`) carries the planned
generation, the world size and the backend; the world size and backend must match their fields, the planned
generation `provenance.extra.planned_gpu` where it is recorded. Ids that do not have that shape (an `ingest`
with a free-form `--id`) are not parsed.
"""

from __future__ import annotations

import re

from suite.gpus import GPUS, generation_of
from suite.results.schema import Result

_HARDWARE = re.compile(r"^(?P<gen>[a-z][a-z0-9]*)x(?P<n>[1-9][0-9]*)$")


def id_parts(cell_id: str) -> tuple[str, int, str] | None:
    """(planned generation, GPU count, backend) from a full cell id, or None when it has another shape."""
    parts = cell_id.split("/")
    if len(parts) < 4:
        return None
    m = _HARDWARE.match(parts[1])
    if m is None:
        return None
    return m["gen"], int(m["n"]), parts[2]


def contradictions(result: Result) -> list[str]:
    """Each pair of fields that disagree, as `field value vs field value`; empty when consistent."""
    out: list[str] = []
    prov = result.provenance
    measured = generation_of(prov.gpu_name) if prov.gpu_name else None
    if measured is not None and measured != result.gpu:
        out.append(f"gpu {result.gpu!r} vs provenance.gpu_name {prov.gpu_name!r} (a card of generation {measured})")
    planned = prov.extra.get("planned_gpu")
    if planned is not None and planned == result.gpu:
        # planned_gpu is recorded only when the card differs from the plan (suite.results.build)
        out.append(f"gpu {result.gpu!r} vs provenance.extra.planned_gpu {planned!r} (recorded only when they differ)")
    if result.n_gpus % result.nnodes:
        out.append(f"n_gpus {result.n_gpus} vs nnodes {result.nnodes} (n_gpus is nnodes x GPUs per node)")
    parsed = id_parts(result.id)
    if parsed is not None:
        gen, n, backend = parsed
        if n != result.n_gpus:
            out.append(f"n_gpus {result.n_gpus} vs id {result.id!r} ({gen}x{n}: {n} GPU(s))")
        # The id names the plan's generation. Without planned_gpu the plan is unknown (`ingest --gpu h200` of a
        # cell planned for h100 is right to say h200), so only a recorded planned_gpu is held against the id.
        if planned is not None and gen in GPUS and planned in GPUS and gen != planned:
            out.append(f"provenance.extra.planned_gpu {planned!r} vs id {result.id!r} (planned for {gen})")
        if backend != result.backend:
            out.append(f"backend {result.backend!r} vs id {result.id!r} (backend part {backend!r})")
    return out
