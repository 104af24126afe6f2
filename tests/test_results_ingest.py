import json
import subprocess
import sys

from fakes.cells import FAKE_VERL

from suite.cli import main


def run_fake(tmp_path, *args):
    """Real fake-verl output: metrics, console log and validation dumps written by a child process."""
    metrics = tmp_path / "metrics.jsonl"
    log = tmp_path / "console.log"
    with log.open("w") as fh:
        rc = subprocess.run([sys.executable, FAKE_VERL, "--step-s", "0", *args,
                             f"trainer.validation_data_dir={tmp_path / 'val'}"],
                            env={"VERL_FILE_LOGGER_PATH": str(metrics), "PATH": "/usr/bin:/bin"},
                            stdout=fh, stderr=subprocess.STDOUT).returncode
    return metrics, log, rc


def test_ingest_prints_a_valid_result(tmp_path, capsys):
    metrics, log, rc = run_fake(tmp_path, "--val", "--steps", "4")
    assert rc == 0
    code = main(["ingest", "--metrics", str(metrics), "--log", str(log), "--validation-dir", str(tmp_path / "val"),
                 "--id", "smollm2/h100x1/fsdp/train", "--gpu", "h100", "--model", "HuggingFaceTB/SmolLM2-135M",
                 "--warmup", "1"])
    assert code == 0
    r = json.loads(capsys.readouterr().out)
    assert r["status"] == "ok" and [s["step"] for s in r["steps"]] == [1, 2, 3, 4]
    # the fake's wrong answers end with the right number: strict 4/8, flexible 8/8
    assert r["accuracy"]["gsm8k"] == {"correct": 4, "total": 8, "flexible_correct": 8,
                                      "source": str(tmp_path / "val" / "4.jsonl")}
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
