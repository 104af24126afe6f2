import json
from pathlib import Path

import pytest

from suite.telemetry.metrics import data_source_key, parse_metrics, read_metrics, step_from_data

FIXTURES = Path(__file__).parent / "fixtures"


def line(step: int, data: dict) -> str:
    return json.dumps({"step": step, "data": data})


STEP = {
    "perf/throughput": 700.5,
    "perf/time_per_step": 15.2,
    "perf/total_num_tokens": 10650,
    "response_length/mean": 128.0,
    "timing_s/gen": 8.1,
    "timing_s/update_actor": 3.4,
    "actor/perf/max_memory_allocated_gb": 5.5,
    "actor/perf/max_memory_reserved_gb": 7.0,
    "perf/mfu/actor": 0.011,
    "actor/pg_loss": -0.02,
}


def test_step_fields_from_verl_keys():
    s = step_from_data(3, STEP)
    assert s is not None
    assert (s.step, s.throughput, s.time_per_step, s.response_length_mean) == (3, 700.5, 15.2, 128.0)
    assert s.total_num_tokens == 10650
    assert s.timing_s == {"gen": 8.1, "update_actor": 3.4}
    assert (s.torch_max_memory_allocated_gb, s.torch_max_memory_reserved_gb, s.mfu) == (5.5, 7.0, 0.011)
    assert s.extra == {"actor/pg_loss": -0.02}


def test_older_verl_memory_key_is_read():
    data = {k: v for k, v in STEP.items() if not k.startswith("actor/perf")}
    data["perf/max_memory_allocated_gb"] = 9.25
    s = step_from_data(1, data)
    assert s is not None and s.torch_max_memory_allocated_gb == 9.25


def test_validation_line_is_not_a_step_but_its_accuracy_is_kept():
    log = parse_metrics(
        [
            line(0, {"val-core/openai/gsm8k/acc/mean@1": 0.25, "val-aux/openai/gsm8k/reward/mean@1": 0.25}),
            line(1, STEP),
            line(2, {**STEP, "val-core/openai/gsm8k/acc/mean@1": 0.5}),
        ]
    )
    assert [s.step for s in log.steps] == [1, 2]
    assert log.val_accuracy == {0: {"gsm8k": 0.25}, 2: {"gsm8k": 0.5}}
    assert "val-core/openai/gsm8k/acc/mean@1" not in log.steps[1].extra


def test_pre_0_7_accuracy_key():
    log = parse_metrics([line(0, {"val-core/openai/gsm8k/reward/mean@1": 0.125})])
    assert log.val_accuracy == {0: {"gsm8k": 0.125}}


def test_partial_and_garbage_lines_are_counted_not_fatal():
    log = parse_metrics([line(1, STEP), "not json", '{"step": 2, "data": {"perf/thr', "", line(3, STEP)])
    assert [s.step for s in log.steps] == [1, 3]
    assert log.bad_lines == 2


def test_nan_and_missing_perf_values_do_not_make_steps():
    log = parse_metrics([line(1, {**STEP, "perf/throughput": None}), line(2, {"timing_s/gen": 1.0})])
    assert log.steps == []


def test_relogged_step_keeps_the_later_line():
    log = parse_metrics([line(1, STEP), line(1, {**STEP, "perf/throughput": 1.0})])
    assert len(log.steps) == 1 and log.steps[0].throughput == 1.0


def test_read_missing_file_is_empty(tmp_path):
    assert read_metrics(tmp_path / "nope.jsonl").steps == []


def test_data_source_key():
    assert data_source_key("openai/gsm8k") == "gsm8k"
    assert data_source_key("gsm8k") == "gsm8k"


# Real verl file-logger output from GPU runs plugs in here: any tests/fixtures/**/metrics*.jsonl.
REAL = sorted(FIXTURES.glob("**/metrics*.jsonl"))


@pytest.mark.parametrize("path", REAL, ids=[str(p.relative_to(FIXTURES)) for p in REAL])
def test_real_verl_metrics_fixtures_parse(path):
    log = read_metrics(path)
    assert log.steps, f"{path}: no training step parsed"
    assert all(s.throughput > 0 and s.time_per_step > 0 for s in log.steps)
    assert [s.step for s in log.steps] == sorted({s.step for s in log.steps})
    assert log.bad_lines <= 1  # at most a partial last line of a killed run


# Two real LoRA cells of the packed 4x H100 run of 2026-11-28 (cut off at 7 and 5 of 10 steps):
# tests/fixtures/h100-2026-11-28/README.md. Values are checked against the raw JSON, not typed in.
H100 = FIXTURES / "h100-2026-11-28"
PHASES = {"gen", "old_log_prob", "ref", "adv", "update_actor", "update_weights", "step"}


