"""tools/gpu/logprob-probe.py, run on CPU with a small vocabulary: it calls verl's own log-prob function and the
vectorised maths on the same logits, prints one row per path and pass and a summary that scales them to a step
of the seed's shape (old log-prob + ref forward passes, update forward + backward)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("verl")

PROBE = Path(__file__).resolve().parents[1] / "tools" / "gpu" / "logprob-probe.py"
spec = importlib.util.spec_from_file_location("logprob_probe", PROBE)
assert spec and spec.loader
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


def test_step_seconds_counts_the_three_passes() -> None:
    # 225 sequences: 15 log-prob micro batches in each of the two forward passes, 45 update micro batches
    got = probe.step_seconds({"forward": 0.5, "forward_backward": 0.2}, seqs=225, lp_micro=15, upd_micro=5)
    assert got == pytest.approx(2 * 15 * 0.5 + 45 * 0.2)


def test_the_probe_on_cpu_prints_its_rows_and_summary() -> None:
    out = subprocess.run(
        [sys.executable, str(PROBE), "--device", "cpu", "--vocab", "300", "--tokens-per-seq", "8", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    *passes, last = rows
    assert [(r["path"], r["pass"], r["tokens"]) for r in passes] == [
        ("verl", "forward", 15 * 8),
        ("vectorised", "forward", 15 * 8),
        ("verl", "forward_backward", 5 * 8),
        ("vectorised", "forward_backward", 5 * 8),
    ]
    assert all(r["seconds"] >= 0 and r["device"] == "cpu" and r["vocab"] == 300 for r in passes)
    # verl's rows say how far its path is from the float32 maths: bf16 rounding of log-probs near -ln(300)
    diffs = [r["max_abs_diff"] for r in passes if r["path"] == "verl"]
    assert len(diffs) == 2 and all(0 <= d < 0.05 for d in diffs)
    assert all("max_abs_diff" not in r for r in passes if r["path"] == "vectorised")
    s = last["summary"]
    assert (s["seqs"], s["lp_micro"], s["upd_micro"], s["tokens_per_seq"]) == (225, 15, 5, 8)
    assert s["flash_attn_cross_entropy"] is False  # as on the GPU hosts of 2026-12-03/04
    by = {(r["path"], r["pass"]): r["seconds"] for r in passes}
    want = 2 * 15 * by[("verl", "forward")] + 45 * by[("verl", "forward_backward")]
    # the summary is rounded to 0.01 s, the rows to 1e-4 s each (75 of them in `want`): 0.005 + 75 x 5e-5
    assert s["verl_step_s"] == pytest.approx(want, abs=0.009)
