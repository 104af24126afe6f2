"""The host model's processes against RSS by process role: title -> kind, one row per kind, and the CLI view."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suite.memory.calibration import default_calibration
from suite.memory.processes import OTHER, markdown, process_rows, role_kind
from suite.results.io import read_result

ROOT = Path(__file__).resolve().parents[1]
RECIPE = next((ROOT / "baselines" / "evidence" / "2026-12-04-h200-heavy-2").glob("h200-1gpu-7b-nokl/*/result.json"))
H = default_calibration().host


@pytest.mark.parametrize(
    ("label", "kind"),
    [
        ("python -m verl.trainer.main_ppo", "driver"),
        ("raylet", "ray_system"),
        ("gcs_server", "ray_system"),
        ("ray::TaskRunnerV1", "task_runner"),
        ("ray::WorkerDict", "trainer_worker"),
        ("ray::vLLMHttpServer", "vllm_server"),
        ("VLLM::EngineCore", "vllm_engine_core"),
        ("VLLM::Worker_TP0", "vllm_worker"),
        ("ray::AgentLoopWorkerTQ", "agent_worker"),
        ("ray::SimpleStorageUnit", "tq_storage_unit"),
        ("ray::TransferQueueController", "tq_controller"),
        ("ray::IDLE", OTHER),
        ("python -c", OTHER),
    ],
)
def test_titles_map_to_the_kinds_the_model_counts(label: str, kind: str) -> None:
    assert role_kind(label) == kind


def _with_roles():
    r = read_result(RECIPE)
    roles = {
        "python -m verl.trainer.main_ppo": 0.9,
        "raylet": 0.3,
        "gcs_server": 0.2,
        "ray::TaskRunnerV1": 6.0,  # the TaskRunner and its two DataLoader workers (same title)
        "ray::WorkerDict": 36.0,
        "ray::vLLMHttpServer": 2.5,
        "VLLM::EngineCore": 1.2,
        "VLLM::Worker_TP0": 18.0,
        "ray::AgentLoopWorkerTQ": 1.6,
        "ray::SimpleStorageUnit": 3.6,
        "ray::TransferQueueController": 0.4,
        "ray::IDLE": 0.5,
    }
    counts = dict.fromkeys(roles, 1) | {
        "ray::TaskRunnerV1": 3,
        "ray::AgentLoopWorkerTQ": 2,
        "ray::SimpleStorageUnit": 8,
    }
    return r.model_copy(update={"host_peak_processes_gb": roles, "host_peak_process_counts": counts})


def test_one_row_per_kind_with_counts_and_constants() -> None:
    rows = {x.kind: x for x in process_rows([("r.json", _with_roles())])}
    tq = rows["tq_storage_unit"]
    assert (tq.predicted_count, tq.measured_count, tq.measured_gib) == (8, 8, 3.6)
    assert tq.predicted_gib == pytest.approx(8 * H.tq_storage_unit_gib, abs=0.01)
    # DataLoader workers share the TaskRunner's title: compared together
    runner = rows["task_runner"]
    assert runner.predicted_count == 1 + 2 and runner.measured_count == 3
    assert runner.predicted_gib == pytest.approx(H.task_runner_gib + 2 * H.dataloader_worker_gib, abs=0.01)
    assert "dataloader_worker" not in rows
    assert rows["ray_system"].measured_count == 2 and rows["ray_system"].measured_gib == pytest.approx(0.5)
    assert rows["trainer_worker"].residual_gib == pytest.approx(36.0 - H.trainer_worker_gib, abs=0.01)
    other = rows[OTHER]
    assert (other.predicted_count, other.measured_count, other.measured_gib) == (0, 1, 0.5)
    # the rows add up to what the result measured by role
    assert sum(x.measured_gib for x in rows.values()) == pytest.approx(
        sum(_with_roles().host_peak_processes_gb.values())
    )


def test_results_without_roles_give_no_rows() -> None:
    assert process_rows([("r.json", read_result(RECIPE))]) == []
    assert "no result records RSS by process role" in markdown([])


def test_the_cli_prints_the_process_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from suite.cli import main

    f = tmp_path / "result.json"
    f.write_text(_with_roles().to_json())
    main(["memory", "validate", str(f), "--processes"])
    out = capsys.readouterr().out
    assert "| cell | process kind | predicted n | predicted GiB | measured n | measured GiB | residual GiB |" in out
    assert "| tq_storage_unit | 8 | 3.12 | 8 | 3.60 | +0.48 |" in out
    main(["memory", "validate", str(f), "--processes", "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert {p["kind"] for p in doc["processes"]} >= {"driver", "tq_controller", OTHER}
    assert all("torch_error" in row for row in doc["rows"])
