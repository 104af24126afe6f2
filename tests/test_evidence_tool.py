"""tools/evidence.py and the evidence folder it made: trimming keeps what a reader needs, the README's tables are
what the committed files give, and each result is what ingest makes of them."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from suite.results.io import read_result
from suite.telemetry.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]
EVIDENCE = REPO / "baselines" / "evidence" / "2026-11-28-h100x4-packed"
_spec = importlib.util.spec_from_file_location("evidence_tool", REPO / "tools" / "evidence.py")
evidence = importlib.util.module_from_spec(_spec)
sys.modules["evidence_tool"] = evidence  # dataclasses look their module up there
_spec.loader.exec_module(evidence)


def test_trim_drops_engine_warnings_and_unfinished_bars_only():
    lines = [
        "[grpo-suite] argv: python3 -m verl.trainer.main_ppo x=1",
        "\x1b[36m(TaskRunnerV1 pid=1)\x1b[0m /v/engine/__init__.py:32: UserWarning: torchtitan engine is not available: X",
        '\x1b[36m(TaskRunnerV1 pid=1)\x1b[0m   warnings.warn(f"torchtitan engine is not available: {e!r}", stacklevel=1)',
        "(TaskRunnerV1 pid=1) Filtering prompts (num_proc=1):   0%|          | 0/2000 [00:00<?, ? examples/s]",
        "(TaskRunnerV1 pid=1) Filtering prompts (num_proc=1): 100%|██████████| 2000/2000 [00:08<00:00, 247.78 examples/s]",
        "(TaskRunnerV1 pid=1) Training Progress:   0%|          | 0/10 [00:00<?, ?it/s]",
        "(Worker pid=2) ERROR 11-28 05:26:51 [multiproc_executor.py:1004] Traceback (most recent call last):",
        "(Worker pid=2) ERROR 11-28 05:26:51 [multiproc_executor.py:1004] TypeError: 'str' object is not callable",
    ]
    out = evidence.trim(lines)
    assert out[:-1] == [lines[0], lines[4], lines[5], lines[6], lines[7]]
    assert out[-1].startswith("[tools/evidence.py trim] removed 3 of 8 lines: 2 lines")


def test_timestamps_of_each_log_format():
    assert evidence.timestamp("2026-11-28 05:21:07,646\tWARNING x").strftime("%H:%M:%S") == "05:21:07"
    assert evidence.timestamp("(T pid=1) INFO:2026-11-28 05:22:36,076:train").strftime("%H:%M:%S") == "05:22:36"
    assert evidence.timestamp("(v pid=1) WARNING 11-28 05:24:10 [vllm.py:1096] x").strftime("%H:%M:%S") == "05:24:10"
    assert evidence.timestamp("no time here") is None


def test_readme_tables_are_generated_from_the_committed_files():
    readme = (EVIDENCE / "README.md").read_text()
    assert evidence.readme_block(readme) == evidence.tables(EVIDENCE)
    assert "not gate baselines" in readme


@pytest.mark.parametrize("cell", evidence.CELLS, ids=lambda c: c.path)
def test_each_cell_result_matches_its_files(cell):
    d = EVIDENCE / cell.path
    spec = json.loads((d / "cell.json").read_text())
    r = read_result(d / "result.json")
    assert r.id == spec["full_id"] and r.matrix == spec["matrix"] and r.warmup_steps == spec["warmup_steps"] == 2
    assert r.provenance.argv == spec["argv"] and r.provenance.runtime == "ingest" and r.exit_code is None
    metrics = read_metrics(d / "metrics.jsonl") if (d / "metrics.jsonl").exists() else None
    assert [s.model_dump() for s in r.steps] == ([s.model_dump() for s in metrics.steps] if metrics else [])
    assert len(r.measured_steps()) < 8  # partial: not enough for a gate baseline
    log = evidence.read_lines(d / "log.txt.xz")
    assert log[0] == f"[grpo-suite] cell {spec['full_id']}" and log[1].startswith("[grpo-suite] argv: python3 -m verl")
    assert log[-1].startswith("[tools/evidence.py trim] removed")
    assert not any("engine is not available" in x or "\x1b[" in x for x in log[:-1])
    if cell.alive:
        assert r.status == "interrupted" and r.reason.startswith("cut off: the host was stopped while the cell ran")
        assert f"last step {metrics.last_step} of 10" in r.reason if metrics.steps else "no step" in r.reason
    else:
        assert r.status == "crash" and r.reason.startswith("verl weight-transfer socket collision")


def test_trimmed_crash_log_keeps_the_whole_error_block():
    fixture = REPO / "tests" / "fixtures" / "h100-2026-11-28" / "log-crash-rebuild_ipc.txt"
    excerpt = [evidence.trim([x])[0] for x in evidence.read_lines(fixture)]  # ANSI stripped like the trim
    log = evidence.read_lines(EVIDENCE / "h100-oom/qwen2.5-0.5b/h100x1/fsdp/lora8-off_none-tp1-rb16/log.txt.xz")
    assert log[-1 - len(excerpt) : -1] == excerpt
