import time
from pathlib import Path

from suite.telemetry.startup import LogWatcher, milestones_in

# Lines as verl 0.9.1 / Ray 2.60 / vLLM print them (Ray prefixes worker output with the actor and pid).
LOG = [
    "ray init kwargs: {'num_cpus': None, 'runtime_env': {'env_vars': {...}}}",
    "2026-11-28 10:00:01,000\tINFO worker.py:2038 -- Started a local Ray instance.",
    "(WorkerDict pid=4242) INFO 11-28 10:00:40 [default_loader.py:267] Loading weights took 0.41 seconds",
    "(WorkerDict pid=4242) INFO 11-28 10:00:58 [monitor.py:34] torch.compile took 14.20 s in total",
    "(WorkerDict pid=4242) INFO 11-28 10:01:05 [gpu_model_runner.py:4424] Graph capturing finished in 6 secs, "
    "took 0.42 GiB",
    "(WorkerDict pid=4242) INFO 11-28 10:01:10 [core.py:210] init engine (profile, create kv cache, warmup model) "
    "took 21.77 seconds",
    "test_gen_batch meta info: {'eos_token_id': 151645, 'validate': True}",
]


def test_milestones_in_order():
    assert milestones_in(LOG) == [
        "imports_done",
        "ray_started",
        "vllm_weights_loaded",
        "vllm_compiled",
        "vllm_graphs_captured",
        "vllm_engine_ready",
        "validation_started",
    ]
    assert milestones_in(["nothing here"]) == []


def test_newer_vllm_engine_line_and_older_compile_wording():
    assert milestones_in(["INFO [core.py:250] init engine took 70.62 s (compilation: 42.18 s)"]) == [
        "vllm_engine_ready"
    ]
    assert milestones_in(["INFO [backends.py:1] torch.compile takes 9.87 s in total"]) == ["vllm_compiled"]
    # the lines must name the timing, not merely mention the words
    assert milestones_in(["torch.compile is disabled", "init engine failed"]) == []


def test_log_watcher_times_milestones_as_they_appear(tmp_path):
    log = tmp_path / "log.txt"
    t0 = time.monotonic()
    w = LogWatcher(log, t0, poll_s=0.02).start()
    with log.open("w") as fh:
        fh.write(LOG[0] + "\n")
        fh.flush()
        time.sleep(0.15)
        fh.write("\n".join(LOG[1:]) + "\n")
    seen = w.stop()
    assert list(seen) == [
        "imports_done",
        "ray_started",
        "vllm_weights_loaded",
        "vllm_compiled",
        "vllm_graphs_captured",
        "vllm_engine_ready",
        "validation_started",
    ]
    assert 0 <= seen["imports_done"] < seen["ray_started"]
    assert seen["ray_started"] == seen["validation_started"]  # seen in the same poll


def test_real_verl_0_9_1_log_reaches_the_verl_milestones_not_the_vllm_ones():
    # Verbatim lines of a real H100 cell (tests/fixtures/h100-2026-11-28/README.md). verl starts vLLM with
    # VLLM_LOGGING_LEVEL=WARN, so vLLM's INFO milestones never show up; verl's own INFO lines do.
    path = Path(__file__).parent / "fixtures" / "h100-2026-11-28" / "log-startup-lora8-off_none-tp1-rb16.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert "'VLLM_LOGGING_LEVEL': 'WARN'" in next(x for x in lines if "ray init kwargs" in x)
    assert milestones_in(lines) == ["imports_done", "ray_started", "data_loaded", "actor_initialized", "ready_to_fit"]


def test_log_watcher_on_the_real_lines(tmp_path):
    src = Path(__file__).parent / "fixtures" / "h100-2026-11-28" / "log-startup-lora8-off_none-tp1-rb16.txt"
    log = tmp_path / "log.txt"
    log.write_bytes(src.read_bytes())
    seen = LogWatcher(log, time.monotonic(), poll_s=0.02).start().stop()
    assert list(seen) == ["imports_done", "ray_started", "data_loaded", "actor_initialized", "ready_to_fit"]


def test_phase_durations_between_seen_milestones():
    from suite.telemetry.startup import phase_durations

    b = {
        "imports_done": 27.0,
        "ray_started": 34.0,
        "data_loaded": 97.5,
        "vllm_weights_loaded": 226.0,
        "ready_to_fit": 301.5,
        "first_step": 348.0,
    }
    d = phase_durations(b)
    assert list(d) == [
        "imports_done",
        "ray_started",
        "data_loaded",
        "vllm_weights_loaded",
        "ready_to_fit",
        "first_step",
    ]
    assert d == {
        "imports_done": 27.0,
        "ray_started": 7.0,
        "data_loaded": 63.5,
        "vllm_weights_loaded": 128.5,
        "ready_to_fit": 75.5,
        "first_step": 46.5,
    }
    assert sum(d.values()) == b["first_step"]  # the phases add up to the whole start-up
    assert phase_durations({}) == {}
    # a milestone logged out of order (a later poll) never yields negative time
    assert phase_durations({"imports_done": 10.0, "ray_started": 9.0})["ray_started"] == 0.0


def test_every_milestone_has_a_phase_label():
    from suite.telemetry.startup import MILESTONES, PHASE_LABELS

    assert [n for n, _ in MILESTONES] + ["first_step"] == list(PHASE_LABELS)


H200 = Path(__file__).parent / "fixtures" / "h200-2026-11-28"
# the milestones a real log reaches up to `fit`, in the order they occur
TO_FIT = [
    "imports_done",
    "ray_started",
    "data_loaded",
    "actor_initialized",
    "vllm_weights_loaded",
    "vllm_compiled",
    "vllm_graphs_captured",
    "vllm_engine_ready",
    "ready_to_fit",
]


def test_real_log_with_vllm_at_info_reaches_every_startup_milestone():
    lines = (H200 / "log-startup-lora32-off_none-tp1-rb16.txt").read_text(encoding="utf-8").splitlines()
    kwargs = next(x for x in lines if "ray init kwargs" in x)
    # the shell had the suite's values, so verl 0.9.1 left out its own WARN / cache-off defaults
    assert "'VLLM_LOGGING_LEVEL'" not in kwargs and "'VLLM_DISABLE_COMPILE_CACHE'" not in kwargs
    assert milestones_in(lines) == TO_FIT


def test_log_watcher_times_the_real_vllm_lines_in_order(tmp_path):
    log = tmp_path / "log.txt"
    lines = (H200 / "log-startup-lora32-off_none-tp1-rb16.txt").read_bytes().splitlines(keepends=True)
    w = LogWatcher(log, time.monotonic(), poll_s=0.01).start()
    with log.open("wb") as fh:
        for raw in lines:
            fh.write(raw)
            fh.flush()
            time.sleep(0.02)
    seen = w.stop()
    order = TO_FIT
    assert list(seen) == order
    assert [seen[k] for k in order] == sorted(seen[k] for k in order)


MEG = Path(__file__).parent / "fixtures" / "h200-2026-11-28-megatron"


def test_real_megatron_log_reaches_every_startup_milestone_and_shows_a_compile_cache_hit():
    lines = (MEG / "log-startup-megatron-full-off_none-tp1-rb16.txt").read_text(encoding="utf-8").splitlines()
    assert milestones_in(lines) == TO_FIT
    # the second cell of this vLLM shape on the host loaded its compiled graphs from the suite's cache
    assert any("Directly load the compiled graph(s)" in x for x in lines)
    took = [x for x in lines if "torch.compile took" in x]
    assert len(took) == 1 and "4.04 s" in took[0]
