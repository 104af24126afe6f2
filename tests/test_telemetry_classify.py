from pathlib import Path

import pytest

from suite.telemetry.classify import (
    Failure,
    classify,
    clean,
    describe_exit,
    find_oom,
    known_crash,
    last_error_line,
    read_log_lines,
)

TRACEBACK = [
    "Error executing job with overrides: ['algorithm.adv_estimator=grpo']",
    "Traceback (most recent call last):",
    '  File "/usr/lib/python3.12/site-packages/verl/trainer/main_ppo.py", line 42, in main',
    "    run_ppo(config)",
    "    ^^^^^^^^^^^^^^^",
]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.", "cuda"),
        ("RuntimeError: CUDA error: out of memory", "cuda"),
        ("(WorkerDict pid=1234) torch.cuda.OutOfMemoryError: CUDA out of memory.", "cuda"),
        ("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`", "kv-cache"),
        (
            "ValueError: To serve at least one request with the models's max seq len (40960), (5.62 GiB KV cache is "
            "needed, which is larger than the available KV cache memory (4.50 GiB).",
            "kv-cache",
        ),
        (
            "ValueError: The model's max seq len (4096) is larger than the maximum number of tokens that can be "
            "stored in KV cache (2048).",
            "kv-cache",
        ),
        ("RuntimeError: not enough KV cache blocks", "kv-cache"),
        ("ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on memory.", "ray"),
        ("(raylet) [2026-11-28 10:00:00] Task was killed due to the node running low on memory.", "ray"),
    ],
)
def test_oom_classes(text, kind):
    f = classify(1, [*TRACEBACK, text, "[repeated 3x across cluster]"])
    assert f.status == "oom" and f.kind == kind
    assert f.reason == clean(text)[:400] or f.reason.endswith("...")


def test_first_oom_line_is_the_reason():
    f = classify(1, ["CUDA out of memory. first", "torch.OutOfMemoryError: echoed later"])
    assert f.reason == "CUDA out of memory. first"


def test_exit_zero_is_ok_even_with_oom_text():
    assert classify(0, ["CUDA out of memory (recovered)"]) is None


def test_crash_reason_is_last_error_line_not_frames_or_noise():
    lines = [
        *TRACEBACK,
        "(TaskRunner pid=5151) ray.exceptions.RayTaskError(ValueError): ray::TaskRunner.run()",
        '  File "verl/workers/rollout/vllm_rollout.py", line 10, in init',
        "(TaskRunner pid=5151) ValueError: tensor_model_parallel_size 3 does not divide 14 heads",
        "",
        "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.",
        "[repeated 2x across cluster]",
        "*** SIGTERM received at time=1700000000 on cpu 3 ***",
    ]
    f = classify(1, lines)
    assert f.status == "crash"
    assert f.reason == "ValueError: tensor_model_parallel_size 3 does not divide 14 heads (exit code 1)"


def test_crash_without_error_line_falls_back_to_last_line():
    assert last_error_line(["starting", "segfault in libfoo", ""]) == "segfault in libfoo"
    assert classify(-9, []).reason == "killed by SIGKILL"


def test_ansi_codes_and_ray_prefixes_are_removed():
    assert clean("\x1b[36m(WorkerDict pid=77, ip=10.0.0.1)\x1b[0m KeyError: 'x'") == "KeyError: 'x'"


def test_describe_exit():
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-15) == "killed by SIGTERM"


def test_read_log_tail_of_large_file(tmp_path):
    p = tmp_path / "log.txt"
    p.write_text("x" * 100 + "\n" + "\n".join(f"line {i}" for i in range(1000)) + "\nValueError: end\n")
    lines = read_log_lines(p, max_bytes=200)
    assert lines[-1] == "ValueError: end"
    assert all(x.startswith(("line", "ValueError")) for x in lines)  # partial first line dropped
    assert read_log_lines(tmp_path / "missing") == []


# Real logs of a packed 4x H100 run (2026-11-28): see tests/fixtures/h100-2026-11-28/README.md.
REAL = Path(__file__).parent / "fixtures" / "h100-2026-11-28"
CRASH_LOG = REAL / "log-crash-rebuild_ipc.txt"
COLLISION = (
    "verl weight-transfer socket collision: another verl job on this host used "
    "/tmp/rl-colocate-zmq-<ray job id>-replica-*-rank-*.sock; run cells with a private /tmp "
    "(grpo-suite run does this by default) — TypeError: 'str' object is not callable in rebuild_ipc"
)


def test_real_socket_collision_crash_is_named_in_plain_words():
    lines = read_log_lines(CRASH_LOG)
    assert any("\x1b[36m" in x for x in lines)  # the real bytes: Ray's colour codes are still there
    assert find_oom(lines) is None  # the cell meant to run out of memory did not: it crashed
    f = classify(1, lines)
    assert f == Failure("crash", COLLISION + " (exit code 1)")
    assert classify(None, lines).reason == COLLISION + " (no exit code)"
    cause, error = known_crash(lines)
    assert cause.name == "verl-zmq-socket-collision" and error == "TypeError: 'str' object is not callable"


def test_str_not_callable_elsewhere_is_a_plain_crash():
    lines = ['  File "app.py", line 3, in main', "TypeError: 'str' object is not callable"]
    assert known_crash(lines) is None
    assert classify(1, lines).reason == "TypeError: 'str' object is not callable (exit code 1)"
    # the traceback that mentions rebuild_ipc must be right before the error, not anywhere in the log
    far = ["    buffer = rebuild_ipc(handle, self.device.index)", *(["x"] * 60), *lines]
    assert known_crash(far) is None


def test_oom_still_wins_over_a_known_crash():
    lines = [*read_log_lines(CRASH_LOG), "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB"]
    assert classify(1, lines).status == "oom"


def test_nested_ray_and_vllm_error_prefixes_are_removed():
    raw = (
        "\x1b[36m(vLLMHttpServer pid=26279)\x1b[0m (EngineCore pid=28220) ERROR 11-28 05:26:51 [core.py:1449] "
        "RuntimeError: Worker failed with error ''str' object is not callable'"
    )
    assert clean(raw) == "RuntimeError: Worker failed with error ''str' object is not callable'"
    # a vLLM WARNING keeps its level, so it stays noise for the reason
    warn = "(vLLMHttpServer pid=1) WARNING 11-28 05:24:10 [vllm.py:1096] Enforce eager set"
    assert clean(warn).startswith("WARNING 11-28")
    assert last_error_line(["ValueError: real", warn]) == "ValueError: real"


def test_real_megatron_crash_without_apex_is_a_crash_with_the_runtime_error():
    # tests/fixtures/h200-2026-11-28-megatron: the tail of the first Megatron cell's log (no apex on the host,
    # Megatron-Bridge's gradient_accumulation_fusion on); the suite's plans now turn the fusion off.
    path = Path(__file__).parent / "fixtures" / "h200-2026-11-28-megatron" / "log-megatron-crash-tail.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    f = classify(1, lines)
    assert f is not None and f.status == "crash"
    assert f.reason.startswith("RuntimeError: ColumnParallelLinear was called with gradient_accumulation_fusion")
    assert f.reason.endswith("(exit code 1)")
    assert find_oom(lines) is None
