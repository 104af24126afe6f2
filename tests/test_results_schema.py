import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from suite.errors import InputError
from suite.results import io as rio
from suite.results.build import CellInfo, Observation, build_result
from suite.results.provenance import REDACTED, redact_argv, redact_env, seed_from_argv
from suite.results.schema import FINAL_STATUSES, Provenance, Result, json_schema

SCHEMA_FILE = Path(__file__).parents[1] / "suite" / "results" / "result.schema.json"
INFO = CellInfo(
    id="tiny/h100x1/fsdp/lora8",
    matrix="m",
    profile="bench",
    gpu="h100",
    n_gpus=1,
    model="fake/tiny",
    backend="fsdp",
    axes={"lora_rank": 8},
    warmup_steps=1,
)


def metrics_file(tmp_path, steps=3):
    p = tmp_path / "metrics.jsonl"
    p.write_text(
        "".join(
            json.dumps(
                {
                    "step": i,
                    "data": {
                        "perf/throughput": 100.0 * i,
                        "perf/time_per_step": 2.0,
                        "response_length/mean": 64.0,
                        "timing_s/gen": 1.0,
                        "actor/perf/max_memory_allocated_gb": float(i),
                    },
                }
            )
            + "\n"
            for i in range(1, steps + 1)
        )
    )
    return p


def test_shipped_schema_is_in_sync_with_the_model():
    assert json.loads(SCHEMA_FILE.read_text()) == json.loads(json.dumps(json_schema(), sort_keys=True))


def test_built_result_validates_against_the_json_schema(tmp_path):
    r = build_result(
        INFO, Observation(metrics_path=metrics_file(tmp_path), exit_code=0, wall_s=12.5), Provenance(runtime="host")
    )
    data = json.loads(r.to_json())
    jsonschema.validate(data, json.loads(SCHEMA_FILE.read_text()))
    assert data["schema"] == 1 and data["status"] == "ok"
    assert [s["step"] for s in data["steps"]] == [1, 2, 3]
    assert [s.step for s in r.measured_steps()] == [2, 3]
    assert data["torch_memory"]["max_memory_allocated_gb"] == 3.0


def test_required_core_fields_are_present(tmp_path):
    r = build_result(INFO, Observation(status="timeout", reason="timed out"), Provenance())
    data = json.loads(r.to_json())
    for key in (
        "schema",
        "id",
        "matrix",
        "profile",
        "axes",
        "status",
        "reason",
        "steps",
        "warmup_steps",
        "peak_memory_gb",
        "torch_memory",
        "accuracy",
        "provenance",
    ):
        assert key in data
    assert data["status"] == "timeout"


def test_bad_results_are_rejected_with_field_names(tmp_path):
    p = tmp_path / "r.json"
    good = json.loads(build_result(INFO, Observation(exit_code=0), Provenance()).to_json())
    p.write_text(json.dumps({**good, "status": "exploded"}))
    with pytest.raises(InputError, match="status"):
        rio.read_result(p)
    p.write_text(json.dumps({**good, "schema": 99}))
    with pytest.raises(InputError, match="schema version 99"):
        rio.read_result(p)
    p.write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        rio.read_result(p)
    assert rio.try_read_result(tmp_path / "missing.json") is None


def test_atomic_write_leaves_old_file_when_replace_fails(tmp_path, monkeypatch):
    p = tmp_path / "result.json"
    old = build_result(INFO, Observation(exit_code=0), Provenance())
    rio.write_result(p, old)
    before = p.read_text()

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        rio.write_result(p, build_result(INFO, Observation(exit_code=1), Provenance()))
    assert p.read_text() == before
    assert [x.name for x in tmp_path.iterdir()] == ["result.json"]  # no temp file left behind


def test_atomic_write_survives_a_killed_writer(tmp_path):
    # A writer killed mid-way never leaves a truncated result.json: readers see the old or the new file.
    p = tmp_path / "result.json"
    rio.write_text_atomic(p, '{"old": true}\n')
    root = str(Path(__file__).parents[1])
    code = (
        f"import os,sys; sys.path.insert(0, {root!r})\n"
        "import suite.results.io as rio\n"
        "os.replace = lambda a, b: os._exit(9)\n"
        f"rio.write_text_atomic({str(p)!r}, 'x' * 1000000)\n"
    )
    rc = subprocess.run([sys.executable, "-c", code]).returncode
    assert rc == 9
    assert p.read_text() == '{"old": true}\n'


def test_interrupted_and_skipped_are_not_final():
    assert "interrupted" not in FINAL_STATUSES and "skipped" not in FINAL_STATUSES
    assert {"ok", "oom", "crash", "timeout", "invalid"} <= set(FINAL_STATUSES)


def test_redaction():
    env = redact_env(
        {
            "HF_TOKEN": "hf_abc",
            "WANDB_API_KEY": "k",
            "AWS_SECRET_ACCESS_KEY": "s",
            "DB_PASSWORD": "p",
            "PATH": "/usr/bin",
            "PROXY": "http://user:pw@proxy:3128",
            "CUDA_VISIBLE_DEVICES": "0",
        }
    )
    assert env["HF_TOKEN"] == env["WANDB_API_KEY"] == env["AWS_SECRET_ACCESS_KEY"] == env["DB_PASSWORD"] == REDACTED
    assert env["PATH"] == "/usr/bin" and env["CUDA_VISIBLE_DEVICES"] == "0"
    assert "pw" not in env["PROXY"]
    assert redact_argv(["python3", "trainer.wandb_api_key=abc", "data.seed=1"]) == [
        "python3",
        f"trainer.wandb_api_key={REDACTED}",
        "data.seed=1",
    ]


def test_seed_from_argv():
    assert seed_from_argv(["actor_rollout_ref.rollout.seed=3", "data.seed=7"]) == 7
    assert seed_from_argv(["+foo.seed=5"]) == 5
    assert seed_from_argv(["x=1"]) is None


def test_result_model_rejects_unknown_fields():
    with pytest.raises(ValueError):
        Result.model_validate(
            {**json.loads(build_result(INFO, Observation(exit_code=0), Provenance()).to_json()), "bogus": 1}
        )
