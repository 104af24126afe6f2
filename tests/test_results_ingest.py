import json
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.cells import FAKE_VERL

from suite.cli import main


def run_fake(tmp_path, *args):
    """Real fake-verl output: metrics, console log and validation dumps written by a child process."""
    metrics = tmp_path / "metrics.jsonl"
    log = tmp_path / "console.log"
    with log.open("w") as fh:
        rc = subprocess.run(
            [sys.executable, FAKE_VERL, "--step-s", "0", *args, f"trainer.validation_data_dir={tmp_path / 'val'}"],
            env={"VERL_FILE_LOGGER_PATH": str(metrics), "PATH": "/usr/bin:/bin"},
            stdout=fh,
            stderr=subprocess.STDOUT,
        ).returncode
    return metrics, log, rc


def test_ingest_prints_a_valid_result(tmp_path, capsys):
    metrics, log, rc = run_fake(tmp_path, "--val", "--steps", "4")
    assert rc == 0
    code = main(
        [
            "ingest",
            "--metrics",
            str(metrics),
            "--log",
            str(log),
            "--validation-dir",
            str(tmp_path / "val"),
            "--id",
            "smollm2/h100x1/fsdp/train",
            "--gpu",
            "h100",
            "--model",
            "HuggingFaceTB/SmolLM2-135M",
            "--warmup",
            "1",
        ]
    )
    assert code == 0
    r = json.loads(capsys.readouterr().out)
    assert r["status"] == "ok" and [s["step"] for s in r["steps"]] == [1, 2, 3, 4]
    # the fake's wrong answers end with the right number: strict 4/8, flexible 8/8
    assert r["accuracy"]["gsm8k"] == {
        "correct": 4,
        "total": 8,
        "flexible_correct": 8,
        "source": str(tmp_path / "val" / "4.jsonl"),
    }
    assert r["accuracy_initial"]["gsm8k"]["correct"] == 2
    assert r["provenance"]["runtime"] == "ingest"


