"""GPU memory by phase from a result's NVML timeline and its steps' sightings (suite/results/phases.py)."""

from __future__ import annotations

import itertools

import pytest

from suite.results.phases import (
    ORDER,
    PLANNER_PHASE,
    Level,
    held_phases,
    phase_peaks,
    phase_windows,
    planner_held_phases,
    step_phase_levels,
    step_phase_peaks,
    window_peak,
)
from suite.results.schema import NvmlTimeline, Result, Step

TIMING = {"gen": 20.0, "reward": 0.5, "old_log_prob": 10.0, "ref": 8.0, "adv": 0.1, "update_actor": 27.0,
          "update_weights": 1.5}  # fmt: skip


def step(n: int, seen: float | None, timing: dict[str, float] = TIMING) -> Step:
    total = sum(timing.values())
    return Step(step=n, throughput=1.0, time_per_step=total, response_length_mean=1.0, timing_s={**timing,
                "step": total}, seen_s=seen)  # fmt: skip


def timeline(levels: list[tuple[float, float, float]], until: float, start: float = 0.0) -> NvmlTimeline:
    """Per-second windows from `start`: the level of the (from, to, GiB) span a window falls in, 1.0 elsewhere."""
    rows = []
    for i in range(int((until - start) / 1.0)):
        t = start + i
        rows.append([next((g for a, b, g in levels if a <= t < b), 1.0)])
    return NvmlTimeline(interval_s=1.0, start_s=start, used_gb=rows)


def result(steps: list[Step], tl: NvmlTimeline | None, warmup: int = 0) -> Result:
    return Result(id="c", matrix="m", profile="bench", gpu="h100", n_gpus=1, model="x", backend="fsdp", axes={},
                  status="ok", steps=steps, warmup_steps=warmup, nvml_timeline=tl)  # fmt: skip


def test_windows_run_backwards_from_the_sighting_in_verls_order() -> None:
    w = phase_windows(step(1, 100.0))
    assert [x.phase for x in w] == [p for p in ORDER if p in TIMING]
    assert w[-1].end_s == 100.0 and w[-1].start_s == pytest.approx(98.5)
    assert w[0].start_s == pytest.approx(100.0 - sum(TIMING.values()))
    assert all(a.end_s == pytest.approx(b.start_s) for a, b in itertools.pairwise(w))
    assert phase_windows(step(1, None)) == []


def test_window_peak_takes_only_windows_inside_the_margins() -> None:
    tl = NvmlTimeline(interval_s=1.0, start_s=10.0, used_gb=[[5.0], [9.0], [7.0, 8.0], [None], [50.0]])
    assert window_peak(tl, 10.0, 15.0, 0.0) == 50.0
    assert window_peak(tl, 10.0, 15.0, 1.0) == 9.0  # [11, 14]: windows 1..3, one of them with two GPUs
    assert window_peak(tl, 13.0, 14.0, 0.0) is None  # a gap
    assert window_peak(tl, 10.0, 12.5, 1.0) is None  # [11, 11.5] holds no whole window


def test_each_phase_gets_its_own_level() -> None:
    s1 = step(1, 100.0)
    w = {x.phase: (x.start_s, x.end_s) for x in phase_windows(s1)}
    spans = [(*w["gen"], 60.0), (*w["old_log_prob"], 70.0), (*w["ref"], 45.0), (*w["update_actor"], 62.0)]
    r = result([s1], timeline(spans, until=120.0))
    peaks = step_phase_peaks(r)[1]
    assert {k: peaks[k] for k in ("gen", "old_log_prob", "ref", "update_actor")} == {
        "gen": 60.0, "old_log_prob": 70.0, "ref": 45.0, "update_actor": 62.0}  # fmt: skip
    # the short phases hold no whole window inside their margins
    assert "adv" not in peaks and "reward" not in peaks and "update_weights" not in peaks


def test_phase_peaks_take_the_max_over_measured_steps_only() -> None:
    s1, s2, s3 = step(1, 80.0), step(2, 150.0), step(3, 220.0)
    spans = []
    for s, old in ((s1, 78.0), (s2, 66.0), (s3, 68.0)):
        w = {x.phase: (x.start_s, x.end_s) for x in phase_windows(s)}
        spans.append((*w["old_log_prob"], old))
    r = result([s1, s2, s3], timeline(spans, until=230.0), warmup=1)
    assert phase_peaks(r)["old_log_prob"] == 68.0  # the warm-up step's 78 is not counted
    assert phase_peaks(r, steps=[1])["old_log_prob"] == 78.0
    assert list(phase_peaks(r)) == [p for p in ORDER if p in phase_peaks(r)]


def test_nothing_without_a_timeline_or_sightings() -> None:
    assert step_phase_peaks(result([step(1, 50.0)], None)) == {}
    tl = timeline([], until=60.0)
    assert step_phase_peaks(result([step(1, None)], tl)) == {}


def test_every_planner_phase_is_a_verl_phase() -> None:
    assert set(PLANNER_PHASE) <= set(ORDER)
    assert set(PLANNER_PHASE.values()) == {"rollout", "old_log_prob", "ref_log_prob", "actor_update", "sync"}


