"""Registered host copies on one H100 (2026-12-07): the copy probe and the 7B recipe with `registered_host_copies`
against the same recipe pinned, read back from the committed files and every number its README states recomputed."""

from __future__ import annotations

import json
import re
import statistics

import pytest
from evidence_helpers import (
    EVIDENCE,
    assert_prediction_committed,
    log_lines,
    memory_errors,
    result_matching_metrics,
)

from suite.gate.store import read_baseline
from suite.plan.cell import FSDP_COPIES_ENV, PAGEABLE_COPIES_MODULE, VLLM_COPIES_ENV
from suite.results.schema import Result
from suite.run.cellio import load_cell

HERE = EVIDENCE / "2026-12-07-h100-registered"
ID = "lora32-off_param+optimizer-tp1-rb45-attnsdpa-normpad-mnbt1536-mb15-gc-registered"
CELL = HERE / "h100-1gpu-7b-registered" / ID
PINNED_ID = "lora32-off_param+optimizer-tp1-rb45-attnsdpa-normpad-mnbt1536-mb15-gc"
PINNED_BASELINE = EVIDENCE.parent / "h100" / "h100-1gpu-7b-fa" / "qwen2.5-7b" / "h100x1" / "fsdp" / f"{PINNED_ID}.json"
PINNED_LOG = EVIDENCE / "2026-12-06-h100-heavy-2" / "h100-1gpu-7b-fa" / PINNED_ID
README = (HERE / "README.md").read_text()


def probe() -> dict[str, dict]:
    return {d["mode"]: d for d in map(json.loads, (HERE / "copy-probe.jsonl").read_text().splitlines())}


def seconds(lines: list[str], what: str) -> list[float]:
    return [float(m[1]) for ln in lines if (m := re.search(rf"It took ([0-9.]+) seconds to {what}", ln))]


def compile_s(lines: list[str]) -> float:
    return next(float(m[1]) for ln in lines if (m := re.search(r"torch.compile took ([0-9.]+) s in total", ln)))


@pytest.fixture(scope="module")
def run() -> Result:
    return result_matching_metrics(CELL)


@pytest.fixture(scope="module")
def pinned() -> Result:
    return read_baseline(PINNED_BASELINE).results[0]


def test_the_probe_table_is_the_probe_file() -> None:
    names = {
        "pinned_cached": "pinned, torch's caching host allocator",
        "pageable_fresh": "pageable, fresh each round",
        "pageable_reused": "pageable, reused",
        "registered": "registered (`cudaHostRegister`) in place",
        "host_buffers": "the suite's `HostBuffers`, plain tensors",
        "host_buffers_dtensor": "the suite's `HostBuffers`, DTensors of a CUDA mesh",
    }
    got = probe()
    assert set(got) == set(names)
    for mode, label in names.items():
        d = got[mode]
        assert (d["gib"], d["tensors"], d["gpu"], d["torch"]) == (8.21, 45, "NVIDIA H100 80GB HBM3", "2.11.0+cu130")
        row = (
            f"| {label} | {', '.join(f'{v:.2f}' for v in d['d2h_gib_s'])} | "
            f"{', '.join(f'{v:.2f}' for v in d['h2d_gib_s'])} | {d['rss_growth_gib']:.2f} |"
        )
        assert row in README, row
    # what only a GPU could show: a CUDA-mesh DTensor's host copy keeps its spec over the registered buffer
    dt = got["host_buffers_dtensor"]
    assert (dt["host_type"], dt["aliases_buffers"], dt["values_kept"]) == ("DTensor", True, True)
    # registered memory runs at pinned speed from the first round, and grows the host by the data alone
    assert min(got["registered"]["d2h_gib_s"]) > 50 and got["registered"]["rss_growth_gib"] < 8.3
    assert got["pinned_cached"]["rss_growth_gib"] > 14 and max(got["pageable_fresh"]["d2h_gib_s"]) < 2


