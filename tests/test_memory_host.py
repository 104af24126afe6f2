"""The host-memory model (suite/memory/host.py): its arithmetic component by component on known architectures,
pinned-block rounding, scaling with GPUs per node, phases, the predicted-host-oom marking and its precedence
after GPU OOM, the [host] calibration's strictness and the host rows of `memory validate`."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from fakes.cells import with_argv

from suite.errors import InputError
from suite.memory.calibration import DEFAULT_PATH, default_calibration, parse_calibration
from suite.memory.host import (
    GIB,
    MIB,
    fsdp_rank_blocks,
    hf_layer_tensors,
    hf_root_tensors,
    lora_tensors,
    next_power_of_two,
    pinned,
    predict_host,
    process_bytes,
    process_counts,
    vllm_worker_tensors,
)
from suite.memory.model import lora_parameters
from suite.memory.predict import annotate_cells, predict_cell_host
from suite.memory.settings import MemorySettings, settings_from_argv, settings_from_cell
from suite.models.archs import ARCHS
from suite.plan.cell import Cell
from suite.results.schema import Provenance, Result

CAL = default_calibration()
RAW = CAL.with_values("host", pinned_power_of_two=False)  # bytes as asked: the components by hand
Q7, Q14, Q32, Q05 = ARCHS["qwen2.5-7b"], ARCHS["qwen2.5-14b"], ARCHS["qwen2.5-32b"], ARCHS["qwen2.5-0.5b"]
AR = "actor_rollout_ref"
ROOT = Path(__file__).resolve().parents[1]


def one_gpu(arch=Q7, **kw) -> MemorySettings:
    """The 32B LoRA recipe per GPU on one H100 (suite/matrices/h100-1gpu-7b.toml's reference): LoRA r32
    all-linear, param + optimizer + ref param offload, FSDP2, layered summon from safetensors, 2/2/2 workers."""
    base = dict(
        arch=arch, gpu="h100", gpu_memory_gib=79.2, n_gpus=1, backend="fsdp", lora_rank=32,
        param_offload=True, optimizer_offload=True, ref_param_offload=True, use_kl_loss=True, rollout_tp=1,
        fsdp_strategy="fsdp2", load_format="safetensors", layered_summon=True,
        agent_num_workers=2, reward_num_workers=2, dataloader_num_workers=2,
    )  # fmt: skip
    return MemorySettings(**{**base, **kw})


def seed(**kw) -> MemorySettings:
    """The 32B seed (DESIGN.md) on 4x H100: LoRA r32, param+optimizer offload, rollout TP 4."""
    return one_gpu(Q32, **{"n_gpus": 4, "gpus_per_node": 4, "rollout_tp": 4, **kw})


def comp(pred, name: str, phase: str = "steady") -> float:
    return next(p for p in pred.phases if p.name == phase).components.get(name, 0.0)


# --- arithmetic, component by component ----------------------------------------------------------------------


def test_tensor_lists_add_up_to_the_parameter_count():
    for arch in ARCHS.values():
        layer = sum(r * c for r, c in hf_layer_tensors(arch)) * arch.num_hidden_layers
        assert layer + sum(r * c for r, c in hf_root_tensors(arch)) == arch.num_parameters, arch.key
        per_layer = sum(r * c for r, c in lora_tensors(arch, 32, ("all-linear",)))
        assert per_layer * arch.num_hidden_layers == lora_parameters(arch, 32, ("all-linear",))
        # vLLM at TP 1 holds the same parameters (qkv and gate_up fused; Qwen's vocabulary needs no padding)
        if arch.vocab_size % 64 == 0:
            assert sum(vllm_worker_tensors(one_gpu(arch), CAL)) == arch.num_parameters


def test_qwen7b_lora_param_optimizer_offload_on_one_gpu_by_hand():
    s = one_gpu()
    n, lora = Q7.num_parameters, lora_parameters(Q7, 32, ("all-linear",))
    p = predict_host(s, RAW)
    # vLLM sleeps at level 1 (LoRA adapter): its bf16 weights (+ the adapter buffers) are backed up on the host
    assert comp(p, "vllm_sleep_copy") == pytest.approx((n + lora) * 2 / GIB)
    assert comp(p, "vllm_sleep_copy") == pytest.approx(14.33, abs=0.01)  # 7.6B bf16 = 14.18 GiB + adapters
    # param offload: the actor shard in verl's default model dtype fp32 (base + adapters)
    assert comp(p, "offloaded_params") == pytest.approx((n + lora) * 4 / GIB)
    # optimizer offload: Adam m and v (fp32) of the LoRA parameters only; no master copy under FSDP
    assert comp(p, "optimizer_states") == pytest.approx(lora * 2 * 4 / GIB)
    assert comp(p, "ref_params") == 0 and comp(p, "offloaded_grads") == 0  # LoRA: the ref is the actor
    assert comp(p, "pinned_rounding") == 0  # rounding switched off
    procs = {"driver": 1, "ray_system": 1, "task_runner": 1, "trainer_worker": 1, "vllm_server": 1,
             "vllm_engine_core": 1, "vllm_worker": 1, "agent_worker": 2, "reward_worker": 2, "dataloader_worker": 2,
             "tq_storage_unit": 8, "tq_controller": 1}  # fmt: skip
    assert p.processes == procs
    h = CAL.host
    by_hand = (h.driver_gib + h.ray_system_gib + h.task_runner_gib + h.trainer_worker_gib + h.vllm_server_gib
               + h.vllm_engine_core_gib + h.vllm_worker_gib + 2 * (h.agent_worker_gib + h.reward_worker_gib
               + h.dataloader_worker_gib) + 8 * h.tq_storage_unit_gib + h.tq_controller_gib)  # fmt: skip
    assert comp(p, "processes") == pytest.approx(by_hand)
    assert p.peak_gib == pytest.approx(sum(next(x for x in p.phases if x.name == "steady").components.values()))
    # bf16 model weights halve the offloaded shard
    bf16 = predict_host(replace(s, model_dtype="bf16"), RAW)
    assert comp(bf16, "offloaded_params") == pytest.approx(comp(p, "offloaded_params") / 2)


def test_qwen14b_lora_sleep_copy_is_the_model_bytes():
    p = predict_host(one_gpu(Q14), RAW)
    assert comp(p, "vllm_sleep_copy") == pytest.approx(
        (Q14.num_parameters + lora_parameters(Q14, 32, ("all-linear",))) * 2 / GIB
    )
    assert 27.5 < comp(p, "vllm_sleep_copy") < 28.0  # 14.8B bf16


def test_full_finetune_optimizer_offload_is_8_bytes_and_with_params_12_bytes_per_parameter():
    n = Q7.num_parameters
    opt = predict_host(one_gpu(lora_rank=0, param_offload=False, use_kl_loss=False), RAW)
    assert comp(opt, "optimizer_states") == pytest.approx(n * 8 / GIB)  # fp32 exp_avg + exp_avg_sq
    assert comp(opt, "offloaded_params") == 0 and comp(opt, "vllm_sleep_copy") == 0  # level 2: weights dropped
    both = predict_host(one_gpu(lora_rank=0, use_kl_loss=False), RAW)
    held = comp(both, "offloaded_params") + comp(both, "optimizer_states")
    assert held == pytest.approx(n * 12 / GIB)
    # FSDP2 offload_policy keeps parameters, gradients and Adam state on the CPU: 16 bytes per parameter
    policy = predict_host(one_gpu(lora_rank=0, use_kl_loss=False, param_offload=False, optimizer_offload=False,
                                  offload_policy=True), RAW)  # fmt: skip
    parts = ("offloaded_params", "offloaded_grads", "optimizer_states")
    assert sum(comp(policy, k) for k in parts) == pytest.approx(n * 16 / GIB)
    fsdp1 = one_gpu(lora_rank=0, use_kl_loss=False, param_offload=False, optimizer_offload=False,
                    offload_policy=True, fsdp_strategy="fsdp")  # fmt: skip
    assert sum(comp(predict_host(fsdp1, RAW), k) for k in parts) == 0  # verl reads it in its FSDP2 branch only
    # a KL term adds the always-offloaded reference of full fine-tuning: fp32 by verl 0.9.1's default (its bf16 for
    # forward_only applies only to a null model_dtype; the 0.5B full fine-tunes logged ref model_dtype fp32)
    kl = predict_host(one_gpu(lora_rank=0), RAW)
    assert comp(kl, "ref_params") == pytest.approx(n * 4 / GIB)
    kl16 = predict_host(one_gpu(lora_rank=0, ref_model_dtype="bf16"), RAW)
    assert comp(kl16, "ref_params") == pytest.approx(n * 2 / GIB)


def test_megatron_offload_by_hand():
    # 8x H20, TP 8, PP 1 (DP 1), full fine-tuning: bf16 params (one pinned buffer per GPU), fp32 main params +
    # Adam m, v = 12 bytes per parameter over the node, gradients freed (not copied)
    s = one_gpu(Q32, gpu="h20", gpu_memory_gib=95.6, n_gpus=8, gpus_per_node=8, backend="megatron", lora_rank=0,
                megatron_tp=8, rollout_tp=8, use_kl_loss=False)  # fmt: skip
    p = predict_host(s, RAW)
    padded = -(-Q32.vocab_size // (128 * 8)) * 128 * 8
    n = Q32.num_parameters + (padded - Q32.vocab_size) * Q32.hidden_size * 2  # Megatron pads the vocabulary
    n += 7 * (2 * Q32.num_hidden_layers + 1) * Q32.hidden_size  # and each TP rank holds every RMSNorm weight
    assert comp(p, "offloaded_params") == pytest.approx(n * 2 / GIB)
    assert comp(p, "optimizer_states") == pytest.approx(n * 12 / GIB)
    assert comp(p, "offloaded_grads") == 0 and comp(p, "vllm_sleep_copy") == 0
    assert [ph.name for ph in p.phases] == ["steady"]  # no CPU build of the whole model


def test_no_offload_no_lora_leaves_only_process_overheads():
    for s in (one_gpu(lora_rank=0, param_offload=False, optimizer_offload=False, use_kl_loss=False),
              seed(lora_rank=0, param_offload=False, optimizer_offload=False, use_kl_loss=False, backend="megatron",
                   megatron_tp=4)):  # fmt: skip
        p = predict_host(s, CAL)
        steady = next(ph for ph in p.phases if ph.name == "steady")
        assert {k for k, v in steady.components.items() if v > 0} == {"processes"}
        assert steady.total_gib == pytest.approx(process_bytes(process_counts(s), CAL) / GIB)


# --- pinned blocks ---------------------------------------------------------------------------------------------


def test_pinned_blocks_round_up_to_a_power_of_two():
    assert [next_power_of_two(x) for x in (1, 2, 3, 4, 5, 1000, 1024, 1025)] == [1, 2, 4, 4, 8, 1024, 1024, 2048]
    # Qwen2.5-7B's vLLM gate_up (37888 x 3584 bf16 = 259 MiB) is held in a 512 MiB block
    gate_up = 2 * 18944 * 3584 * 2
    assert pinned([gate_up], CAL).held == 512 * MIB and pinned([gate_up], RAW).held == gate_up
    small = 4096.0  # under pinned_min_block_mib: shares a segment, counted as asked
    assert pinned([small], CAL).held == small


def test_vllm_sleep_copy_rounding_on_qwen7b_by_hand():
    s = one_gpu(param_offload=False, optimizer_offload=False)
    p = predict_host(s, CAL)
    # per layer qkv 31.5 -> 32, o 24.5 -> 32, gate_up 259 -> 512, down 129.5 -> 256 MiB; embed and lm_head
    # 1039.5 -> 2048 MiB each; norms and biases counted as asked
    held = (28 * (32 + 32 + 512 + 256) + 2 * 2048) * MIB
    small = sum(n * 2 for n in vllm_worker_tensors(s, CAL) if n * 2 < MIB)
    adapters = lora_parameters(Q7, 32, ("all-linear",)) * 2
    assert (comp(p, "vllm_sleep_copy") + comp(p, "pinned_rounding")) * GIB == pytest.approx(held + small + adapters)


def test_fsdp1_and_fsdp2_shard_the_same_bytes():
    for lora in (0, 32):
        one, two = (fsdp_rank_blocks(seed(lora_rank=lora, fsdp_strategy=x)) for x in ("fsdp", "fsdp2"))
        n = Q32.num_parameters + lora_parameters(Q32, lora, ("all-linear",))
        assert sum(b for b, _ in one) == pytest.approx(n / 4, rel=1e-4)
        assert sum(b for b, _ in two) == pytest.approx(n / 4, rel=1e-4)
        assert sum(b for b, t in two if t) == pytest.approx(lora_parameters(Q32, lora, ("all-linear",)) / 4 if lora
                                                            else n / 4, rel=1e-4)  # fmt: skip


# --- nodes and phases ------------------------------------------------------------------------------------------


def test_scaling_with_gpus_per_node():
    four = predict_host(seed(), RAW)
    # twice the GPUs on one node: each GPU's vLLM worker backs up its own shard (x2), the sharded FSDP state
    # still sums to one model per node
    eight = predict_host(seed(n_gpus=8, gpus_per_node=8), RAW)
    assert comp(eight, "vllm_sleep_copy") == pytest.approx(2 * comp(four, "vllm_sleep_copy"))
    assert comp(eight, "offloaded_params") == pytest.approx(comp(four, "offloaded_params"), rel=1e-4)
    # the same 8 GPUs over 2 nodes of 4: per node the vLLM copy is a 4-GPU one, the FSDP shards halve
    two_nodes = predict_host(seed(n_gpus=8, gpus_per_node=4), RAW)
    assert (two_nodes.nnodes, two_nodes.gpus_per_node) == (2, 4)
    assert comp(two_nodes, "vllm_sleep_copy") == pytest.approx(comp(four, "vllm_sleep_copy"))
    assert comp(two_nodes, "offloaded_params") == pytest.approx(comp(four, "offloaded_params") / 2, rel=1e-4)
    assert two_nodes.processes["trainer_worker"] == 4 and eight.processes["trainer_worker"] == 8
    # rollout TP 1 on 4 GPUs: four replicas, four full bf16 copies
    tp1 = predict_host(seed(rollout_tp=1), RAW)
    assert comp(tp1, "vllm_sleep_copy") == pytest.approx(4 * comp(four, "vllm_sleep_copy"), rel=1e-3)
    assert tp1.processes["vllm_server"] == 4 and four.processes["vllm_server"] == 1


def test_startup_builds_the_model_on_rank0_and_every_rank_with_tied_embeddings():
    p = predict_host(seed(param_offload=False, optimizer_offload=False), RAW)
    n, lora = Q32.num_parameters, lora_parameters(Q32, 32, ("all-linear",))
    assert comp(p, "model_load", "startup") == pytest.approx((n + lora) * 4 / GIB)
    assert comp(p, "checkpoint_mmap", "startup") == pytest.approx(n * 2 / GIB)
    assert p.phase == "startup"  # without offload the CPU build is the host peak
    # vLLM and the CPU workers are not up yet while the actor is built
    assert comp(p, "processes", "startup") < comp(p, "processes")
    tied = predict_host(one_gpu(Q05, n_gpus=4, gpus_per_node=4, rollout_tp=1), RAW)
    assert comp(tied, "model_load", "startup") == pytest.approx(
        4 * (Q05.num_parameters + lora_parameters(Q05, 32, ("all-linear",))) * 4 / GIB
    )
    # a load in the checkpoint's own dtype (bf16 from bf16 safetensors) keeps the mmapped tensors: no copy but the
    # adapters; fp16 is as wide but another dtype, so it is a cast and copies
    for dtype, copied in (("bf16", False), ("bfloat16", False), ("fp16", True)):
        q = predict_host(seed(param_offload=False, optimizer_offload=False, model_dtype=dtype), RAW)
        want = ((n if copied else 0) + lora) * 2 / GIB
        assert comp(q, "model_load", "startup") == pytest.approx(want), dtype
        assert comp(q, "checkpoint_mmap", "startup") == pytest.approx(n * 2 / GIB)


def test_dummy_load_format_gathers_the_base_model_at_the_first_sync():
    safetensors = predict_host(one_gpu(), RAW)
    assert "base_sync" not in safetensors.phase_totals()
    dummy = predict_host(one_gpu(load_format="dummy", layered_summon=False), RAW)
    assert dummy.phase == "base_sync"
    assert comp(dummy, "base_sync_gather", "base_sync") == pytest.approx(Q7.num_parameters * 4 * 2 / GIB)
    refused = predict_host(one_gpu(load_format="dummy", layered_summon=True), RAW)
    assert "base_sync" not in refused.phase_totals() and any("refuses" in n for n in refused.notes)


def test_fits_and_reason_text():
    p = predict_host(one_gpu(), CAL)
    assert p.fits(p.peak_gib / 0.95 + 0.01) and not p.fits(p.peak_gib / 0.95 - 0.01)
    assert p.fits(p.peak_gib, fraction=1.0)
    r = p.reason(64)
    assert r.startswith(f"host: predicted {p.peak_gib:.1f} GiB > 0.95 x 64 GiB (")
    assert "vllm sleep copy 14.3" in r and "offloaded params 28.7" in r and "processes" in r
    assert "<= 0.95 x 1024 GiB" in p.reason(1024)
    bare = predict_host(one_gpu(param_offload=False, optimizer_offload=False, lora_rank=0, use_kl_loss=False), CAL)
    assert "(startup: model load" in bare.reason(8)


# --- settings, cells, statuses ---------------------------------------------------------------------------------


def test_settings_read_the_host_inputs():
    argv = [f"{AR}.model.lora_rank=32", f"{AR}.actor.strategy=fsdp2", f"{AR}.rollout.load_format=safetensors",
            f"{AR}.rollout.layered_summon=True", f"{AR}.rollout.agent.num_workers=3", "reward.num_workers=4",
            "data.dataloader_num_workers=5", "trainer.n_gpus_per_node=4", f"{AR}.ref.fsdp_config.model_dtype=fp32"]  # fmt: skip
    s = settings_from_argv(argv, model="Qwen/Qwen2.5-32B-Instruct", gpu="h100", n_gpus=8)
    assert (s.fsdp_strategy, s.load_format, s.layered_summon) == ("fsdp2", "safetensors", True)
    assert (s.agent_num_workers, s.reward_num_workers, s.dataloader_num_workers) == (3, 4, 5)
    assert (s.gpus_per_node, s.node_gpus, s.nnodes, s.ref_model_dtype) == (4, 4, 2, "fp32")
    d = settings_from_argv([], model="Qwen/Qwen2.5-32B-Instruct", gpu="h100", n_gpus=4)  # verl's defaults
    assert (d.fsdp_strategy, d.load_format, d.agent_num_workers, d.reward_num_workers) == ("fsdp", "dummy", 8, 8)
    assert (d.node_gpus, d.nnodes) == (4, 1)
    # the older reward_model.num_workers, when set, wins (verl 0.9.1 reward_loop.py)
    old = settings_from_argv(["reward.num_workers=2", "reward_model.num_workers=6"], model="synthetic:qwen2.5-0.5b",
                             gpu="h100", n_gpus=1)  # fmt: skip
    assert old.reward_num_workers == 6


def _cell(argv: list[str], **kw) -> Cell:
    base = dict(id="x", matrix="m", gpu="h100", gpus_per_node=1, nnodes=1, model="synthetic:qwen2.5-7b",
                backend="fsdp", profile="bench", axes={}, status="ok", reason=None,
                command=[])  # fmt: skip
    return with_argv(Cell(**{**base, **kw}), ["python3", "-m", "verl.trainer.main_ppo", *argv])


# the 7B recipe cell: fits one H100 (h100-1gpu-7b.toml's reference, 67.5 GiB predicted)
FITS = [f"{AR}.model.lora_rank=32", f"{AR}.actor.fsdp_config.param_offload=True",
        f"{AR}.actor.fsdp_config.optimizer_offload=True", f"{AR}.actor.strategy=fsdp2",
        f"{AR}.rollout.tensor_model_parallel_size=1", f"{AR}.rollout.gpu_memory_utilization=0.3",
        f"{AR}.rollout.load_format=safetensors", f"{AR}.rollout.layered_summon=True", "data.train_batch_size=45",
        f"{AR}.actor.ppo_mini_batch_size=45", f"{AR}.rollout.n=5", "data.max_response_length=1024",
        f"{AR}.actor.ppo_micro_batch_size_per_gpu=15", f"{AR}.rollout.log_prob_micro_batch_size_per_gpu=15",
        f"{AR}.rollout.max_model_len=1536", f"{AR}.model.use_remove_padding=False"]  # fmt: skip


def test_settings_from_cell_and_result_carry_the_node_layout():
    c = _cell(FITS, gpus_per_node=4, nnodes=2)
    assert (settings_from_cell(c).node_gpus, settings_from_cell(c).nnodes) == (4, 2)
    from suite.memory.settings import settings_from_result

    r = _result(None, FITS).model_copy(update={"n_gpus": 8, "nnodes": 2})
    assert settings_from_result(r).node_gpus == 4


def test_annotate_marks_predicted_host_oom_with_the_reason():
    small_host, big_host, default = (_cell(FITS, host_memory_gb=g) for g in (64.0, 1024.0, None))
    a, b, c = annotate_cells([small_host, big_host, default])
    host = predict_cell_host(small_host)
    assert a.status == "predicted-host-oom" and a.reason == host.reason(64.0)
    assert a.reason.startswith("host: predicted") and "> 0.95 x 64 GiB" in a.reason and "vllm sleep copy" in a.reason
    assert a.predicted_host_memory_gb == round(host.peak_gib, 2) and a.host_memory_breakdown == host.breakdown
    assert a.predicted_memory_gb and a.predicted_memory_gb < 78.2  # the GPUs fit: only the host does not
    assert b.status == "ok" and b.reason is None and b.predicted_host_memory_gb == a.predicted_host_memory_gb
    assert c.status == "ok" and c.host_memory_gb == 2048.0  # the generation's default, filled in
    assert sum(a.host_memory_breakdown.values()) == pytest.approx(a.predicted_host_memory_gb, abs=0.1)


def test_gpu_oom_takes_precedence_and_names_the_host_too():
    gpu_oom = [x for x in FITS if "micro_batch" not in x] + [f"{AR}.actor.ppo_micro_batch_size_per_gpu=45",
                                                             f"{AR}.rollout.log_prob_micro_batch_size_per_gpu=45"]  # fmt: skip
    both, gpu_only = annotate_cells([_cell(gpu_oom, host_memory_gb=64.0), _cell(gpu_oom, host_memory_gb=1024.0)])
    assert both.status == "predicted-oom" and both.reason.startswith("memory: predicted peak")
    assert "; host: predicted" in both.reason and "> 0.95 x 64 GiB" in both.reason
    assert gpu_only.status == "predicted-oom" and "host:" not in gpu_only.reason
    invalid = annotate_cells([_cell(FITS, host_memory_gb=8.0, status="invalid", reason="bad key")])[0]
    assert invalid.status == "invalid" and invalid.reason == "bad key" and invalid.predicted_host_memory_gb


def test_the_seed_cell_of_h100_toml_is_sane():
    from suite.memory.cli import predicted_cells

    cells = {c.id: c for c in predicted_cells(str(ROOT / "suite/matrices/h100.toml"), "bench")}
    seed_cell = cells["lora32-off_param+optimizer-tp4-rb180"]
    assert seed_cell.status == "ok" and seed_cell.host_memory_gb == 2048.0
    bd = seed_cell.host_memory_breakdown
    assert 61.0 < bd["vllm_sleep_copy"] < 62.0  # 32B bf16 = 61.0 GiB, one TP-4 replica on the node
    assert 122.0 < bd["offloaded_params"] < 124.0  # fp32 base + adapters, sharded over the 4 GPUs of the node
    assert bd["optimizer_states"] < 3  # LoRA parameters only
    assert seed_cell.predicted_host_memory_gb < 0.95 * 2048
    # four TP-1 replicas back up four copies
    assert cells["lora32-off_param+optimizer-tp1-rb180"].host_memory_breakdown["vllm_sleep_copy"] > 4 * 61


# --- calibration -----------------------------------------------------------------------------------------------


def test_host_calibration_is_strict_and_names_the_key():
    data = tomllib.loads(DEFAULT_PATH.read_text())
    assert parse_calibration(data).host == CAL.host
    missing = {**data, "host": {k: v for k, v in data["host"].items() if k != "driver_gib"}}
    with pytest.raises(InputError, match=r"\[host\]: missing keys \['driver_gib'\]"):
        parse_calibration(missing)
    with pytest.raises(InputError, match=r"unknown keys \['typo_gib'\]"):
        parse_calibration({**data, "host": {**data["host"], "typo_gib": 1.0}})
    with pytest.raises(InputError, match=r"\[host\]\.pinned_power_of_two: expected bool, got str"):
        parse_calibration({**data, "host": {**data["host"], "pinned_power_of_two": "yes"}})
    with pytest.raises(InputError, match=r"\[host\]\.vllm_worker_gib: expected float, got bool"):
        parse_calibration({**data, "host": {**data["host"], "vllm_worker_gib": True}})
    with pytest.raises(InputError, match=r"missing table"):
        parse_calibration({k: v for k, v in data.items() if k != "host"})
    assert parse_calibration({**data, "host": {**data["host"], "driver_gib": 2}}).host.driver_gib == 2  # int ok
    text = DEFAULT_PATH.read_text().split("[host]", 1)[1]
    assert "estimate, uncalibrated" in text and "#56410" in text  # provenance beside the numbers


# --- memory validate: host rows --------------------------------------------------------------------------------


def _result(host_peak: float | None, argv: list[str], status: str = "ok") -> Result:
    return Result(
        id="lora32-off_param+optimizer-tp1-rb45", matrix="h100-1gpu-7b", profile="bench", gpu="h100", n_gpus=1,
        model="synthetic:qwen2.5-7b", backend="fsdp", axes={"lora_rank": 32, "offload": "param+optimizer", "tp": 1,
        "rollout_batch": 45}, status=status, peak_memory_gb=[66.0], host_peak_memory_gb=host_peak,
        provenance=Provenance(argv=["python3", "-m", "verl.trainer.main_ppo", *argv]),
    )  # fmt: skip


def test_validate_compares_host_peaks_where_measured():
    from suite.memory.validate import markdown, summarize, validate_results

    predicted = predict_host(settings_from_argv(FITS, model="synthetic:qwen2.5-7b", gpu="h100", n_gpus=1)).peak_gib
    rows = validate_results([("a.json", _result(predicted * 1.05, FITS)), ("b.json", _result(None, FITS))])
    measured, unmeasured = rows
    assert measured.host_predicted_gib == pytest.approx(predicted)
    assert measured.host_error == pytest.approx(1 / 1.05 - 1) and measured.host_measured
    assert unmeasured.host_error is None and not unmeasured.host_measured and unmeasured.host_predicted_gib
    s = summarize(rows)
    assert (s.host_measured, s.host_within, s.host_not_measured) == (1, 1, 1)
    assert s.host_median_error == pytest.approx(1 / 1.05 - 1)
    md = markdown(rows, s)
    assert "| host measured GiB | host predicted GiB | host error |" in md and "not measured" in md
    assert f"{predicted * 1.05:.1f} | {predicted:.1f} | -4.8 %" in md
    assert "host: 1 of 1 measured cells within ±10 %" in md and "1 results not measured" in md
    assert s.goal_met == summarize(rows).goal_met  # the host numbers do not change the GPU goal


def test_validate_cli_json_has_host_rows(tmp_path, capsys):
    from suite.cli import main

    (tmp_path / "a.json").write_text(_result(90.0, FITS).to_json())
    (tmp_path / "b.json").write_text(_result(None, FITS).to_json())
    main(["memory", "validate", str(tmp_path), "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    errors = sorted((r["host_error"] is None, r["host_measured_gib"]) for r in out["rows"])
    assert errors == [(False, 90.0), (True, None)]
    assert out["summary"]["host_measured"] == 1 and out["summary"]["host_not_measured"] == 1


def test_predict_cli_shows_the_host_column_and_json(capsys):
    from suite.cli import main

    assert main(["memory", "predict", str(ROOT / "suite/matrices/h100-1gpu-7b.toml"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    ref_id = "lora32-off_param+optimizer-tp1-rb45-gmu0.3-mnbt1536-graphs-mb15-gc"
    ref = next(r for r in rows if r["full_id"].endswith(ref_id))
    assert ref["predicted_host_memory_gb"] > 0 and ref["host_memory_gb"] == 125 and ref["host_fits"] is True
    assert set(ref["host_phases"]) == {"startup", "steady"} and ref["host_breakdown"]["vllm_sleep_copy"] > 14
    assert main(["memory", "predict", str(ROOT / "suite/matrices/h100-1gpu-7b.toml"), "--format", "markdown"]) == 0
    text = capsys.readouterr().out
    assert "host 125 GiB per node" in text and re.search(r"\|\s+host GiB \|", text)
    assert "predicted host OOM" in text


def test_the_host_prediction_is_carried_into_the_result():
    from suite.results.build import CellInfo, Observation, build_result

    cell = annotate_cells([_cell(FITS, host_memory_gb=125.0)])[0]
    result = build_result(CellInfo.from_cell(cell), Observation(status="skipped", reason="dry run"), Provenance())
    assert result.predicted_host_memory_gb == cell.predicted_host_memory_gb > 0


def test_transfer_queue_actors_follow_the_trainer_and_its_storage_units() -> None:
    # verl 0.9.1's default v1 trainer: a controller and num_data_storage_units (8) storage actors, from the start
    d = settings_from_argv([], model="synthetic:qwen2.5-7b", gpu="h200", n_gpus=1)
    assert (d.use_v1, d.tq_storage_units) == (True, 8)
    counts = process_counts(d)
    assert (counts["tq_storage_unit"], counts["tq_controller"]) == (8, 1)
    p = predict_host(d, RAW)
    startup = next(x for x in p.phases if x.name == "startup") if any(x.name == "startup" for x in p.phases) else None
    tq = (8 * CAL.host.tq_storage_unit_gib + CAL.host.tq_controller_gib) * GIB
    assert process_bytes(counts, CAL) - process_bytes({**counts, "tq_storage_unit": 0, "tq_controller": 0}, CAL) == (
        pytest.approx(tq)
    )
    if startup is not None:  # started before the workers: in the actor-loading phase too
        assert startup.components["processes"] >= tq / GIB
    four = settings_from_argv(
        ["transfer_queue.backend.SimpleStorage.num_data_storage_units=4"],
        model="synthetic:qwen2.5-7b",
        gpu="h200",
        n_gpus=1,
    )
    assert process_counts(four)["tq_storage_unit"] == 4
    v0 = settings_from_argv(["trainer.use_v1=False"], model="synthetic:qwen2.5-7b", gpu="h200", n_gpus=1)
    assert process_counts(v0)["tq_storage_unit"] == process_counts(v0)["tq_controller"] == 0
    assert predict_host(v0, RAW).breakdown["processes"] == pytest.approx(p.breakdown["processes"] - tq / GIB, abs=0.01)