def test_ingest_classifies_a_failed_run_from_its_log(tmp_path, capsys):
    metrics, log, rc = run_fake(tmp_path, "--oom", "kv")
    assert rc == 1
    out = tmp_path / "result.json"
    assert main(["ingest", "--metrics", str(metrics), "--log", str(log), "--id", "a/b", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["status"] == "oom" and "No available memory for the cache blocks" in r["reason"]
    assert main(["ingest", "--metrics", str(metrics), "--log", str(log), "--id", "a/b", "--exit-code", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"


def test_ingest_bad_input_exits_2(tmp_path, capsys):
    assert main(["ingest", "--metrics", str(tmp_path / "none.jsonl"), "--id", "x"]) == 2
    assert "none.jsonl" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["ingest", "--metrics", str(empty), "--id", "x"]) == 2


def test_results_validate(tmp_path, capsys):
    metrics, _, _ = run_fake(tmp_path)
    out = tmp_path / "r.json"
    assert main(["ingest", "--metrics", str(metrics), "--id", "a/b", "--out", str(out)]) == 0
    assert main(["results", "validate", str(out)]) == 0
    out.write_text(out.read_text().replace('"status": "ok"', '"status": "fine"'))
    assert main(["results", "validate", str(out)]) == 2


# Real files of the packed 4x H100 run of 2026-11-28 (tests/fixtures/h100-2026-11-28/README.md).
H100 = Path(__file__).parent / "fixtures" / "h100-2026-11-28"
CUT_OFF = "cut off: the host was stopped while the cell ran (last step 7 of 10)"


def ingest_json(capsys, *args):
    assert main(["ingest", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_ingest_a_run_cut_off_by_its_machine(capsys):
    metrics = str(H100 / "metrics-lora8-off_none-tp1-rb16.jsonl")
    log = str(H100 / "log-startup-lora8-off_none-tp1-rb16.txt")
    common = [
        "--metrics",
        metrics,
        "--log",
        log,
        "--id",
        "qwen2.5-0.5b/h100x1/fsdp/lora8-off_none-tp1-rb16",
        "--profile",
        "bench",
        "--gpu",
        "h100",
        "--warmup",
        "2",
        "--model",
        "synthetic:qwen2.5-0.5b",
    ]
    # the log just stops: nothing in it says the run failed, so on its own it reads as ok
    assert ingest_json(capsys, *common)["status"] == "ok"
    r = ingest_json(capsys, *common, "--status", "interrupted", "--reason", CUT_OFF)
    assert (r["status"], r["reason"], r["exit_code"]) == ("interrupted", CUT_OFF, None)
    assert [s["step"] for s in r["steps"]] == [1, 2, 3, 4, 5, 6, 7] and r["warmup_steps"] == 2
    raw = [json.loads(x)["data"]["perf/throughput"] for x in Path(metrics).read_text().splitlines()]
    assert [s["throughput"] for s in r["steps"]] == raw


def test_ingest_the_real_socket_collision_crash_without_metrics(tmp_path, capsys):
    out = tmp_path / "result.json"
    assert main(["ingest", "--log", str(H100 / "log-crash-rebuild_ipc.txt"), "--id", "a/b", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["status"] == "crash" and r["steps"] == []
    assert r["reason"].startswith(
        "verl weight-transfer socket collision: another verl job on this host used /tmp/rl-colocate-zmq-"
    )
    assert r["reason"].endswith("— TypeError: 'str' object is not callable in rebuild_ipc")
    assert r["provenance"]["extra"]["metrics"] == "none"
    assert r["provenance"]["host"] is None and r["provenance"]["versions"] == {}  # the run's, unknown
    assert r["provenance"]["packages_checked"] is None  # so no package reads as not installed
    assert main(["results", "validate", str(out)]) == 0


def test_ingest_status_options_are_checked(tmp_path, capsys):
    metrics = str(H100 / "metrics-lora8-off_none-tp1-rb32.jsonl")
    for args in (
        ["--reason", "why"],  # reason without status
        ["--status", "interrupted"],  # status without reason
        ["--status", "crash", "--reason", "x", "--exit-code", "1"],
    ):  # both ways at once
        assert main(["ingest", "--metrics", metrics, "--id", "x", *args]) == 2
        assert "--" in capsys.readouterr().err
    assert main(["ingest", "--id", "x"]) == 2  # neither metrics nor log
    assert "--metrics" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: not a status a started run can end with
        main(["ingest", "--metrics", metrics, "--id", "x", "--status", "skipped", "--reason", "y"])
    # --status ok with no step is still refused
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["ingest", "--metrics", str(empty), "--id", "x", "--status", "ok"]) == 2
    # interrupted before the first step: a result with no step
    r = ingest_json(capsys, "--metrics", str(empty), "--id", "x", "--status", "interrupted", "--reason", "gone")
    assert (r["status"], r["steps"]) == ("interrupted", [])


HEAVY6 = (
    Path(__file__).resolve().parents[1]
    / "baselines/evidence/2026-12-04-h200-heavy/h200-1gpu-7b-nokl/lora32-off_param+optimizer-tp1-rb45-mnbt1536-mb15-gc-nobm-klloss"
)


def test_ingest_recovers_start_up_milestones_from_the_log_times(tmp_path, capsys):
    import lzma

    log = tmp_path / "log.txt"
    log.write_bytes(lzma.decompress((HEAVY6 / "log.txt.xz").read_bytes()))
    args = ["--metrics", str(HEAVY6 / "metrics.jsonl"), "--log", str(log), "--id", "a/b", "--warmup", "1"]
    args += ["--status", "interrupted", "--reason", "gone"]
    r = ingest_json(capsys, *args, "--started-at", "2026-12-04T04:00:13Z")
    # Ray's and verl's stamps have milliseconds, vLLM's whole seconds and no year; verl's `ray init kwargs` line
    # and its step line carry no time, so imports_done and first_step stay unknown
    assert r["startup_breakdown_s"] == {
        "ray_started": 25.32,
        "data_loaded": 86.31,
        "actor_initialized": 159.07,
        "vllm_weights_loaded": 256.0,
        "vllm_compiled": 289.0,
        "vllm_graphs_captured": 316.0,
        "vllm_engine_ready": 331.0,
        "ready_to_fit": 352.61,
    }
    assert r["startup_s"] is None and r["provenance"]["start_time"] == "2026-12-04T04:00:13+00:00"
    # another zone is the same instant; a naive time is taken as the log's clock
    same = ingest_json(capsys, *args, "--started-at", "2026-12-04T05:00:13+01:00")
    assert same["startup_breakdown_s"] == r["startup_breakdown_s"]
    later = ingest_json(capsys, *args, "--started-at", "2026-12-04T04:00:23")
    assert later["startup_breakdown_s"]["ready_to_fit"] == pytest.approx(342.61)
    # without --started-at nothing is guessed
    assert ingest_json(capsys, *args)["startup_breakdown_s"] == {}
    assert main(["ingest", *args, "--started-at", "yesterday"]) == 2
    err = capsys.readouterr().err
    assert "--started-at" in err and "ISO 8601" in err


def test_line_times_and_the_new_year() -> None:
    from datetime import datetime

    from suite.telemetry.startup import line_time, milestones_from_timestamps

    assert line_time("2026-12-04 04:00:38,324\tINFO worker.py:2033 -- Started", 2026) == datetime(
        2026, 12, 4, 4, 0, 38, 324000
    )
    assert line_time("(pid=1) INFO:2026-12-04 04:01:39,305:train and validate", 1999) == datetime(
        2026, 12, 4, 4, 1, 39, 305000
    )
    assert line_time("(Worker pid=3) INFO 12-04 04:04:29 [default_loader.py:430] Loading", 2026) == datetime(
        2026, 12, 4, 4, 4, 29
    )
    assert line_time("ray init kwargs: {'num_cpus': None}", 2026) is None
    lines = [
        "INFO 01-01 00:00:05 [core.py:1] init engine (profile, create kv cache, warmup model) took 9 s",
        "2026-12-31 23:59:59,000 INFO worker.py:1 -- Started a local Ray instance.",
    ]
    # vLLM's year-less stamp just after midnight belongs to the next year
    assert milestones_from_timestamps(lines, datetime(2026, 12, 31, 23, 59, 50)) == {
        "ray_started": 9.0,
        "vllm_engine_ready": 15.0,
    }