def test_the_cell_is_the_registered_recipe_and_every_process_says_so(run, pinned) -> None:
    assert (run.status, run.matrix, run.profile, run.gpu, run.warmup_steps) == (
        "ok",
        "h100-1gpu-7b-registered",
        "short",
        "h100",
        1,
    )
    assert run.provenance.git_commit == "862d0851ae973b1ab7cb19fbfc104fbaea2a450a"
    assert run.provenance.versions["flash-attn"] == "2.8.3" == pinned.provenance.versions["flash-attn"]
    assert load_cell(CELL / "cell.json").argv == list(run.provenance.argv)
    argv = " ".join(run.provenance.argv)
    assert f"{FSDP_COPIES_ENV}=registered" in argv and f"{VLLM_COPIES_ENV}=registered" in argv
    assert f"VERL_USE_EXTERNAL_MODULES={PAGEABLE_COPIES_MODULE}" in argv
    lines = log_lines(CELL)
    patched = {
        (m[1], m[2])
        for ln in lines
        if (m := re.search(r"\((\w+) pid=\d+\).*\[grpo-suite\] registered host copies: (\S+) patched", ln))
    }
    assert {("TaskRunnerV1", "verl.utils.fsdp_utils"), ("WorkerDict", "verl.utils.fsdp_utils")} <= patched
    assert ("vLLMHttpServer", "vllm.device_allocator.cumem") in patched
    assert sum("vLLM's first sleep backup served" in ln for ln in lines) == 1
    assert sum("(Worker pid=" in ln and "cumem patched" in ln for ln in lines) == 1


def test_same_speed_as_pinned(run, pinned) -> None:
    m, p = run.measured_steps(), pinned.measured_steps()
    assert [round(s.throughput) for s in m] == [3062, 3048] and len(p) == 4
    assert round(statistics.median(s.throughput for s in m)) == 3055
    assert round(statistics.median(s.throughput for s in p)) == 3041
    assert [round(s.time_per_step, 1) for s in m] == [81.8, 82.9]
    assert round(statistics.median(s.time_per_step for s in p), 1) == 82.8
    assert "| tokens/s/GPU, median of measured steps | 3055 (3062, 3048) | 3041 |" in README

    def phases(r: Result) -> str:
        keys = ("gen", "old_log_prob", "ref", "update_actor", "update_weights")
        return " / ".join(f"{statistics.mean(s.timing_s[k] for s in r.measured_steps()):.1f}" for k in keys)

    assert f"| {phases(run)} | {phases(pinned)} |" in README
    assert abs(statistics.median(s.throughput for s in m) / statistics.median(s.throughput for s in p) - 1) < 0.01


def test_vllm_sleeps_at_pinned_speed() -> None:
    mine, theirs = seconds(log_lines(CELL), "fall asleep"), seconds(log_lines(PINNED_LOG), "fall asleep")
    assert f"{mine[0]:.2f}" == "6.13" and f"{theirs[0]:.2f}" == "17.20"
    assert (f"{min(mine[1:]):.2f}", f"{max(mine[1:]):.2f}") == ("0.31", "0.32")
    assert (f"{min(theirs[1:]):.2f}", f"{max(theirs[1:]):.2f}") == ("0.31", "0.38")
    assert "| vLLM's first sleep / later sleeps, s | 6.13 / 0.31-0.32 | 17.20 / 0.31-0.38 |" in README
    assert (f"{compile_s(log_lines(CELL)):.1f}", f"{compile_s(log_lines(PINNED_LOG)):.1f}") == ("21.3", "32.3")


def test_host_memory_saved_and_predicted(run, pinned) -> None:
    assert (run.host_peak_memory_gb, pinned.host_peak_memory_gb) == (70.46, 109.36)
    assert (run.host_system_peak_memory_gb, pinned.host_system_peak_memory_gb) == (63.53, 103.15)
    saved = pinned.host_peak_memory_gb - run.host_peak_memory_gb
    assert f"{saved:.1f}" == "38.9" and f"{-saved / pinned.host_peak_memory_gb * 100:.1f}" == "-35.6"
    assert f"{pinned.host_system_peak_memory_gb - run.host_system_peak_memory_gb:.1f}" == "39.6"
    gpu, host = memory_errors(run)
    assert (f"{gpu * 100:+.1f}", f"{host * 100:+.1f}") == ("+0.4", "-2.0")
    assert "| host tree peak GiB (predicted) | **70.46 (69.08, -2.0 %)** | 109.36 (107.64) |" in README
    assert "| NVML peak GiB (predicted) | 69.84 (70.1, +0.4 %) | 69.94 |" in README
    assert_prediction_committed(run, EVIDENCE / "predictions" / "h100-1gpu-7b-registered.txt", ID)


def test_start_up(run, pinned) -> None:
    got = [round(r.startup_breakdown_s[k]) for r in (run, pinned) for k in ("ready_to_fit", "first_step")]
    assert got == [266, 379, 337, 454]
    assert "| `ready to fit` / end of step 1, s | 266 / 379 | 337 / 454 |" in README
