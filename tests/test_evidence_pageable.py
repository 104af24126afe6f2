"""The first run with pageable host copies (1x H100, 2026-12-07): a 0.5B LoRA cell with param + optimizer offload and
suite/run/pageable_copies.py loaded in verl's workers, 1 warm-up + 2 measured steps. Read back from the committed
files and the README's claims recomputed."""

from __future__ import annotations

from evidence_helpers import (
    EVIDENCE,
    assert_prediction_committed,
    assert_readme_tables,
    log_lines,
    memory_errors,
    result_matching_metrics,
)

from suite.cli import main
from suite.memory.settings import settings_from_result
from suite.memory.validate import validate_results
from suite.plan.cell import EXTERNAL_MODULES_KEY, PAGEABLE_COPIES_MODULE
from suite.results.io import read_result
from suite.results.sentinels import mismatch_series
from suite.telemetry import classify

HERE = EVIDENCE / "2026-12-07-h100-pageable"
ID = "lora32-off_param+optimizer-tp1-rb16-pageable"
CELL = HERE / "h100-1gpu-pageable" / ID
PREDICTIONS = EVIDENCE / "predictions" / "h100-1gpu-pageable.txt"


def test_the_cell_ran_ok_with_the_module_in_verls_workers() -> None:
    r = result_matching_metrics(CELL)
    assert r.status == "ok" and r.exit_code == 0 and r.reason is None
    assert (r.matrix, r.profile, r.gpu, r.n_gpus, r.model) == (
        "h100-1gpu-pageable",
        "short",
        "h100",
        1,
        "synthetic:qwen2.5-0.5b",
    )
    assert [s.step for s in r.steps] == [1, 2, 3] and len(r.measured_steps()) == 2
    p = r.provenance
    assert p.git_commit == "d915daf27af278be887a1cdfde16b449e92acd41"
    assert (p.gpu_name, p.driver, p.cuda, p.versions["torch"]) == (
        "NVIDIA H100 80GB HBM3",
        "580.159.04",
        "13.0",
        "2.11.0",
    )
    assert f"+{EXTERNAL_MODULES_KEY}={PAGEABLE_COPIES_MODULE}" in p.argv
    assert settings_from_result(r).pageable_copies
    assert any(f"'VERL_USE_EXTERNAL_MODULES': '{PAGEABLE_COPIES_MODULE}'" in ln for ln in log_lines(CELL))
    assert classify.find_oom(log_lines(CELL)) is None
    assert r.lora_adapter_syncs == 4 and round(r.wall_s) == 463


def test_the_numbers_the_readme_states() -> None:
    r = read_result(CELL / "result.json")
    assert [round(m.pearson, 4) for m in mismatch_series(r)] == [0.9998] * 3
    kl = [s.extra["rollout_corr/kl"] for s in r.steps]
    assert min(kl) >= 0.0018 and max(kl) < 0.00205
    assert (r.peak_memory_gb[0], r.predicted_memory_gb) == (26.45, 27.06)
    assert (round(r.host_peak_memory_gb, 1), r.predicted_host_memory_gb) == (31.0, 32.15)
    # the host tree sits under the pinned twin's prediction as well: at 0.5B no evidence either way
    assert "34.6  ok" in PREDICTIONS.read_text()
    assert_prediction_committed(r, PREDICTIONS, ID)
    gpu, host = memory_errors(r)
    assert (round(100 * gpu, 1), round(100 * host, 1)) == (2.3, 3.8)
    (row,) = validate_results([("cell", r)])
    assert (row.measured_gib, round(row.predicted_gib, 2), row.phase, row.predicted_fits) == (
        26.45,
        27.06,
        "rollout",
        True,
    )
    assert_readme_tables(HERE)


def test_it_is_not_a_baseline(capsys) -> None:
    assert main(["baseline", "promote", "--baselines", str(HERE / "nowhere"), str(CELL)]) != 0
    assert "the gate needs at least 5" in capsys.readouterr().err
    assert not (HERE / "nowhere").exists()
