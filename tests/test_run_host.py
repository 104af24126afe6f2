import json
import threading
import time

import pytest
from fakes.cells import fake_cell
from fakes.nvml import GIB, FakeGpu, FakeNvml

from suite.errors import InputError
from suite.packages import PACKAGES
from suite.results.io import read_result
from suite.results.provenance import package_versions
from suite.run.host import HostRuntime
from suite.run.runtime import make_runtime
from suite.telemetry import nvml as nv


@pytest.fixture
def rt():
    return HostRuntime(grace_s=1.0, poll_s=0.05)


def run(rt, tmp_path, args, cell_id="c", **kw):
    cell = fake_cell(cell_id, ["--step-s", "0.02", *args], out_dir=tmp_path, validation=kw.pop("validation", False))
    d = tmp_path / cell.full_id
    r = rt.run_cell(cell, d, **kw)
    assert read_result(d / "result.json") == r  # what is returned is what was written
    return r, d


def test_ok_run_records_steps_accuracy_log_and_provenance(rt, tmp_path):
    seen = []
    r, d = run(rt, tmp_path, ["--val", "--steps", "4"], validation=True, on_step=seen.append)
    assert r.status == "ok" and r.exit_code == 0 and r.reason is None
    assert [s.step for s in r.steps] == [1, 2, 3, 4] and seen[-1] == 4
    assert r.accuracy["gsm8k"].correct == 4 and r.accuracy_initial["gsm8k"].correct == 2
    assert r.startup_s is not None and 0 < r.startup_s <= r.wall_s
    assert r.startup_breakdown_s["imports_done"] <= r.startup_breakdown_s["first_step"]
    assert abs(r.startup_breakdown_s["first_step"] - r.startup_s) <= 0.01
    assert r.id == "tiny/h100x1/fsdp/c"
    p = r.provenance
    assert p.runtime == "host" and p.argv[1].endswith("fake_verl.py") and p.start_time and p.end_time
    # every listed package installed here, in the list's order, at its installed version; the rest left out
    assert list(p.versions.items()) == list(package_versions(PACKAGES).items())
    assert {"torch", "verl", "pydantic", "numpy"} <= set(p.versions)  # what CI installs
    log = (d / "log.txt").read_text()
    assert "Creating file logger at" in log and "[grpo-suite] exit code 0" in log
    assert json.loads((d / "cell.json").read_text())["id"] == "c"


@pytest.mark.parametrize(
    ("flag", "needle"),
    [
        ("cuda", "CUDA out of memory"),
        ("kv", "No available memory for the cache blocks"),
        ("kv2", "larger than the available KV cache memory"),
        ("ray", "running low on memory"),
    ],
)
def test_oom_classes_from_real_child_output(rt, tmp_path, flag, needle):
    r, _ = run(rt, tmp_path, ["--oom", flag])
    assert r.status == "oom" and needle in r.reason and r.exit_code == 1


def test_crash_and_exit_codes(rt, tmp_path):
    r, _ = run(rt, tmp_path, ["--crash", "KeyError in reward fn"], "a")
    assert r.status == "crash" and r.reason == "RuntimeError: KeyError in reward fn (exit code 1)"
    r, _ = run(rt, tmp_path, ["--exit", "3"], "b")
    assert r.status == "crash" and r.exit_code == 3 and "exit code 3" in r.reason


def test_timeout_stops_the_tree_and_keeps_steps(rt, tmp_path):
    pidfile = tmp_path / "gc.pid"
    t0 = time.monotonic()
    # Generous: the fake's start-up (Python, a double-forked grandchild) must fit before the deadline even on
    # a loaded 2-core CI machine; CI once saw 0 of the 3 steps inside a 1.5 s deadline.
    r, d = run(rt, tmp_path, ["--hang", "--grandchild", str(pidfile)], timeout_s=6)
    assert time.monotonic() - t0 < 20
    assert r.status == "timeout" and "timed out after 6 s (last step: 3)" in r.reason
    assert len(r.steps) == 3
    gc = int(pidfile.read_text())
    assert str(gc) in r.provenance.extra["stopped_pids"].split(",")
    import psutil

    assert not psutil.pid_exists(gc) or psutil.Process(gc).status() == psutil.STATUS_ZOMBIE
    assert "stopped by pid" in (d / "log.txt").read_text()


def test_interrupt_from_another_thread(rt, tmp_path):
    # Interrupt from a timer thread once the third (last) step is seen, not at a fixed time after the start.
    def on_step(step: int) -> None:
        if step == 3:
            threading.Timer(0.3, rt.interrupt).start()

    r, _ = run(rt, tmp_path, ["--hang"], on_step=on_step)
    assert r.status == "interrupted" and "last step: 3" in r.reason
    with pytest.raises(KeyboardInterrupt):  # no new cell starts once interrupted
        rt.run_cell(fake_cell("later", out_dir=tmp_path), tmp_path / "later")


