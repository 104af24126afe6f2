import json

import pytest

from suite.results.build import CellInfo, Observation, Outcome, build_result, outcome
from suite.results.schema import Provenance, Result
from suite.telemetry.nvml import MemorySamples


def info(model="fake/tiny"):
    return CellInfo(
        id="x/h100x1/fsdp/a",
        matrix="m",
        profile="train",
        gpu="h100",
        n_gpus=1,
        model=model,
        backend="fsdp",
        warmup_steps=0,
    )


def write_run(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        "\n".join(
            json.dumps(x)
            for x in [
                {"step": 0, "data": {"val-core/openai/gsm8k/acc/mean@1": 0.25}},
                {"step": 1, "data": {"perf/throughput": 10.0, "perf/time_per_step": 1.0, "response_length/mean": 5}},
                {
                    "step": 2,
                    "data": {
                        "perf/throughput": 12.0,
                        "perf/time_per_step": 1.0,
                        "response_length/mean": 5,
                        "val-core/openai/gsm8k/acc/mean@1": 0.5,
                    },
                },
            ]
        )
        + "\n"
    )
    val = tmp_path / "validation"
    val.mkdir()
    for step, correct in ((0, 1), (2, 2)):
        (val / f"{step}.jsonl").write_text(
            "".join(
                json.dumps(
                    {
                        "input": "q",
                        "output": "#### 1" if i < correct else "no",
                        "gts": "1",
                        "score": 1.0 if i < correct else 0.0,
                        "step": step,
                    }
                )
                + "\n"
                for i in range(4)
            )
        )
    return tmp_path / "metrics.jsonl", val


def test_accuracy_before_and_after_training_with_exact_counts(tmp_path):
    metrics, val = write_run(tmp_path)
    r = build_result(info(), Observation(metrics_path=metrics, validation_dir=val, exit_code=0), Provenance())
    assert r.accuracy["gsm8k"].correct == 2 and r.accuracy["gsm8k"].total == 4
    assert r.accuracy_initial["gsm8k"].correct == 1
    assert r.accuracy["gsm8k"].source.endswith("2.jsonl")


def test_run_cut_off_before_its_final_validation_has_only_the_accuracy_before(tmp_path):
    metrics, val = write_run(tmp_path)
    (val / "2.jsonl").unlink()  # the host went away after step 2, before validating again
    r = build_result(
        info(),
        Observation(metrics_path=metrics, validation_dir=val, status="interrupted", reason="host stopped"),
        Provenance(),
    )
    assert r.accuracy == {}
    assert r.accuracy_initial["gsm8k"].correct == 1 and r.accuracy_initial["gsm8k"].total == 4
    assert r.accuracy_initial["gsm8k"].source.endswith("0.jsonl")


def test_validation_only_run_reports_its_one_accuracy_as_the_result(tmp_path):
    metrics, val = write_run(tmp_path)
    metrics.write_text(json.dumps({"step": 0, "data": {"val-core/openai/gsm8k/acc/mean@1": 0.25}}) + "\n")
    (val / "2.jsonl").unlink()
    r = build_result(info(), Observation(metrics_path=metrics, validation_dir=val, exit_code=0), Provenance())
    assert r.accuracy["gsm8k"].correct == 1 and r.accuracy_initial == {}


def test_synthetic_weights_carry_no_accuracy(tmp_path):
    metrics, val = write_run(tmp_path)
    r = build_result(
        info("synthetic:qwen2.5-0.5b"), Observation(metrics_path=metrics, validation_dir=val, exit_code=0), Provenance()
    )
    assert r.accuracy == {} and r.accuracy_initial == {}
    assert "synthetic" in r.provenance.extra["accuracy"]


def test_nvml_samples_are_recorded(tmp_path):
    mem = MemorySamples(indices=[0, 1], peak_gib=[26.1, 28.6], samples=200, duration_s=10.0)
    r = build_result(info(), Observation(exit_code=0, memory=mem), Provenance())
    assert r.peak_memory_gb == [26.1, 28.6] and r.peak_memory_worst_gb == 28.6
    assert r.nvml_samples == 200 and r.nvml_sample_hz == 20.0


def test_forced_status_wins_and_exit_zero_without_steps_is_noted(tmp_path):
    r = build_result(info(), Observation(exit_code=-2, status="interrupted", reason="Ctrl-C"), Provenance())
    assert (r.status, r.reason, r.exit_code) == ("interrupted", "Ctrl-C", -2)
    r = build_result(info(), Observation(exit_code=0), Provenance())
    assert r.status == "ok" and "no training step" in r.reason


