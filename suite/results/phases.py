"""GPU memory by phase of a step, read from a result's NVML timeline (per-window max) and the times its steps'
metrics lines were seen.

verl 0.9.1 runs a step's phases in one order (trainer/ppo/ray_trainer.py `fit`): gen, reward, old_log_prob, ref,
values, adv, update_critic, update_actor, update_weights, and logs the step's metrics line right after the last.
So each phase's window is placed backwards from the line's sighting with the durations of `timing_s`. A sighting is
up to one poll (0.5 s) late and the NVML windows are `interval_s` wide, so only windows wholly inside a phase less a
margin on both sides count; a phase too short to hold one has no peak.

NVML sees what torch's caching allocator reserved, not what a phase allocated. Where nothing is released between
two phases (no offload, no `empty_cache`), the later phase starts at the level the earlier one left and its peak is
that level: a bound from above on its own need, not a measurement of it. Such a phase is *held* (`held_phases`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from suite.results.schema import NvmlTimeline, Result, Step

# verl's order within a step; timing_s keys (values/update_critic only with a critic)
ORDER: tuple[str, ...] = (
    "gen",
    "reward",
    "old_log_prob",
    "ref",
    "values",
    "adv",
    "update_critic",
    "update_actor",
    "update_weights",
)
# the memory planner's phase of each verl phase (suite/memory/model.py)
PLANNER_PHASE: dict[str, str] = {
    "gen": "rollout",
    "old_log_prob": "old_log_prob",
    "ref": "ref_log_prob",
    "update_actor": "actor_update",
    "update_weights": "sync",
}
# the planner's phases in the order a step runs them (the memory_<phase>_gb columns of the report's exports)
PLANNER_PHASES: tuple[str, ...] = tuple(PLANNER_PHASE[p] for p in ORDER if p in PLANNER_PHASE)
SIGHTING_LAG_S = 0.5  # MetricsWatcher's poll


@dataclass(frozen=True)
class PhaseWindow:
    step: int
    phase: str
    start_s: float  # seconds from process start
    end_s: float


def phase_windows(step: Step) -> list[PhaseWindow]:
    """The phases of one step, placed backwards from when its line was seen; [] without a sighting."""
    if step.seen_s is None:
        return []
    end = step.seen_s
    out: list[PhaseWindow] = []
    for name in reversed(ORDER):
        d = step.timing_s.get(name)
        if d is None or d <= 0:
            continue
        out.append(PhaseWindow(step.step, name, end - d, end))
        end -= d
    return out[::-1]


def _window_maxima(
    rows: Sequence[Sequence[float | None]], first_s: float, interval_s: float, lo: float, hi: float
) -> list[float]:
    """Each window's max over the columns, for the windows (the first starting at `first_s`) wholly inside [lo, hi]."""
    out: list[float] = []
    for i, row in enumerate(rows):
        a = first_s + i * interval_s
        if a < lo or a + interval_s > hi:
            continue
        vals = [v for v in row if v is not None]
        if vals:
            out.append(max(vals))
    return out


def _peak_inside(
    rows: Sequence[Sequence[float | None]], first_s: float, interval_s: float, lo: float, hi: float
) -> float | None:
    """Max over the columns and over the windows (the first starting at `first_s`) wholly inside [lo, hi]."""
    return max(_window_maxima(rows, first_s, interval_s, lo, hi), default=None)


def window_peak(tl: NvmlTimeline, start_s: float, end_s: float, margin_s: float) -> float | None:
    """Max over GPUs and over the timeline windows wholly inside [start + margin, end - margin]; None if none is."""
    return _peak_inside(tl.used_gb, tl.start_s, tl.interval_s, start_s + margin_s, end_s - margin_s)


@dataclass(frozen=True)
class Level:
    """NVML over one phase of one step: the highest and the lowest of its windows (each a max over GPUs)."""

    peak: float
    floor: float


def step_phase_levels(result: Result, margin_s: float | None = None) -> dict[int, dict[str, Level]]:
    """{step: {phase: Level}} for each step with a sighting, phases in step order; phases too short for a window
    are left out."""
    tl = result.nvml_timeline
    if tl is None:
        return {}
    m = SIGHTING_LAG_S + tl.interval_s / 2 if margin_s is None else margin_s
    out: dict[int, dict[str, Level]] = {}
    for step in result.steps:
        got: dict[str, Level] = {}
        for w in phase_windows(step):
            vals = _window_maxima(tl.used_gb, tl.start_s, tl.interval_s, w.start_s + m, w.end_s - m)
            if vals:
                got[w.phase] = Level(max(vals), min(vals))
        if got:
            out[step.step] = got
    return out