def test_cell_environment_pins_gpus_and_isolates_ray(rt, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    envfile = tmp_path / "env.json"
    r, d = run(rt, tmp_path, ["--record-env", str(envfile)], gpus=[2, 3])
    env = json.loads(envfile.read_text())
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["VERL_FILE_LOGGER_PATH"] == str(d / "metrics.jsonl")
    assert env["RAY_TMPDIR"].startswith("/") and len(env["RAY_TMPDIR"]) < 40
    assert r.provenance.cuda_visible_devices == "2,3"
    # Recorded: the variables that shape the stack (the pinning, the Ray temp dir), never the token.
    assert r.provenance.env["CUDA_VISIBLE_DEVICES"] == "2,3" and r.provenance.env["RAY_TMPDIR"] == env["RAY_TMPDIR"]
    assert "HF_TOKEN" not in r.provenance.env and "hf_secret" not in json.dumps(r.provenance.env)
    assert "HOME" not in r.provenance.env and "PATH" not in r.provenance.env
    assert r.provenance.extra["ray_tmpdir"] == env["RAY_TMPDIR"]


def test_existing_ray_cluster_is_not_isolated(rt, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    envfile = tmp_path / "env.json"
    run(rt, tmp_path, ["--record-env", str(envfile)])
    assert "RAY_TMPDIR" not in json.loads(envfile.read_text())


def test_resumed_cell_starts_from_clean_files(rt, tmp_path):
    r1, d = run(rt, tmp_path, ["--steps", "5"])
    (d / "validation").mkdir()
    (d / "validation" / "9.jsonl").write_text('{"score": 1}\n')
    r2, _ = run(rt, tmp_path, ["--steps", "2"], validation=True)
    assert len(r1.steps) == 5 and len(r2.steps) == 2 and r2.accuracy == {}


def test_invalid_and_predicted_oom_cells_are_recorded_not_run(rt, tmp_path):
    cell = fake_cell("bad", status="invalid", reason="tp 3 does not divide 14 heads", out_dir=tmp_path)
    r = rt.run_cell(cell, tmp_path / cell.full_id)
    assert (r.status, r.reason) == ("invalid", "tp 3 does not divide 14 heads")
    assert not (tmp_path / cell.full_id / "log.txt").exists()
    cell = fake_cell("fat", status="predicted-oom", reason="needs 91 GiB", out_dir=tmp_path)
    assert rt.run_cell(cell, tmp_path / cell.full_id).status == "skipped"


def test_dry_run_prints_and_writes_nothing(tmp_path, capsys):
    cell = fake_cell("c", out_dir=tmp_path)
    r = make_runtime("host", dry_run=True).run_cell(cell, tmp_path / cell.full_id, gpus=[1])
    out = capsys.readouterr().out
    assert "CUDA_VISIBLE_DEVICES=1" in out and "fake_verl.py" in out
    assert r.status == "skipped" and not (tmp_path / cell.full_id).exists()


def test_busy_gpus_are_waited_for_then_recorded(rt, tmp_path, monkeypatch):
    fake = FakeNvml([FakeGpu(), FakeGpu(used=[30 * GIB], processes=1)])
    monkeypatch.setattr(nv, "open_nvml", lambda: fake)
    rt = HostRuntime(gpu_wait_s=0.3, grace_s=1.0)
    r, d = run(rt, tmp_path, [], gpus=[1])
    assert r.status == "skipped" and "GPU 1: 30.0 GiB used, 1 compute process(es)" in r.reason
    assert not (d / "log.txt").exists()


def test_nvml_peak_is_sampled_on_the_cells_gpus(rt, tmp_path, monkeypatch):
    fake = FakeNvml([FakeGpu(used=[79 * GIB]), FakeGpu(used=[GIB // 4, 20 * GIB, 26 * GIB, 3 * GIB])])
    monkeypatch.setattr(nv, "open_nvml", lambda: fake)
    r, _ = run(rt, tmp_path, ["--steps", "5"], gpus=[1])
    assert r.status == "ok"
    assert r.peak_memory_gb == [26.0]
    assert r.nvml_samples >= 2 and r.nvml_sample_hz >= 10
    assert r.provenance.gpu_name == "NVIDIA H100 80GB HBM3" and r.provenance.gpu_count == 1
    assert r.provenance.cuda == "13.0"


def test_unknown_and_bad_options_are_input_errors():
    with pytest.raises(InputError, match="image"):
        make_runtime("host", image="x")
    with pytest.raises(InputError, match="grace_s"):
        make_runtime("host", grace_s="soon")
    with pytest.raises(InputError, match="allowed: host, docker, ray, slurm"):
        make_runtime("kubernetes")
    assert make_runtime("host", isolate_ray="false").isolate_ray is False


def test_sampler_can_be_switched_off_to_measure_its_overhead(tmp_path, monkeypatch):
    fake = FakeNvml([FakeGpu(used=[5 * GIB])])
    monkeypatch.setattr(nv, "open_nvml", lambda: fake)
    on, _ = run(HostRuntime(grace_s=1.0, gpu_free_gib=8), tmp_path, [], "on", gpus=[0])
    off, _ = run(HostRuntime(grace_s=1.0, gpu_free_gib=8, nvml_hz="0"), tmp_path, [], "off", gpus=[0])
    assert on.peak_memory_gb == [5.0] and float(on.provenance.extra["nvml_sampler_cpu_s"]) >= 0
    assert off.peak_memory_gb == [] and off.nvml_samples is None and off.provenance.extra["nvml_sampler"] == "off"