def test_unknown_exit_code_is_inferred_from_the_log():
    assert outcome(Observation(), ["step 1", "done"]) == Outcome("ok")
    assert outcome(Observation(), ["CUDA out of memory. Tried"]) == Outcome("oom", "CUDA out of memory. Tried", "cuda")
    out = outcome(Observation(), ["Traceback (most recent call last):", '  File "x", line 1', "KeyError: 'actor'"])
    assert out == Outcome("crash", "KeyError: 'actor'")


RAY_OOM = (
    "ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on memory. "
    "Memory on the node (IP: 10.0.0.2) was 118.2GB / 125.0GB (0.9456), which exceeds the memory usage threshold 0.95"
)


@pytest.mark.parametrize(
    ("lines", "kind"),
    [
        (["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 78.82 GiB"], "cuda"),
        (["ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`"], "kv-cache"),
        ([RAY_OOM], "ray"),
    ],
)
def test_an_oom_result_says_which_memory_ran_out(tmp_path, lines, kind):
    log = tmp_path / "log.txt"
    log.write_text("\n".join(["step 1", *lines]) + "\n")
    for obs in (Observation(log_path=log, exit_code=1), Observation(log_path=log)):  # run, and ingest
        r = build_result(info(), obs, Provenance())
        assert (r.status, r.oom_kind) == ("oom", kind)
        assert Result.model_validate_json(r.to_json()).oom_kind == kind
    crash = build_result(info(), Observation(exit_code=1, status="timeout", reason="900 s"), Provenance())
    assert crash.oom_kind is None


@pytest.mark.parametrize(
    ("planned", "gpu_name", "gpu", "extra"),
    [
        ("h100", "NVIDIA H200", "h200", {"planned_gpu": "h100"}),  # an h100 matrix on an H200 host
        ("h100", "NVIDIA H100 80GB HBM3", "h100", {}),
        ("h20", "NVIDIA H20", "h20", {}),
        ("h100", None, "h100", {}),  # no NVML: the plan's generation
        ("h100", "Some Future GPU", "h100", {}),  # unknown device name: the plan's generation
    ],
)
def test_result_generation_is_the_hardware_it_ran_on(planned, gpu_name, gpu, extra):
    cell = CellInfo(
        id="c",
        matrix="m",
        profile="bench",
        gpu=planned,
        n_gpus=1,
        nnodes=1,
        model="synthetic:qwen2.5-0.5b",
        backend="fsdp",
        axes={},
        warmup_steps=0,
    )
    r = build_result(cell, Observation(exit_code=0), Provenance(gpu_name=gpu_name))
    assert r.gpu == gpu
    assert {k: v for k, v in r.provenance.extra.items() if k == "planned_gpu"} == extra


def test_nvml_timeline_and_step_sightings_are_recorded(tmp_path):
    metrics, _ = write_run(tmp_path)
    mem = MemorySamples(
        indices=[0],
        peak_gib=[30.0],
        samples=60,
        duration_s=3.0,
        timeline_gib=[[10.0], [None], [30.0]],
        timeline_interval_s=1.0,
        started_at=500.0,
    )
    obs = Observation(
        metrics_path=metrics, exit_code=0, memory=mem, step_seen_s={1: 12.345, 2: 20.0}, memory_start_s=0.2
    )
    r = build_result(info(), obs, Provenance())
    assert r.nvml_timeline is not None
    assert (r.nvml_timeline.interval_s, r.nvml_timeline.start_s) == (1.0, 0.2)
    assert r.nvml_timeline.used_gb == [[10.0], [None], [30.0]]
    assert [(s.step, s.seen_s) for s in r.steps] == [(1, 12.35), (2, 20.0)]
    back = type(r).model_validate_json(r.to_json())
    assert back.nvml_timeline == r.nvml_timeline and back.steps[0].seen_s == 12.35
    # an ingested run (no sightings, no sampler start) records neither
    r = build_result(info(), Observation(metrics_path=metrics, exit_code=0, memory=mem), Provenance())
    assert r.nvml_timeline is None and all(s.seen_s is None for s in r.steps)


def test_a_sighting_at_the_process_end_stays_within_the_rounded_wall_clock(tmp_path):
    # seen at 3.1352 s of a 3.1352 s process: rounded alone it would read 3.14 against wall_s 3.135
    metrics, _ = write_run(tmp_path)
    obs = Observation(metrics_path=metrics, exit_code=0, wall_s=3.1352, step_seen_s={1: 2.504, 2: 3.1352})
    r = build_result(info(), obs, Provenance())
    assert r.wall_s == 3.135
    assert [s.seen_s for s in r.steps] == [2.5, 3.135]
    assert all(s.seen_s is not None and s.seen_s <= r.wall_s for s in r.steps)
