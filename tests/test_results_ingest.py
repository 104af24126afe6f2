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
