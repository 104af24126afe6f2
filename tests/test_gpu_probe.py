"""tools/gpu/pinned-probe.py's verdict, which decides on the GPU host whether a run uses exact-size pinned blocks
or its fallback cells: read from the probe's JSON lines (no GPU here)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).resolve().parents[1] / "tools" / "gpu" / "pinned-probe.py"
spec = importlib.util.spec_from_file_location("pinned_probe", PROBE)
assert spec is not None and spec.loader is not None
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)
MIB = 2**20
ASKED = 270 * MIB
DEFAULT = {"PYTORCH_ALLOC_CONF": None, "asked": ASKED, "pinned": True, "reserved": 512 * MIB}


@pytest.mark.parametrize(
    ("row", "verdict"),
    [
        (
            {
                "PYTORCH_ALLOC_CONF": "pinned_max_round_threshold_mb:1",
                "asked": ASKED,
                "pinned": True,
                "reserved": ASKED,
            },
            True,
        ),
        # rounded anyway: the key is read but does nothing here
        (
            {
                "PYTORCH_ALLOC_CONF": "pinned_max_round_threshold_mb:1",
                "asked": ASKED,
                "pinned": True,
                "reserved": 512 * MIB,
            },
            False,
        ),
        # no allocator statistics in this torch: the RSS growth decides
        (
            {"PYTORCH_ALLOC_CONF": "x", "asked": ASKED, "pinned": True, "reserved": None, "rss_growth": ASKED + MIB},
            True,
        ),
        ({"PYTORCH_ALLOC_CONF": "x", "asked": ASKED, "pinned": True, "reserved": None, "rss_growth": 512 * MIB}, False),
        # torch refused the key, or the copy was not pinned
        ({"PYTORCH_ALLOC_CONF": "x", "asked": ASKED, "error": "RuntimeError: Unrecognized key"}, False),
        ({"PYTORCH_ALLOC_CONF": "x", "asked": ASKED, "pinned": False, "reserved": ASKED}, False),
    ],
)
def test_verdict(row: dict, verdict: bool) -> None:
    assert probe.honoured([DEFAULT, row]) is verdict


def test_the_default_row_alone_says_nothing() -> None:
    assert probe.honoured([DEFAULT]) is False and probe.honoured([]) is False


def test_the_command_line_verdict(tmp_path: Path) -> None:
    good = {"PYTORCH_ALLOC_CONF": "pinned_max_round_threshold_mb:1", "asked": ASKED, "pinned": True, "reserved": ASKED}
    f = tmp_path / "probe.jsonl"
    f.write_text("=== 12:00:00 pinned probe\n" + "\n".join(json.dumps(r) for r in (DEFAULT, good)) + "\n")
    assert subprocess.run([sys.executable, str(PROBE), "--honoured", str(f)]).returncode == 0
    f.write_text(json.dumps(DEFAULT) + "\n")
    assert subprocess.run([sys.executable, str(PROBE), "--honoured", str(f)]).returncode == 1
