import time

from suite.telemetry.startup import LogWatcher, milestones_in

# Lines as verl 0.9.1 / Ray 2.60 / vLLM print them (Ray prefixes worker output with the actor and pid).
LOG = [
    "ray init kwargs: {'num_cpus': None, 'runtime_env': {'env_vars': {...}}}",
    "2026-11-28 10:00:01,000\tINFO worker.py:2038 -- Started a local Ray instance.",
    "(WorkerDict pid=4242) INFO 11-28 10:00:40 [default_loader.py:267] Loading weights took 0.41 seconds",
    "(WorkerDict pid=4242) INFO 11-28 10:01:10 [core.py:210] init engine (profile, create kv cache, warmup model) "
    "took 21.77 seconds",
    "test_gen_batch meta info: {'eos_token_id': 151645, 'validate': True}",
]


def test_milestones_in_order():
    assert milestones_in(LOG) == ["imports_done", "ray_started", "vllm_weights_loaded", "vllm_engine_ready",
                                  "validation_started"]
    assert milestones_in(["nothing here"]) == []


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
    assert list(seen) == ["imports_done", "ray_started", "vllm_weights_loaded", "vllm_engine_ready",
                          "validation_started"]
    assert 0 <= seen["imports_done"] < seen["ray_started"]
    assert seen["ray_started"] == seen["validation_started"]  # seen in the same poll