def raw_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.mark.parametrize(
    ("cell", "n_steps", "rollout_batch"), [("lora8-off_none-tp1-rb16", 7, 16), ("lora8-off_none-tp1-rb32", 5, 32)]
)
def test_real_h100_lora_cells(cell, n_steps, rollout_batch):
    path = H100 / f"metrics-{cell}.jsonl"
    raw = raw_lines(path)
    log = read_metrics(path)
    assert log.bad_lines == 0 and log.val_accuracy == {}  # bench profile: no validation
    assert [s.step for s in log.steps] == list(range(1, n_steps + 1)) == [r["step"] for r in raw]
    for s, r in zip(log.steps, raw, strict=True):
        d = r["data"]
        assert s.throughput == d["perf/throughput"] and s.time_per_step == d["perf/time_per_step"]
        assert s.time_per_step == s.timing_s["step"]
        assert s.total_num_tokens == d["perf/total_num_tokens"]
        # verl's throughput: all tokens of the step / (step time x 1 GPU)
        assert s.throughput == pytest.approx(s.total_num_tokens / s.time_per_step)
        # bench profile: ignore_eos, max_response_length 256 -> every response is exactly 256 tokens
        assert s.response_length_mean == 256.0 == d["response_length/max"] == d["response_length/min"]
        # rollout.n = 4 responses per prompt
        assert s.total_num_tokens == pytest.approx(4 * rollout_batch * (256 + d["prompt_length/mean"]))
        assert set(s.timing_s) == PHASES
        assert s.torch_max_memory_allocated_gb == d["actor/perf/max_memory_allocated_gb"]
        assert s.torch_max_memory_reserved_gb == d["actor/perf/max_memory_reserved_gb"] < 20
        assert s.mfu == d["perf/mfu/actor"]
        assert "timing_per_token_ms/gen" in s.extra and "actor/pg_loss" in s.extra
        # verl 0.9.1's v1 trainer times `gen` around ReplayBuffer.sample, which polls every 2.0 s
        assert s.timing_s["gen"] % 2.0 < 0.25
    # step 1 is the slow one (lazy start of the agent-loop workers): ~30 s more than its timed phases
    first = log.steps[0]
    untimed = first.time_per_step - sum(v for k, v in first.timing_s.items() if k != "step")
    assert 25 < untimed < 35
    assert all(s.time_per_step - sum(v for k, v in s.timing_s.items() if k != "step") < 0.2 for s in log.steps[1:])
    assert first.throughput < 0.6 * min(s.throughput for s in log.steps[1:])


def test_real_h100_warmup_is_excluded_from_statistics():
    from suite.results.schema import Result

    log = read_metrics(H100 / "metrics-lora8-off_none-tp1-rb16.jsonl")
    r = Result(
        id="x",
        matrix="h100-1gpu",
        profile="bench",
        gpu="h100",
        n_gpus=1,
        model="m",
        backend="fsdp",
        axes={},
        status="interrupted",
        steps=log.steps,
        warmup_steps=2,
    )
    measured = r.measured_steps()
    assert [s.step for s in measured] == [3, 4, 5, 6, 7]
    assert min(s.throughput for s in measured) > max(s.throughput for s in log.steps[:2])


def test_real_smollm2_train_run_cut_off_after_step_8():
    # tests/fixtures/h200-2026-11-28/README.md: validation before training (step 0), then 8 of 20 steps.
    path = FIXTURES / "h200-2026-11-28" / "metrics-smollm2-train-cut-off.jsonl"
    raw = raw_lines(path)
    log = read_metrics(path)
    assert [s.step for s in log.steps] == list(range(1, 9))
    assert log.val_accuracy == {0: {"gsm8k": raw[0]["data"]["val-core/openai/gsm8k/acc/mean@1"]}}
    assert log.val_accuracy[0]["gsm8k"] == 0.0
    for s, r in zip(log.steps, raw[1:], strict=True):
        assert s.throughput == r["data"]["perf/throughput"]
        assert s.response_length_mean == r["data"]["response_length/mean"]
        assert s.response_length_mean < 256  # a train run stops at EOS; bench runs are fixed at 256
        assert r["data"]["critic/score/mean"] == 0.0  # no rollout earned a reward: GRPO had nothing to learn


# The 2x H200 run of 2026-11-28 with the first Megatron cell: tests/fixtures/h200-2026-11-28-megatron/README.md.
MEG = FIXTURES / "h200-2026-11-28-megatron"


def test_real_smollm2_train_run_with_accuracy_before_and_after():
    path = MEG / "metrics-smollm2-train-16-steps.jsonl"
    raw = raw_lines(path)
    log = read_metrics(path)
    assert [s.step for s in log.steps] == list(range(1, 17)) and log.bad_lines == 0
    acc = "val-core/openai/gsm8k/acc/mean@1"
    assert log.val_accuracy == {0: {"gsm8k": raw[0]["data"][acc]}, 16: {"gsm8k": raw[-1]["data"][acc]}}
    assert log.val_accuracy[0]["gsm8k"] == 0.0 and log.val_accuracy[16]["gsm8k"] == pytest.approx(1 / 256)
    # the format-credit reward (suite/data/rewards.py) gives GRPO a signal: the mean training score rises from
    # ~0 to ~0.035 (0.1 per well-formed answer) and the validation score from 0.008 to 0.084
    scores = [r["data"]["critic/score/mean"] for r in raw[1:]]
    assert scores[0] < 0.005 and scores[-1] > 0.03 and max(scores[-4:]) > 5 * max(scores[:4])
    score = "val-aux/openai/gsm8k/score/mean@1"
    assert raw[0]["data"][score] < 0.01 < 0.08 < raw[-1]["data"][score]
    assert all(s.response_length_mean < 256 for s in log.steps)


def test_real_megatron_cell_steps_and_phases():
    path = MEG / "metrics-megatron-full-off_none-tp1-rb16.jsonl"
    raw = raw_lines(path)
    log = read_metrics(path)
    assert [s.step for s in log.steps] == list(range(1, 11)) and log.val_accuracy == {}
    for s, r in zip(log.steps, raw, strict=True):
        assert s.throughput == r["data"]["perf/throughput"] == pytest.approx(s.total_num_tokens / s.time_per_step)
        assert s.response_length_mean == 256.0 and set(s.timing_s) == PHASES
    measured = log.steps[2:]
    import statistics

    assert statistics.median(s.throughput for s in measured) == pytest.approx(4139.2, abs=0.1)
    # Megatron's actor update is ~4x faster than the FSDP twin's 5.2 s (packed sequences, fused attention)
    assert statistics.median(s.timing_s["update_actor"] for s in measured) < 1.5
