"""The host-memory sampler against real processes: a child and a grandchild that touch known amounts of memory,
processes that end while being read, and the host runtime writing the numbers into result.json."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import psutil
import pytest
from fakes.cells import FAKE_VERL, fake_cell, with_argv

from suite.errors import InputError
from suite.plan.cell import Cell
from suite.results.build import CellInfo, Observation, build_result
from suite.results.io import parse_result, read_result
from suite.results.provenance import collect
from suite.run.host import HostRuntime
from suite.telemetry.hostmem import HostMemorySampler, HostMemorySamples, over_guard, tree_rss
from suite.telemetry.nvml import GIB

MB = 1 << 20
CHILD_MB, GRANDCHILD_MB = 150, 250
# Python's own resident size per interpreter, plus allocator rounding: the slack above what was touched
INTERPRETER_MB = 60

# `python -c HOLDER MB READY [HOLDER MB READY]`: start the grandchild (when asked), fill MB with non-zero bytes
# (every page written, so resident), write its pid to READY, sleep until killed.
HOLDER = textwrap.dedent("""
    import os, subprocess, sys, time
    mb, ready = int(sys.argv[1]), sys.argv[2]
    if len(sys.argv) > 3:
        subprocess.Popen([sys.executable, "-c", *sys.argv[3:]])
    buf = bytearray(b"\\x01") * (mb << 20)
    with open(ready + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(ready + ".tmp", ready)
    time.sleep(120)
""")


def _wait_for(paths: list[Path], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"not ready: {[str(p) for p in paths if not p.exists()]}"
        time.sleep(0.02)


def _end(proc: subprocess.Popen[bytes], ready: Sequence[Path] = ()) -> None:
    """End the child and the descendants we started, by pid: those still below it, and the holders named by
    their ready files (a grandchild outlives a root killed by a test), checked by command line against reuse."""
    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        kids = []
    for f in ready:
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            p = psutil.Process(int(f.read_text()))
            if str(f) in p.cmdline():
                kids.append(p)
    for p in kids:
        with contextlib.suppress(psutil.Error):
            p.kill()
    proc.kill()
    proc.wait(timeout=10)
    psutil.wait_procs(kids, timeout=10)


@pytest.fixture
def holders(tmp_path: Path):
    """A child holding CHILD_MB whose child holds GRANDCHILD_MB; yields (child, [ready files])."""
    ready = [tmp_path / "child.ready", tmp_path / "grandchild.ready"]
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(CHILD_MB), str(ready[0]), HOLDER, str(GRANDCHILD_MB), str(ready[1])]
    )
    try:
        yield proc, ready
    finally:
        _end(proc, ready)


def test_tree_peak_counts_child_and_grandchild(holders) -> None:
    proc, ready = holders
    # started before the grandchild exists: the member list must pick it up while sampling
    with HostMemorySampler(proc.pid, hz=50, list_s=0.05) as sampler:
        _wait_for(ready)
        time.sleep(0.3)
    s = sampler.result
    assert s is not None and s.samples >= 5 and s.errors == 0
    touched = (CHILD_MB + GRANDCHILD_MB) * MB / GIB
    assert touched - 0.02 <= s.peak_tree_gib <= touched + 3 * INTERPRETER_MB * MB / GIB
    # the whole host's use contains the tree (its private pages at least)
    assert s.peak_system_gib >= 0.9 * s.peak_tree_gib
    assert s.peak_system_gib <= s.total_gib
    assert s.total_gib == round(psutil.virtual_memory().total / GIB, 3)
    assert s.rate_hz is not None and s.rate_hz >= 10
    assert s.cpu_s >= 0
    # both holders are `python -c ...`: one role, two processes, the whole tree's peak
    assert s.peak_process_counts == {"python -c": 2}
    assert s.peak_processes_gib["python -c"] == pytest.approx(s.peak_tree_gib, abs=0.002)


def test_an_unrelated_process_is_not_counted(holders) -> None:
    _, ready = holders
    _wait_for(ready)
    # rooted at an idle sibling: the holders' memory is the host's, not this tree's
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with HostMemorySampler(idle.pid, hz=50) as sampler:
            time.sleep(0.2)
    finally:
        idle.kill()
        idle.wait()
    assert sampler.result is not None
    assert sampler.result.peak_tree_gib < INTERPRETER_MB * MB / GIB
    assert sampler.result.peak_system_gib >= (CHILD_MB + GRANDCHILD_MB) * MB / GIB * 0.9


def test_stop_is_idempotent_and_takes_a_final_sample(holders) -> None:
    proc, ready = holders
    _wait_for(ready)
    sampler = HostMemorySampler(proc.pid, hz=1).start()  # one round at start, the final one at stop
    first = sampler.stop()
    assert first is not None and first.samples >= 2
    assert sampler.stop() is first and sampler.result is first


def test_processes_ending_while_sampled_do_not_break_it(tmp_path: Path) -> None:
    # A child that keeps starting short-lived grandchildren: members vanish between listing and reading.
    churn = "import subprocess, sys\nfor _ in range(40): subprocess.run([sys.executable, '-c', 'pass'])\n"
    proc = subprocess.Popen([sys.executable, "-c", churn])
    try:
        with HostMemorySampler(proc.pid, hz=200, list_s=0) as sampler:
            proc.wait(timeout=60)  # the root itself ends while sampled too
            time.sleep(0.1)
    finally:
        _end(proc)
    s = sampler.result
    assert s is not None and s.samples >= 20 and s.errors == 0
    assert 0 < s.peak_tree_gib < 1


def test_tree_rss_drops_ended_members() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    member = psutil.Process(gone.pid)
    gone.wait()  # reaped: the pid names no process any more
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # ended, not reaped yet
    zmember = psutil.Process(zombie.pid)
    me = psutil.Process(os.getpid())
    try:
        _wait_zombie(zmember)
        rss, alive, errors, each = tree_rss([member, zmember, me])
    finally:
        zombie.wait()
    assert member not in alive and me in alive and errors == 0
    assert len(each) == len(alive) and sum(each) == rss
    assert rss >= me.memory_info().rss * 0.5


def _wait_zombie(p: psutil.Process, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while p.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_disabled_without_a_pid_or_with_a_gone_process() -> None:
    s = HostMemorySampler(None).start()
    assert not s.enabled and s.stop() is None
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    s = HostMemorySampler(gone.pid).start()
    assert not s.enabled and s.stop() is None and s.stop() is None


def test_result_fields_rounded_and_absent_by_default() -> None:
    info = CellInfo(id="m/h100x1/fsdp/c", matrix="m", profile="bench", gpu="h100", n_gpus=1, model="m", backend="fsdp")
    prov = collect(argv=["x"], env={}, runtime="host")
    host = HostMemorySamples(
        peak_tree_gib=12.3456, peak_system_gib=40.004, total_gib=125.7391, samples=3, duration_s=1.0
    )
    r = build_result(info, Observation(status="ok", host_memory=host), prov)
    assert (r.host_peak_memory_gb, r.host_system_peak_memory_gb, r.host_memory_total_gb) == (12.35, 40.0, 125.74)
    r = build_result(info, Observation(status="ok"), prov)
    assert r.host_peak_memory_gb is None and r.host_system_peak_memory_gb is None and r.host_memory_total_gb is None


def test_old_result_files_without_host_fields_stay_valid() -> None:
    # a result written before the host fields existed (committed GPU evidence)
    evidence = Path(__file__).parents[1] / "baselines" / "evidence"
    old = [f for f in sorted(evidence.rglob("result.json")) if "host_peak_memory_gb" not in f.read_text()]
    assert old, "no committed result file without the host fields to read"
    r = read_result(old[0])
    assert r.host_peak_memory_gb is None and r.host_system_peak_memory_gb is None and r.host_memory_total_gb is None
    # and one made now, with the three keys removed, reads back the same
    info = CellInfo(id="m/h100x1/fsdp/c", matrix="m", profile="bench", gpu="h100", n_gpus=1, model="m", backend="fsdp")
    data = json.loads(
        build_result(info, Observation(status="ok"), collect(argv=["x"], env={}, runtime="host")).to_json()
    )
    for k in ("host_peak_memory_gb", "host_system_peak_memory_gb", "host_memory_total_gb"):
        data.pop(k)
    assert parse_result(json.dumps(data)).host_memory_total_gb is None


# -- the host runtime --------------------------------------------------------------------------------------------

ALLOC_MB = 200


def _allocating_cell(tmp_path: Path, cell_id: str, args: list[str]) -> Cell:
    """The fake verl, run in a process that first touches ALLOC_MB (as verl's driver holds host memory)."""
    cell = fake_cell(cell_id, args, out_dir=tmp_path)
    code = (
        f"import runpy, sys\nheld = bytearray(b'\\x01') * ({ALLOC_MB} << 20)\n"
        f"sys.argv = sys.argv[1:]\nrunpy.run_path({FAKE_VERL!r}, run_name='__main__')\n"
    )
    argv = [sys.executable, "-c", code, FAKE_VERL, *cell.argv[2:]]
    return with_argv(cell, argv)


def _run(rt: HostRuntime, tmp_path: Path, cell: Cell):
    d = tmp_path / cell.full_id
    r = rt.run_cell(cell, d)
    data = json.loads((d / "result.json").read_text())
    return r, data


def test_host_runtime_writes_host_memory_into_the_result(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cell = _allocating_cell(tmp_path, "hm", ["--steps", "3", "--step-s", "0.2"])
    r, data = _run(HostRuntime(grace_s=1.0, poll_s=0.05), tmp_path, cell)
    assert r.status == "ok", r.reason
    assert data["host_peak_memory_gb"] > 0
    assert data["host_peak_memory_gb"] >= round(ALLOC_MB * MB / GIB, 2) - 0.02
    assert data["host_system_peak_memory_gb"] >= 0.9 * data["host_peak_memory_gb"]
    assert data["host_memory_total_gb"] == round(psutil.virtual_memory().total / GIB, 2)
    assert float(data["provenance"]["extra"]["host_memory_sampler_cpu_s"]) >= 0


def test_host_runtime_sampler_off_and_existing_cluster(tmp_path: Path, monkeypatch) -> None:
    cell = _allocating_cell(tmp_path, "off", ["--steps", "2", "--step-s", "0.1"])
    r, data = _run(HostRuntime(grace_s=1.0, poll_s=0.05, nvml_hz="0"), tmp_path, cell)
    assert r.status == "ok" and data["host_peak_memory_gb"] is None and data["host_memory_total_gb"] is None
    # joined to a Ray cluster: its workers are not the cell's descendants, so no tree peak is claimed
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    cell = _allocating_cell(tmp_path, "ray", ["--steps", "2", "--step-s", "0.1"])
    r, data = _run(HostRuntime(grace_s=1.0, poll_s=0.05), tmp_path, cell)
    assert r.status == "ok" and data["host_peak_memory_gb"] is None
    assert data["host_system_peak_memory_gb"] > 0 and data["host_memory_total_gb"] > 0
    assert "RAY_ADDRESS" in data["provenance"]["extra"]["host_memory"]


def test_sigterm_to_the_root_mid_sampling(holders) -> None:
    proc, ready = holders
    _wait_for(ready)
    with HostMemorySampler(proc.pid, hz=100, list_s=0) as sampler:
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)  # the root goes; the grandchild keeps reading until it is ended
        proc.wait(timeout=10)
        time.sleep(0.1)
    assert sampler.result is not None and sampler.result.errors == 0
    assert sampler.result.peak_tree_gib >= (CHILD_MB + GRANDCHILD_MB) * MB / GIB - 0.02


# -- the host-memory guard ----------------------------------------------------------------------------------------


def test_over_guard_is_a_fraction_of_the_total_and_zero_is_off() -> None:
    assert over_guard(121.25, 125.0, 0.97) and over_guard(122.0, 125.0, 0.97)
    assert not over_guard(121.24, 125.0, 0.97)
    assert not over_guard(125.0, 125.0, 0.0)  # no guard
    assert not over_guard(1.0, 0.0, 0.97)  # no total read: nothing to compare with


def test_latest_system_is_none_before_a_sample_then_the_hosts_used_memory(holders) -> None:
    proc, ready = holders
    _wait_for(ready)
    sampler = HostMemorySampler(proc.pid, hz=100, list_s=0)
    assert sampler.latest_system() is None
    with sampler:
        time.sleep(0.05)
        seen = sampler.latest_system()
    assert seen is not None
    used, total = seen
    vm = psutil.virtual_memory()
    assert total == pytest.approx(vm.total / GIB)
    assert 0 < used < total and used == pytest.approx((vm.total - vm.available) / GIB, abs=1.0)


def test_the_guard_stops_the_cell_at_once_and_records_oom(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    vm = psutil.virtual_memory()
    below_now = 0.5 * (vm.total - vm.available) / vm.total  # the host is past it before the cell starts
    cell = _allocating_cell(tmp_path, "guard", ["--steps", "200", "--step-s", "0.1"])
    t0 = time.monotonic()
    r, data = _run(HostRuntime(grace_s=5.0, poll_s=0.05, host_memory_guard=f"{below_now:.4f}"), tmp_path, cell)
    assert r.status == "oom" and data["status"] == "oom"
    assert r.oom_kind == "host-guard" and data["oom_kind"] == "host-guard"  # the host's memory, for the gate
    assert f"host_memory_guard={float(f'{below_now:.4f}'):g}" in r.reason and "stopped to keep the host" in r.reason
    assert "GiB used" in r.reason and "last step:" in r.reason
    assert time.monotonic() - t0 < 20  # not the 200 steps x 0.1 s the cell would have run, nor the 5 s grace
    assert len(r.steps) < 200
    assert data["host_system_peak_memory_gb"] > 0  # what the guard saw is kept in the result
    assert not [p for p in psutil.process_iter(["cmdline"]) if FAKE_VERL in " ".join(p.info["cmdline"] or [])]


def test_the_default_guard_leaves_an_ordinary_cell_alone(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    rt = HostRuntime(grace_s=1.0, poll_s=0.05)
    assert rt.options.host_memory_guard == 0.97
    r, _ = _run(rt, tmp_path, _allocating_cell(tmp_path, "calm", ["--steps", "2", "--step-s", "0.1"]))
    assert r.status == "ok"


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("1", r"host_memory_guard=1; allowed: a fraction .* \[0, 1\), 0 for no guard"),
        ("1.5", r"host_memory_guard=1.5; allowed: a fraction"),
        ("-0.1", r"bad value '-0.1' for option 'host_memory_guard'; allowed: >= 0"),  # the options' own check
    ],
)
def test_a_guard_outside_zero_to_one_is_refused_naming_the_option(bad: str, says: str) -> None:
    with pytest.raises(InputError, match=says) as err:
        HostRuntime(host_memory_guard=bad)
    assert err.value.field == "--runtime-option"


@pytest.mark.parametrize(
    ("cmdline", "name", "label"),
    [
        (["ray::WorkerDict.actor_rollout_compute_log_prob"], "ray::WorkerDict", "ray::WorkerDict"),
        (["ray::TaskRunner.run"], "ray::TaskRunne", "ray::TaskRunner"),
        (["ray::IDLE"], "ray::IDLE", "ray::IDLE"),
        (["ray::vLLMHttpServer.launch_server"], "ray::vLLMHttpSe", "ray::vLLMHttpServer"),
        (["VLLM::EngineCore"], "VLLM::EngineCor", "VLLM::EngineCore"),
        (["VLLM::Worker_TP0 "], "VLLM::Worker_TP", "VLLM::Worker_TP0"),
        (["/usr/bin/python3", "-m", "verl.trainer.main_ppo", "algorithm.adv_estimator=grpo"], "python3",
         "python -m verl.trainer.main_ppo"),
        (["/opt/venv/bin/python3.12", "-u", "/x/tools/gpu/pinned-probe.py", "--mb", "1"], "python3.12",
         "python pinned-probe.py"),
        (["python3", "-c", "import time"], "python3", "python -c"),
        (["python3", "tools/evidence.py", "-c", "-m", "x"], "python3", "python evidence.py"),  # the program's args
        (["/tmp/ray/session/raylet", "--node_ip_address=10.0.0.1"], "raylet", "raylet"),
        (["/usr/lib/ray/gcs_server --redis_address=x"], "gcs_server", "gcs_server"),
        ([], "kworker", "kworker"),
    ],
)  # fmt: skip
def test_process_roles_from_command_lines(cmdline: list[str], name: str, label: str) -> None:
    from suite.telemetry.hostmem import process_label

    assert process_label(cmdline, name) == label


def test_the_result_keeps_rss_by_role_at_the_tree_peak() -> None:
    host = HostMemorySamples(
        peak_tree_gib=54.3,
        peak_system_gib=48.1,
        total_gib=125.8,
        samples=10,
        duration_s=1.0,
        peak_processes_gib={"ray::WorkerDict": 31.2, "VLLM::Worker_TP0": 15.1, "ray::TaskRunner": 8.0},
        peak_process_counts={"ray::WorkerDict": 1, "VLLM::Worker_TP0": 1, "ray::TaskRunner": 1},
    )
    info = CellInfo(id="m/h200x1/fsdp/c", matrix="m", profile="bench", gpu="h200", n_gpus=1, model="m", backend="fsdp")
    r = build_result(info, Observation(status="ok", host_memory=host), collect(argv=["x"], env={}, runtime="host"))
    assert r.host_peak_processes_gb == {"ray::WorkerDict": 31.2, "VLLM::Worker_TP0": 15.1, "ray::TaskRunner": 8.0}
    assert r.host_peak_process_counts["ray::WorkerDict"] == 1
    again = parse_result(r.to_json())
    assert again.host_peak_processes_gb == r.host_peak_processes_gb
    # results written before these fields read back with none
    old = json.loads(r.to_json())
    del old["host_peak_processes_gb"], old["host_peak_process_counts"]
    assert parse_result(json.dumps(old)).host_peak_processes_gb == {}


def test_host_runtime_records_the_host_timeline_and_step_sightings(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cell = _allocating_cell(tmp_path, "tl", ["--steps", "3", "--step-s", "0.4"])
    r, data = _run(HostRuntime(grace_s=1.0, poll_s=0.05), tmp_path, cell)
    assert r.status == "ok", r.reason
    tl = r.host_timeline
    assert tl is not None and tl.interval_s == 1.0 and 0 <= tl.start_s < r.wall_s
    assert len(tl.tree_gb) == len(tl.system_gb) >= 1
    assert max(v for v in tl.tree_gb if v is not None) == pytest.approx(r.host_peak_memory_gb, abs=0.01)
    assert max(v for v in tl.system_gb if v is not None) == pytest.approx(r.host_system_peak_memory_gb, abs=0.01)
    seen = [s.seen_s for s in r.steps]
    # capped at the process's end, also once both are rounded
    assert all(x is not None for x in seen) and seen == sorted(seen) and seen[-1] <= r.wall_s
    assert data["host_timeline"]["tree_gb"] == tl.tree_gb  # written as the result file holds it
    # joined to an existing Ray cluster: the tree does not hold the run, so its line is empty; the host's stays
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    cell = _allocating_cell(tmp_path, "tlray", ["--steps", "2", "--step-s", "0.1"])
    r, _ = _run(HostRuntime(grace_s=1.0, poll_s=0.05), tmp_path, cell)
    assert r.host_timeline is not None and all(v is None for v in r.host_timeline.tree_gb)
    assert any(v is not None for v in r.host_timeline.system_gb)


def test_the_sampler_timeline_has_tree_and_system_columns(holders) -> None:
    proc, ready = holders
    _wait_for(ready)
    with HostMemorySampler(proc.pid, hz=50, list_s=0.05) as sampler:
        time.sleep(0.3)
    s = sampler.result
    assert s is not None and s.timeline_gib and s.started_at is not None
    assert all(len(w) == 2 for w in s.timeline_gib)
    assert max(w[0] for w in s.timeline_gib if w[0] is not None) == pytest.approx(s.peak_tree_gib, abs=0.001)
    assert max(w[1] for w in s.timeline_gib if w[1] is not None) == pytest.approx(s.peak_system_gib, abs=0.001)