def test_host_phases_split_at_the_first_steps_start() -> None:
    from suite.results.phases import host_phase_peaks
    from suite.results.schema import HostTimeline

    s1, s2, s3 = step(1, 100.0), step(2, 170.0), step(3, 240.0)  # 67.1 s each
    tree = [90.0 if t < 20 else 40.0 if t < 32.9 else 55.0 if t < 170 else 58.0 for t in range(245)]
    tl = HostTimeline(interval_s=1.0, start_s=0.0, tree_gb=tree, system_gb=[t + 5 for t in tree])
    r = result([s1, s2, s3], None, warmup=1).model_copy(update={"host_timeline": tl})
    # start-up ends where step 1 starts (100 - 67.1 = 32.9 s); steady is the measured steps 2 and 3
    assert host_phase_peaks(r) == {"startup": 90.0, "steady": 58.0}
    # where the log showed the trainer's model built, start-up ends there: vLLM's sleep copy after it is steady's
    tree2 = [30.0 if t < 20 else 40.0 if t < 25 else 55.0 if t < 170 else 58.0 for t in range(245)]
    built = r.model_copy(
        update={
            "host_timeline": tl.model_copy(update={"tree_gb": tree2}),
            "startup_breakdown_s": {"actor_initialized": 24.0, "first_step": 100.0},
        }
    )
    assert host_phase_peaks(built) == {"startup": 40.0, "steady": 58.0}
    no_tree = tl.model_copy(update={"tree_gb": [None] * len(tree)})
    assert host_phase_peaks(r.model_copy(update={"host_timeline": no_tree})) == {}
    assert host_phase_peaks(result([step(1, None)], None)) == {}


def levels_result(gen: float, old: float, ref: float, update: float, n: int = 3) -> Result:
    """`n` steps back to back, each phase flat at its level (the rise into a phase inside its margin)."""
    steps, spans, t = [], [], 10.0
    for i in range(1, n + 1):
        t += sum(TIMING.values())
        s = step(i, t)
        steps.append(s)
        w = {x.phase: (x.start_s, x.end_s) for x in phase_windows(s)}
        spans += [(*w["gen"], gen), (*w["old_log_prob"], old), (*w["ref"], ref), (*w["update_actor"], update)]
    return result(steps, timeline(spans, until=t + 5.0))


def test_a_phase_that_never_leaves_the_level_before_it_is_held() -> None:
    # no offload: old log-prob fills torch's cache, ref and update run inside it (the 2026-12-06 H100 flex cells)
    r = levels_result(64.8, 69.9, 69.9, 70.2)
    assert held_phases(r) == {"ref", "update_actor"}
    assert planner_held_phases(r) == {"ref_log_prob", "actor_update"}
    # offload releases between the passes: every phase its own (the recipe)
    assert held_phases(levels_result(26.9, 69.9, 44.7, 54.9)) == frozenset()
    # a rise past the tolerance is the phase's own
    assert held_phases(levels_result(64.8, 69.9, 69.9, 71.0)) == {"ref"}
    assert held_phases(levels_result(64.8, 69.9, 69.9, 71.0), tol_gib=1.5) == {"ref", "update_actor"}
    # the first phase of a step has nothing before it in the step
    assert "gen" not in held_phases(levels_result(70.0, 70.0, 70.0, 70.0))


def test_a_phase_that_dips_below_the_level_before_is_not_held() -> None:
    s = step(1, 100.0)
    w = {x.phase: (x.start_s, x.end_s) for x in phase_windows(s)}
    a, b = w["ref"]
    # ref released to 40 for a few seconds, then came back to old log-prob's level
    spans = [(*w["old_log_prob"], 70.0), (a, a + 3.0, 40.0), (a + 3.0, b, 70.0), (*w["update_actor"], 50.0)]
    r = result([s], timeline(spans, until=120.0))
    levels = step_phase_levels(r)[1]
    assert levels["ref"] == Level(peak=70.0, floor=40.0)
    assert levels["old_log_prob"].peak == levels["old_log_prob"].floor == 70.0
    assert held_phases(r) == frozenset()


def test_held_only_when_held_in_every_measured_step() -> None:
    held_run = levels_result(64.8, 69.9, 69.9, 70.2, n=2)
    own_run = levels_result(26.9, 69.9, 44.7, 54.9, n=2)
    # a run whose second step released before the ref pass: ref is its own there, so not held overall
    steps = held_run.steps[:1] + [s.model_copy(update={"seen_s": s.seen_s + 1000.0}) for s in own_run.steps[1:]]
    head = held_run.nvml_timeline.used_gb
    rows = head + [[1.0]] * (1000 - len(head)) + own_run.nvml_timeline.used_gb
    tl = NvmlTimeline(interval_s=1.0, start_s=0.0, used_gb=rows)
    mixed = result(steps, tl)
    assert held_phases(mixed, steps=[1]) == {"ref", "update_actor"}
    assert held_phases(mixed, steps=[2]) == frozenset()
    assert held_phases(mixed) == frozenset()
    # warm-up steps do not count
    assert held_phases(result(steps, tl, warmup=1)) == frozenset()
    assert held_phases(result(held_run.steps, held_run.nvml_timeline, warmup=1)) == {"ref", "update_actor"}
    assert held_phases(result([step(1, 50.0)], None)) == frozenset()
