"""The CPU measurement of a checkpoint load's host RAM by model dtype (2026-12-07-cpu-load-rss), what the host
planner's FSDP start-up takes from it, and the two GPU runs that check it. Read back from the committed files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from evidence_helpers import EVIDENCE

from suite.memory.host import predict_host
from suite.memory.model import lora_parameters
from suite.memory.settings import settings_from_result
from suite.results.io import read_result
from suite.results.phases import host_phase_peaks

ROOT = Path(__file__).resolve().parents[1]
HERE = EVIDENCE / "2026-12-07-cpu-load-rss"
DOC = json.loads((HERE / "load-rss.json").read_text())
LOADS = {r["dtype"]: r for r in DOC["loads"]}
sys.path.insert(0, str(ROOT / "benchmarks"))
import load_rss  # noqa: E402

BF16_7B = (
    EVIDENCE
    / "2026-12-07-h100-heavy-3/h100-1gpu-7b-bf16/lora32-off_none-tp1-rb45-gmu0.4-attnflex-rmpad-mnbt8192-mb5-nogc-mdbf16"
)
BF16_14B = (
    EVIDENCE
    / "2026-12-07-h100-heavy-2/h100-1gpu-14b-bf16/lora32-off_none-tp1-rb45-gmu0.55-attnflex-rmpad-mnbt8192-mb3-nogc-mdbf16"
)
FP32_7B = (
    EVIDENCE
    / "2026-12-07-h100-heavy/h100-1gpu-7b-fa-mb5/lora32-off_none-tp1-rb45-gmu0.4-attnflex-rmpad-mnbt8192-mb5-nogc"
)
GIB = 2**30


def test_provenance_and_the_readme_table() -> None:
    p = DOC["provenance"]
    assert (p["torch"], p["transformers"], p["python"]) == ("2.13.0+cpu", "5.10.4", "3.11.7")
    assert DOC["checkpoint"] == "qwen2.5-1.5b" and set(LOADS) == {"fp32", "bf16"}
    readme = (HERE / "README.md").read_text()
    for line in load_rss.markdown(DOC).splitlines():
        assert line in readme, line


def test_an_fp32_load_copies_the_file_and_a_bf16_one_keeps_it_mapped() -> None:
    fp32, bf16 = LOADS["fp32"], LOADS["bf16"]
    assert fp32["parameters"] == bf16["parameters"] == 1_543_714_304
    assert fp32["peak"]["VmRSS"]["bytes_per_parameter"] == pytest.approx(6.1, abs=0.05)  # file 2 + copy 4
    assert fp32["loaded"]["VmRSS"]["bytes_per_parameter"] == pytest.approx(4.1, abs=0.05)  # the copy stays
    assert fp32["peak"]["RssFile"]["gib"] == pytest.approx(fp32["parameters"] * 2 / GIB, rel=0.02)  # every page read
    assert bf16["peak"]["VmRSS"]["bytes_per_parameter"] < 0.2  # nothing read, nothing copied
    assert bf16["cast"]["VmRSS"]["bytes_per_parameter"] < 0.2  # .to(bf16) of a bf16 model is no copy either


def test_the_planner_counts_a_copy_only_where_the_dtype_is_not_the_files() -> None:
    for cell, copied in ((BF16_7B, False), (FP32_7B, True)):
        s = settings_from_result(read_result(cell / "result.json"))
        (startup,) = [p for p in predict_host(s).phases if p.name == "startup"]
        lora = lora_parameters(s.arch, s.lora_rank, s.target_modules)
        per = 4 if copied else 2
        want = ((s.arch.num_parameters if copied else 0) + lora) * per / GIB
        assert startup.components["model_load"] == pytest.approx(want, rel=1e-6)
        assert startup.components["checkpoint_mmap"] == pytest.approx(s.arch.num_parameters * 2 / GIB, rel=1e-6)


def test_the_gpu_runs_start_up_phase_against_the_planner() -> None:
    got = {}
    for name, cell in (("7b-bf16", BF16_7B), ("14b-bf16", BF16_14B), ("7b-fp32", FP32_7B)):
        r = read_result(cell / "result.json")
        measured = host_phase_peaks(r)["startup"]
        predicted = predict_host(settings_from_result(r)).phase_totals()["startup"]
        got[name] = (round(measured, 1), round(predicted, 1))
    assert got == {"7b-bf16": (25.6, 25.3), "14b-bf16": (39.0, 38.8), "7b-fp32": (53.4, 53.8)}


def test_the_script_measures_a_tiny_checkpoint(tmp_path: Path) -> None:
    import torch
    import transformers

    config = transformers.Qwen2Config(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256,
    )  # fmt: skip
    model = transformers.Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "tiny")
    n = sum(p.numel() for p in model.parameters())
    rows = {d: load_rss.measure(tmp_path / "tiny", d) for d in ("fp32", "bf16")}
    assert all(r["parameters"] == n for r in rows.values())
    for r in rows.values():
        assert set(r["peak"]) == set(load_rss.KEYS) and r["base_rss_gib"] > 0
        assert r["peak"]["VmRSS"]["gib"] >= r["loaded"]["VmRSS"]["gib"] - 1e-3  # the peak includes the end
    table = load_rss.markdown({"loads": list(rows.values())}).splitlines()
    assert len(table) == 4 and table[2].startswith("| fp32 | ") and table[3].startswith("| bf16 | ")
