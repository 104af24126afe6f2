"""What to run on the GPU host that came, given its card and the seconds it has left after the transfers:
the first entry of the run list (tools/gpu/README.md, "What to run next") whose wall time fits, with its
launch line. The wall time is the speed planner's prediction (`grpo-suite speed predict`), or the committed
run's of the same cell and steps where that was longer.

    python3 tools/gpu/next.py h200 1400
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

# what launch.sh (setup and the checkpoint build, 37-76 s in tools/gpu/README.md's run records) and the last
# poll's cache export and transfer (~60 s) take beside the run, seconds: the window is what is left of them
MARGIN_S = 140.0
LAUNCH = (
    "GPU_MODELS=synthetic:{model} HEAVY_PLAN={plan} HEAVY_CELLS={cell} HEAVY_TIMEOUTS={t} HEAVY_BUDGET_S={t} "
    "HEAVY_FA_SITE=1 bash tools/gpu/launch.sh tools/gpu/session-heavy.sh"
)


@dataclass(frozen=True)
class Entry:
    card: str
    model: str
    matrix: str
    profile: str
    cell: str
    gives: str

    @property
    def plan(self) -> str:
        """The plan's name in tools/gpu/plans.sh: <size>-<rest>[-short]-<gen>."""
        gen, rest = self.matrix.split("-1gpu-")
        return f"{rest}-short-{gen}" if self.profile == "short" else f"{rest}-{gen}"


REF_14B = "lora32-off_param+optimizer-tp1-rb45-gmu0.3-attnsdpa-normpad-mnbt1536-mb15-gc-registered"
RUN_LIST: tuple[Entry, ...] = (
    Entry("h200", "qwen2.5-14b", "h200-1gpu-14b-registered", "bench", REF_14B, "the 14B reference as a baseline"),
    Entry(
        "h200",
        "qwen2.5-14b",
        "h200-1gpu-14b-registered",
        "short",
        REF_14B,
        "the first 14B recipe steps, not a baseline",
    ),
    Entry(
        "h200",
        "qwen2.5-14b",
        "h200-1gpu-14b-fa",
        "bench",
        "lora32-off_none-tp1-rb45-gmu0.5-attnflex-rmpad-mnbt8192-mb5-nogc",
        "the 14B candidate against the reference",
    ),
    Entry(
        "h100",
        "qwen2.5-7b",
        "h100-1gpu-7b-registered",
        "bench",
        "lora32-off_param+optimizer-tp1-rb45-attnsdpa-normpad-mnbt1536-mb15-gc-registered",
        "the 7B recipe with registered copies as a baseline",
    ),
    Entry(
        "h100",
        "qwen2.5-14b",
        "h100-1gpu-14b-bf16",
        "bench",
        "lora32-off_none-tp1-rb45-gmu0.55-attnflex-rmpad-mnbt8192-mb3-nogc-mdbf16",
        "a second run of the 14B baseline (the gate's power grows with runs)",
    ),
)


def measured_walls() -> dict[tuple[str, str, int], float]:
    """The longest committed wall time of each (matrix, cell, steps) that ended ok."""
    from suite.speed.fit import measured_samples

    walls: dict[tuple[str, str, int], float] = {}
    for s in measured_samples([REPO / "baselines"]):
        if s.wall_s is not None:
            k = (s.matrix, s.cell, s.total_steps)
            walls[k] = max(walls.get(k, 0.0), s.wall_s)
    return walls


def run_s(entry: Entry, walls: dict[tuple[str, str, int], float]) -> float:
    """The predicted wall time, or the measured one of the same cell and steps where that is longer."""
    from suite.memory.cli import predicted_cells
    from suite.speed.predict import predict_cells

    cells = predicted_cells(str(REPO / "suite" / "matrices" / f"{entry.matrix}.toml"), entry.profile)
    speed = next((s for s in predict_cells(cells) if s.id == entry.cell), None)
    if speed is None or speed.run_s is None:
        raise SystemExit(f"{entry.matrix}: no prediction for {entry.cell}")
    return max(speed.run_s, walls.get((entry.matrix, entry.cell, speed.total_steps), 0.0))


def choose(card: str, left_s: float, run_s: dict[Entry, float]) -> tuple[Entry, float] | None:
    """The first entry for `card` whose predicted run and the margin fit `left_s`, with the window to give it."""
    for e in RUN_LIST:
        if e.card == card and run_s[e] + MARGIN_S <= left_s:
            return e, left_s - MARGIN_S
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("card", choices=sorted({e.card for e in RUN_LIST}))
    p.add_argument("left_s", type=float, help="seconds the host has left after the transfers")
    args = p.parse_args(argv)
    walls = measured_walls()
    times = {e: run_s(e, walls) for e in RUN_LIST if e.card == args.card}
    for e, s in times.items():
        print(f"{e.plan:28s} {e.cell:90s} {s:5.0f} s + {MARGIN_S:.0f}: {e.gives}", file=sys.stderr)
    picked = choose(args.card, args.left_s, times)
    if picked is None:
        print(f"nothing on the list fits {args.left_s:.0f} s on an {args.card}", file=sys.stderr)
        return 1
    e, t = picked
    print(LAUNCH.format(model=e.model, plan=e.plan, cell=e.cell, t=int(t)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