def step_phase_peaks(result: Result, margin_s: float | None = None) -> dict[int, dict[str, float]]:
    """{step: {phase: NVML peak GiB}} for each step with a sighting; phases too short for a window are left out."""
    return {
        step: {k: lv.peak for k, lv in levels.items()} for step, levels in step_phase_levels(result, margin_s).items()
    }


def _chosen_steps(result: Result, steps: Sequence[int] | None) -> set[int]:
    """`steps`, or the result's measured steps (warm-up left out)."""
    return set(steps) if steps is not None else {s.step for s in result.measured_steps()}


HELD_TOLERANCE_GIB = 0.5  # NVML's rounding and the allocator's small blocks


def _held(levels: dict[str, Level], tol_gib: float) -> set[str]:
    """The phases of one step that never left the peak of the phase before them."""
    out: set[str] = set()
    names = list(levels)
    for before, name in itertools.pairwise(names):
        prev, lv = levels[before].peak, levels[name]
        if lv.floor >= prev - tol_gib and lv.peak <= prev + tol_gib:
            out.add(name)
    return out


def held_phases(
    result: Result, steps: Sequence[int] | None = None, tol_gib: float = HELD_TOLERANCE_GIB
) -> frozenset[str]:
    """The verl phases held in every measured step (or `steps`) that recorded them: each began at the peak the
    phase before it left and stayed within `tol_gib` of it, so NVML's peak for it is what the allocator kept from
    earlier, an upper bound on the phase's own need."""
    chosen = _chosen_steps(result, steps)
    seen: set[str] = set()
    held: set[str] | None = None
    for step, levels in step_phase_levels(result).items():
        if step not in chosen:
            continue
        seen |= set(levels)
        mine = _held(levels, tol_gib) | (set(ORDER) - set(levels))  # a phase a step did not record does not veto
        held = mine if held is None else held & mine
    return frozenset((held or set()) & seen)


def phase_peaks(result: Result, steps: Sequence[int] | None = None) -> dict[str, float]:
    """NVML peak GiB per phase, max over the measured steps (or `steps`)."""
    chosen = _chosen_steps(result, steps)
    out: dict[str, float] = {}
    for step, peaks in step_phase_peaks(result).items():
        if step not in chosen:
            continue
        for k, v in peaks.items():
            out[k] = max(out.get(k, v), v)
    return {k: out[k] for k in ORDER if k in out}


def planner_phase_peaks(result: Result) -> dict[str, float]:
    """`phase_peaks` under the memory planner's phase names (rollout, old_log_prob, ...); verl phases the planner
    has no phase for are left out."""
    return {PLANNER_PHASE[k]: v for k, v in phase_peaks(result).items() if k in PLANNER_PHASE}


def planner_held_phases(result: Result) -> frozenset[str]:
    """`held_phases` under the memory planner's phase names."""
    return frozenset(PLANNER_PHASE[k] for k in held_phases(result) if k in PLANNER_PHASE)


def host_phase_peaks(result: Result) -> dict[str, float]:
    """Host RAM (the process tree's RSS, GiB) in the host model's two phases: `startup`, from process start to the
    end of the trainer's model build (the start-up breakdown's `actor_initialized`, where the log showed it; else
    the first step's start), and `steady`, over the measured steps; {} without a host timeline or sightings.

    The start-up phase ends with the actor's build because that is what the planner's start-up phase holds: until
    step 1, vLLM starts, loads and goes to sleep, and its sleep copy is the steady state's arriving (a bf16 actor's
    load peak is below it, so a window to step 1 read the steady level as the start-up's)."""
    tl = result.host_timeline
    timed = [s for s in result.steps if s.seen_s is not None]
    if tl is None or not timed or all(v is None for v in tl.tree_gb):
        return {}
    first = timed[0]
    built = (result.startup_breakdown_s or {}).get("actor_initialized")
    spans = {"startup": [(0.0, built if built is not None else first.seen_s - first.time_per_step)]}
    spans["steady"] = [(s.seen_s - s.time_per_step, s.seen_s) for s in timed if s.step > result.warmup_steps]
    rows = [[v] for v in tl.tree_gb]
    out: dict[str, float] = {}
    for name, ranges in spans.items():
        peaks = [p for a, b in ranges if (p := _peak_inside(rows, tl.start_s, tl.interval_s, a, b)) is not None]
        if peaks:
            out[name] = max(peaks)
    return out
