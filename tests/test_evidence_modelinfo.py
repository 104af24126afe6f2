"""The committed logs behind carrying vLLM's model-info cache (`suite/run/compile_cache.py`, part `modelinfos`):
on a host's first cell vLLM inspects the model class in a subprocess between its `Enabling cumem allocator` and
`Resolved architecture` lines; a later cell on the same host reads the inspection from VLLM_CACHE_ROOT."""

from __future__ import annotations

import statistics
from pathlib import Path

from evidence_helpers import EVIDENCE, log_lines

from suite.telemetry.startup import line_time

# cells that started after another cell on the same host (the host's vLLM cache already held the inspection)
LATER_ON_THEIR_HOST = {
    "2026-11-28-h200x2-megatron/h100-graphs/qwen2.5-0.5b/h100x1/fsdp/full-off_param+optimizer-tp1-rb16",
    "2026-11-28-h200x2-megatron/h100-megatron/qwen2.5-0.5b/h100x1/megatron/full-off_none-tp1-rb16",
    "2026-12-03-h200-heavy/h200-1gpu-7b/lora32-off_none-tp1-rb45-gmu0.3-mnbt8192-graphs-mb25-gc",
    "2026-12-04-h200-heavy-3/h200-1gpu-7b-nokl/lora32-off_param+optimizer-tp1-rb45-mnbt1536-mb15-gc-nobm-klloss",
    "2026-12-04-h200-heavy-4/h200-1gpu-7b-flex/lora32-off_none-tp1-rb45-attnsdpa-normpad-mnbt8192-mb5-nogc",
    "2026-12-06-h100-heavy-3/h100-1gpu-7b-fa-kv/lora32-off_none-tp1-rb45-gmu0.4-attnflex-rmpad-mnbt8192-mb3-nogc",
}


def inspection_gap(cell: Path) -> int | None:
    """Seconds from vLLM's `Enabling cumem allocator` to its `Resolved architecture` (same process, same day)."""
    lines = log_lines(cell)
    start = next((i for i, ln in enumerate(lines) if "Enabling cumem allocator" in ln), None)
    if start is None:
        return None
    end = next((ln for ln in lines[start:] if "Resolved architecture" in ln), None)
    if end is None:
        return None
    t0, t1 = line_time(lines[start], 2026), line_time(end, 2026)
    assert t0 is not None and t1 is not None, (lines[start], end)
    return round((t1 - t0).total_seconds())


def gaps() -> dict[str, int]:
    out = {}
    for log in sorted(EVIDENCE.glob("*/**/log.txt.xz")):
        gap = inspection_gap(log.parent)
        if gap is not None:
            out[str(log.parent.relative_to(EVIDENCE))] = gap
    return out


def test_the_first_cell_of_a_host_inspects_the_model_and_later_ones_do_not() -> None:
    found = gaps()
    later = {k: v for k, v in found.items() if k in LATER_ON_THEIR_HOST}
    first = {k: v for k, v in found.items() if k not in LATER_ON_THEIR_HOST}
    assert set(later) == LATER_ON_THEIR_HOST and set(later.values()) == {0}
    assert len(first) == 28 and min(first.values()) == 14 and max(first.values()) == 26
    assert statistics.median(first.values()) == 20
    assert any("14b" in k for k in first) and any("h100" in k for k in first) and any("h200" in k for k in first)


def test_the_second_cell_on_a_host_starts_vllm_sooner() -> None:
    """The start-up phase that holds the inspection (actor ready -> vLLM's weights loaded), first and second cell
    of the same host, from the committed results."""
    import json

    from suite.telemetry.startup import phase_durations

    def vllm_start(cell: str) -> float:
        result = json.loads((EVIDENCE / cell / "result.json").read_text())
        return phase_durations(result["startup_breakdown_s"])["vllm_weights_loaded"]

    pairs = {
        "2026-12-06-h100-heavy-3/h100-1gpu-7b-fa-kv/lora32-off_none-tp1-rb45-gmu0.5-attnflex-rmpad-mnbt8192-mb3-nogc": (
            "2026-12-06-h100-heavy-3/h100-1gpu-7b-fa-kv/lora32-off_none-tp1-rb45-gmu0.4-attnflex-rmpad-mnbt8192-mb3-nogc"
        ),
        "2026-12-04-h200-heavy-4/h200-1gpu-7b-flex/lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb5-nogc": (
            "2026-12-04-h200-heavy-4/h200-1gpu-7b-flex/lora32-off_none-tp1-rb45-attnsdpa-normpad-mnbt8192-mb5-nogc"
        ),
    }
    got = [(round(vllm_start(a), 1), round(vllm_start(b), 1)) for a, b in pairs.items()]
    assert got == [(70.0, 58.0), (96.5, 70.0)]
