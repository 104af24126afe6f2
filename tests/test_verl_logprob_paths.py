"""How verl 0.9.1 turns logits into log-probs on a host without flash-attn, and why its fused path is closed to a
LoRA actor on one GPU: checked with verl's own code on CPU (tiny random Qwen2, gloo, one rank), next to the
planner rules and the use_fused_kernels axis that follow from it.

The 7B runs of 2026-12-04 (baselines/evidence/2026-12-04-h200-heavy-4/) found that removing the padding left the
training passes as long as before. The per-token loop below runs over the real tokens in both the padded and the
remove-padding path, so it is one cost that removing the padding cannot shrink."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
verl_F = pytest.importorskip("verl.utils.torch_functional")

from suite.matrix.ids import axis_part  # noqa: E402
from suite.matrix.load import load_matrix  # noqa: E402
from suite.matrix.verl_keys import keys_of  # noqa: E402
from suite.memory.calibration import default_calibration  # noqa: E402
from suite.memory.model import FUSED_CHUNK_TOKENS, logits_bytes  # noqa: E402
from suite.memory.settings import settings_from_cell  # noqa: E402
from suite.plan.planner import plan_matrix  # noqa: E402

PROBE = Path(__file__).parent / "fixtures" / "verl_fsdp_probe.py"


def probe(case: str, strategy: str, embeddings: str, port: int) -> dict:
    out = subprocess.run(
        [sys.executable, str(PROBE), case, strategy, embeddings, str(port)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(verl_F.FLAH_ATTN_CROSS_ENTROPY_LOSS_AVAILABLE, reason="flash-attn's cross entropy is installed")
def test_without_flash_attn_log_probs_loop_once_per_token(monkeypatch) -> None:
    calls: list[tuple[int, ...]] = []
    real = verl_F.F.log_softmax

    def counting(x, *a, **kw):
        calls.append(tuple(x.shape))
        return real(x, *a, **kw)

    monkeypatch.setattr(verl_F.F, "log_softmax", counting)
    tokens, vocab = 37, 1000
    logits = torch.randn(tokens, vocab).bfloat16()  # the engine's (total_nnz, vocab) logits, bf16
    labels = torch.randint(0, vocab, (tokens,))
    got = verl_F.logprobs_from_logits(logits, labels)
    # one log_softmax over one row per token: ~250k Python iterations for a 7B step's pass at the seed's shape
    assert calls == [(vocab,)] * tokens
    want = torch.log_softmax(logits.float(), -1).gather(-1, labels[:, None])[:, 0]
    assert torch.allclose(got.float(), want, rtol=0.01, atol=0)  # bf16 rounding of each row's log-softmax


@pytest.mark.slow
def test_fused_kernels_on_fsdp2_fail_with_untied_embeddings() -> None:
    got = probe("fused", "fsdp2", "untied", 29611)
    assert got["ok"] is False and got["error"] == "RuntimeError"
    assert got["message"].startswith("aten.mm.default got mixed torch.Tensor and DTensor")


@pytest.mark.slow
@pytest.mark.parametrize(("strategy", "embeddings", "port"), [("fsdp2", "tied", 29612), ("fsdp", "untied", 29613)])
def test_fused_kernels_run_where_lm_head_is_not_sharded_apart(strategy: str, embeddings: str, port: int) -> None:
    got = probe("fused", strategy, embeddings, port)
    # forward and backward, and the log-probs of the model without the patch (LoRA B is zero at init)
    assert got["ok"] is True, got
    assert got["tokens"] == 24 and got["max_diff"] < 1e-5


@pytest.mark.slow
def test_fsdp1_cannot_sync_a_lora_adapter_on_one_gpu() -> None:
    # the reason lora-1gpu-needs-fsdp2 exists: FSDP1 on one rank is NO_SHARD, layered summon finds no LoRA
    # tensor in its units and falls back to a full summon with offload_to_cpu, which torch refuses
    got = probe("lora-sync", "fsdp", "untied", 29614)
    assert got == {
        "case": "lora-sync",
        "strategy": "fsdp",
        "embeddings": "untied",
        "ok": False,
        "error": "NotImplementedError",
        "message": "offload_to_cpu=True and NO_SHARD is not supported yet",
    }


def fused_matrix(
    tmp_path: Path, model: str, *, strategy: str = "fsdp2", lora: int = 32, gpus: int = 1, rb: int = 45
) -> Path:
    f = tmp_path / "fused.toml"
    f.write_text(
        f"""[matrix]
