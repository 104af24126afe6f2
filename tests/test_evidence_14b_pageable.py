"""The 14B recipe with pageable host copies on one H200 (2026-12-07), cut off in step 1: read back from the committed
files, and every number its README states recomputed from them."""

from __future__ import annotations

import re
from datetime import datetime

from evidence_helpers import EVIDENCE, log_lines

from suite.memory.calibration import default_calibration
from suite.memory.host import predict_host
from suite.memory.settings import settings_from_cell
from suite.plan.cell import PAGEABLE_COPIES_MODULE, PAGEABLE_CUMEM, PAGEABLE_FSDP_UTILS
from suite.results.io import read_result
from suite.run.cellio import load_cell
from suite.telemetry import classify
from suite.telemetry.startup import line_time, milestones_from_timestamps

HERE = EVIDENCE / "2026-12-07-h200-14b-pageable"
ID = "lora32-off_param+optimizer-tp1-rb45-gmu0.3-attnsdpa-normpad-mnbt1536-mb15-gc-pageable"
CELL = HERE / "h200-1gpu-14b-pageable" / ID
PINNED_14B = (
    EVIDENCE
    / "2026-12-07-h100-heavy-2"
    / "h100-1gpu-14b-bf16"
    / "lora32-off_none-tp1-rb45-gmu0.55-attnflex-rmpad-mnbt8192-mb3-nogc-mdbf16"
)
STARTED = datetime(2026, 12, 7, 17, 48, 44)


def host_used() -> dict[str, float]:
    """host-memory.log: `HH:MM:SS used_MiB available_MiB` every 5 s -> used GiB by time."""
    rows = [line.split() for line in (HERE / "host-memory.log").read_text().splitlines()]
    return {t: int(used) / 1024 for t, used, _ in rows}


def vllm_seconds(lines: list[str], what: str) -> list[float]:
    return [float(m[1]) for ln in lines if (m := re.search(rf"It took ([0-9.]+) seconds to {what}", ln))]


def test_the_run_is_an_interrupted_ingest_with_no_step() -> None:
    r = read_result(CELL / "result.json")
    assert (r.status, r.matrix, r.profile, r.gpu, r.model) == (
        "interrupted",
        "h200-1gpu-14b-pageable",
        "short",
        "h200",
        "synthetic:qwen2.5-14b",
    )
    assert r.steps == [] and "step 1" in (r.reason or "")
    assert classify.find_oom(log_lines(CELL)) is None  # cut off by the host, not by memory
    cell = load_cell(CELL / "cell.json")
    assert cell.id == ID and cell.argv == list(r.provenance.argv)


def test_every_process_it_should_patch_says_so() -> None:
    lines = log_lines(CELL)
    assert any(f"VERL_USE_EXTERNAL_MODULES={PAGEABLE_COPIES_MODULE}" in ln for ln in lines)
    patched = {
        (m[1], m[2]) for ln in lines if (m := re.search(r"\((\w+) pid=\d+\).*pageable host copies: (\S+) patched", ln))
    }
    assert {("TaskRunnerV1", PAGEABLE_FSDP_UTILS), ("WorkerDict", PAGEABLE_FSDP_UTILS)} <= patched
    assert ("vLLMHttpServer", PAGEABLE_CUMEM) in patched
    # vLLM's GPU worker is a child of the server: its line carries both pids
    assert any("(Worker pid=" in ln and f"{PAGEABLE_CUMEM} patched" in ln for ln in lines)


def test_host_memory_against_the_plan() -> None:
    used = host_used()
    assert round(used["17:48:43"], 1) == 1.2
    assert round(max(v for t, v in used.items() if "17:50:50" <= t <= "17:51:45"), 1) == 64.0
    assert round(used["17:56:39"], 1) == 97.5 and round(used["17:56:59"], 1) == 18.0
    peak_t = max(used, key=lambda t: used[t])
    assert (peak_t, round(used[peak_t], 1)) == ("17:59:29", 100.1)
    rise = used["17:57:44"] - used["17:57:04"]
    assert round(rise, 1) == 48.1 and round(rise / 40, 1) == 1.2

    pred = predict_host(settings_from_cell(load_cell(CELL / "cell.json")), default_calibration())
    phases = pred.phase_totals()
    assert (round(phases["startup"], 1), round(phases["steady"], 1)) == (94.0, 109.8)
    assert round(phases["steady"] - used[peak_t], 1) == 9.7
    assert "109.8" in (EVIDENCE / "predictions" / "h200-1gpu-14b-pageable.txt").read_text()
    (backup,) = {float(m[1]) for ln in log_lines(CELL) if (m := re.search(r"([0-9.]+) GiB is backed up", ln))}
    planned = pred.breakdown["vllm_sleep_copy"]
    assert backup == 27.97 and round(planned, 2) == 27.77 and round(100 * (backup / planned - 1), 1) == 0.7


def test_what_the_pageable_copies_cost_against_pinned() -> None:
    lines, pinned = log_lines(CELL), log_lines(PINNED_14B)
    assert [round(s, 1) for s in vllm_seconds(lines, "fall asleep")] == [26.5, 20.2]
    assert round(vllm_seconds(lines, r"wake up tags \['weights'\]")[0], 1) == 6.7
    asleep = vllm_seconds(pinned, "fall asleep")
    assert round(asleep[0], 1) == 21.4 and round(asleep[1], 2) == 0.60
    assert round(vllm_seconds(pinned, r"wake up tags \['weights'\]")[0], 2) == 0.66
    assert any("27.98 GiB is backed up" in ln for ln in pinned)  # the same backup, pinned
    assert round(27.98 / asleep[1]) == 46 and round(27.97 / 20.231802, 1) == 1.4


def test_start_up_as_the_readme_states() -> None:
    lines = log_lines(CELL)
    b = read_result(CELL / "result.json").startup_breakdown_s
    assert b == milestones_from_timestamps(lines, STARTED)
    assert {k: round(v, 1) for k, v in b.items()} == {
        "ray_started": 35.6,
        "data_loaded": 114.4,
        "actor_initialized": 227.7,
        "vllm_weights_loaded": 345.0,
        "vllm_compiled": 409.0,
        "vllm_graphs_captured": 440.0,
        "vllm_engine_ready": 441.0,
        "ready_to_fit": 474.0,
    }
    assert any("torch.compile took 61.89 s in total" in ln for ln in lines)

    def at(pattern: str) -> datetime:
        t = line_time(next(ln for ln in lines if re.search(pattern, ln)), 2026)
        assert t is not None
        return t

    woke = at(r"to wake up tags \['weights'\]")
    synced = at("LoRA adapter sync: remove old lora")
    drained = [line_time(ln, 2026) for ln in lines if "requests have been drained" in ln][-1]
    assert drained is not None
    assert round((synced - woke).total_seconds()) == 61
    assert round((drained - at("LoRA adapter sync, no post-process")).total_seconds()) == 84
