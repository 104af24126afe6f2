"""tools/gpu/next.py: the run list's plans exist, every listed cell has a prediction, and the first entry that
fits the host's time is the one launched, with the window what the margin leaves."""

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_next", REPO / "tools" / "gpu" / "next.py")
nxt = importlib.util.module_from_spec(_spec)
sys.modules["gpu_next"] = nxt  # dataclasses look their module up there
_spec.loader.exec_module(nxt)


def test_every_entry_names_a_plan_that_plans_sh_makes():
    plans = (REPO / "tools" / "gpu" / "plans.sh").read_text()
    for e in nxt.RUN_LIST:
        if e.profile == "short":
            assert f"plan {e.matrix} short {e.matrix} {e.plan}" in plans
        else:
            assert e.matrix in plans and e.plan == f"{e.matrix.split('-1gpu-')[1]}-{e.matrix.split('-')[0]}"
        assert (REPO / "suite" / "matrices" / f"{e.matrix}.toml").is_file()


@pytest.fixture(scope="module")
def times():
    walls = nxt.measured_walls()
    return {e: nxt.run_s(e, walls) for e in nxt.RUN_LIST}


def test_every_entry_has_a_wall_time_and_a_measured_one_wins_where_longer(times):
    assert all(t > 0 for t in times.values())
    bf16 = next(e for e in nxt.RUN_LIST if e.matrix == "h100-1gpu-14b-bf16")
    # predicted ~1060 s; the committed 5-step runs of the same cell took 1168 s and 1132 s
    assert times[bf16] == pytest.approx(1167.9, abs=0.5)


@pytest.mark.parametrize(
    ("card", "left", "plan"),
    [
        ("h200", 1400, "14b-registered-h200"),
        ("h200", 1100, "14b-registered-short-h200"),
        ("h100", 1320, "7b-registered-h100"),  # the 14B baseline exists (2026-12-08): the 7B recipe comes first
        ("h100", 1000, "7b-registered-h100"),
        ("h100", 500, None),
    ],
)
def test_the_first_entry_that_fits_is_chosen(times, card, left, plan):
    picked = nxt.choose(card, left, times)
    if plan is None:
        assert picked is None
        return
    entry, window = picked
    assert entry.plan == plan
    assert window == left - nxt.MARGIN_S
    assert times[entry] <= window


def test_main_prints_the_launch_line(capsys):
    assert nxt.main(["h200", "1400"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(
        "GPU_MODELS=synthetic:qwen2.5-14b HEAVY_PLAN=14b-registered-h200 HEAVY_CELLS=lora32-off_param"
    )
    assert "HEAVY_TIMEOUTS=1260 HEAVY_BUDGET_S=1260" in out and out.endswith("tools/gpu/session-heavy.sh")
    assert nxt.main(["h100", "300"]) == 1
    assert "nothing on the list fits 300 s on an h100" in capsys.readouterr().err