name = "fused"
gpu = "h200"
gpus_per_node = {gpus}
model = "{model}"
backend = "fsdp"
dataset = "gsm8k"

[axes]
offload = ["none"]
rollout_batch = [{rb}]
use_fused_kernels = [false, true]

[base]
lora_rank = {lora}
layered_summon = true
load_format = "safetensors"
prompt_length = 512
response_length = 1024
log_prob_micro_batch_size_per_gpu = 15
ppo_micro_batch_size_per_gpu = 5
strategy = "{strategy}"
"""
    )
    return f


def planned(path: Path, *, verl: bool = False) -> dict:
    cells = plan_matrix(load_matrix(path), "bench", out_dir=path.parent / "runs", validate_with_verl=verl)
    return {c.id: c for c in cells}


def overrides(cell) -> dict:
    return {o.key: o.value for o in cell.overrides}


def test_the_planner_refuses_fused_kernels_on_fsdp2_with_untied_embeddings(tmp_path: Path) -> None:
    cells = planned(fused_matrix(tmp_path, "synthetic:qwen2.5-7b"))
    unfused, fused = cells["lora32-off_none-tp1-rb45-unfused"], cells["lora32-off_none-tp1-rb45-fused"]
    assert unfused.status == "ok"
    assert fused.status == "invalid"
    assert fused.reason.startswith("fused-kernels-fsdp2-untied: use_fused_kernels = true on FSDP2 fails for qwen2.5-7b")
    # a LoRA actor on one GPU has no FSDP1 way out (lora-1gpu-needs-fsdp2)
    assert fused.reason.endswith("set use_fused_kernels = false")


def test_fused_kernels_plan_where_they_run(tmp_path: Path) -> None:
    # Qwen2.5 up to 3B ties its embeddings; verl's own config accepts the two keys (composed with verl's schema)
    tied = planned(fused_matrix(tmp_path, "synthetic:qwen2.5-1.5b"), verl=True)
    assert {c.status for c in tied.values()} == {"ok"}
    argv = overrides(tied["lora32-off_none-tp1-rb45-fused"])
    assert argv["actor_rollout_ref.model.use_fused_kernels"] is True
    assert argv["actor_rollout_ref.model.fused_kernel_options.impl_backend"] == "torch"
    assert "actor_rollout_ref.model.use_fused_kernels" not in overrides(tied["lora32-off_none-tp1-rb45-unfused"])
    # full fine-tuning on FSDP1 over 8 GPUs: untied, and no adapter to sync
    full = planned(fused_matrix(tmp_path, "synthetic:qwen2.5-7b", strategy="fsdp", lora=0, gpus=8, rb=48))
    assert {c.status for c in full.values()} == {"ok"}
    # the same on FSDP2: refused, with FSDP1 named as the way out
    full2 = planned(fused_matrix(tmp_path, "synthetic:qwen2.5-7b", lora=0, gpus=8, rb=48))
    assert full2["full-off_none-tp1-rb48-fused"].reason.endswith("set use_fused_kernels = false or strategy = 'fsdp'")


def test_the_axis_names_its_verl_keys_and_id_words() -> None:
    assert keys_of("use_fused_kernels", "fsdp") == (
        "actor_rollout_ref.model.use_fused_kernels",
        "actor_rollout_ref.model.fused_kernel_options.impl_backend",
    )
    assert (axis_part("use_fused_kernels", True), axis_part("use_fused_kernels", False)) == ("fused", "unfused")


def test_fused_kernels_hold_one_chunk_of_logits(tmp_path: Path) -> None:
    cells = planned(fused_matrix(tmp_path, "synthetic:qwen2.5-1.5b"))
    cal = default_calibration()
    unfused = settings_from_cell(cells["lora32-off_none-tp1-rb45-unfused"])
    fused = settings_from_cell(cells["lora32-off_none-tp1-rb45-fused"])
    assert (unfused.fused_kernels, fused.fused_kernels) == (False, True)
    tokens = 5 * 1536
    # verl's fused path never calls flash-attn's cross entropy: its chunks hold the torch path's copies
    torch_path = replace(unfused, flash_attn=False)
    full, chunk = logits_bytes(torch_path, cal, tokens, train=True), logits_bytes(fused, cal, tokens, train=True)
    assert chunk == pytest.approx(full * FUSED_CHUNK_TOKENS / tokens)
    assert logits_bytes(unfused, cal, tokens, train=True) < full  # flash_attention_2: flash-attn is installed
    assert logits_bytes(fused, cal, 100, train=False) == logits_bytes(unfused, cal, 100, train=False)
