"""Synthetic results for the report's tests, benchmark and docs (never for baselines): plausible shapes,
seeded, so the report can be exercised before any GPU has run."""

from __future__ import annotations

import random
from pathlib import Path

from suite.results.schema import Accuracy, Provenance, Result, Step, TorchMemory

PROVENANCE = {
    "h100": ("NVIDIA H100 80GB HBM3", "sha256:1f0c" + "0" * 60),
    "h200": ("NVIDIA H200", "sha256:2e7a" + "0" * 60),
    "h20": ("NVIDIA H20", "sha256:3b9d" + "0" * 60),
}
SPEED = {"h100": 1.0, "h200": 1.3, "h20": 0.35, "a100": 0.45, "b200": 2.1}


def make_result(
    *,
    model: str = "qwen2.5-0.5b",
    gpu: str = "h100",
    n_gpus: int = 1,
    backend: str = "fsdp",
    lora_rank: int = 8,
    offload: str = "none",
    tp: int = 1,
    rollout_batch: int = 16,
    status: str = "ok",
    reason: str | None = None,
    steps: int = 10,
    warmup: int = 2,
    seed: int = 0,
    accuracy: tuple[int, int] | None = (600, 1319),
    cell_id: str | None = None,
    reference: str | None = None,
    host_peak_gb: float | None = None,
    predicted_host_gb: float | None = None,
) -> Result:
    rng = random.Random(f"{model}/{gpu}/{n_gpus}/{backend}/{lora_rank}/{offload}/{tp}/{rollout_batch}/{seed}")
    cell = cell_id or f"lora{lora_rank}-off_{offload}-tp{tp}-rb{rollout_batch}"
    full = cell if cell_id else f"{model}/{gpu}x{n_gpus}/{backend}/{cell}"
    base = 900.0 * SPEED.get(gpu, 1.0) * (1 + 0.02 * rollout_batch**0.5) / (1 + 0.15 * (offload != "none"))
    step_list: list[Step] = []
    n_steps = steps if status == "ok" else min(steps, warmup)
    for i in range(1, n_steps + 1):
        warm = 0.6 if i <= warmup else 1.0
        tput = base * warm * rng.uniform(0.96, 1.04)
        t = 40.0 * rollout_batch / 16 / (tput / base)
        gen, ref, old, upd = t * 0.55, t * 0.08, t * 0.07, t * 0.22
        step_list.append(
            Step(
                step=i,
                throughput=tput,
                time_per_step=t,
                response_length_mean=rng.uniform(180, 230),
                timing_s={
                    "gen": gen,
                    "ref": ref,
                    "old_log_prob": old,
                    "update_actor": upd,
                    "reward": 0.4,
                    "adv": 0.05,
                    "step": t,
                },
                torch_max_memory_allocated_gb=20.0 + lora_rank / 16,
            )
        )
    mem = min(30.0 + rollout_batch * 0.8 + (8 - lora_rank / 4) - 10 * (offload != "none"), 79.0)
    name, digest = PROVENANCE.get(gpu, (gpu.upper(), None))
    acc = {}
    acc0 = {}
    if accuracy and status == "ok":
        c, tot = accuracy
        acc = {"gsm8k": Accuracy(correct=max(0, c + rng.randint(-30, 30)), total=tot)}
        acc0 = {"gsm8k": Accuracy(correct=max(0, c // 2 + rng.randint(-20, 20)), total=tot)}
    return Result(
        schema=1,
        id=full,
        matrix="smoke",
        profile="bench",
        gpu=gpu,
        n_gpus=n_gpus,
        model=model,
        backend=backend,
        axes={"lora_rank": lora_rank, "offload": offload, "tp": tp, "rollout_batch": rollout_batch},
        status=status,
        reason=reason,
        steps=step_list,
        warmup_steps=warmup,
        peak_memory_gb=[mem - 0.5 * k for k in range(n_gpus)] if status in ("ok", "oom") else [],
        nvml_sample_hz=10.0,
        torch_memory=TorchMemory(max_memory_allocated_gb=20.0 + lora_rank / 16, max_memory_reserved_gb=24.0),
        accuracy=acc,
        accuracy_initial=acc0,
        predicted_memory_gb=round(mem * 1.05, 1),
        host_peak_memory_gb=host_peak_gb,
        predicted_host_memory_gb=predicted_host_gb,
        reference=reference,
        provenance=Provenance(
            gpu_name=name,
            gpu_count=n_gpus,
            image_digest=digest,
            versions={"torch": "2.11.0", "verl": "0.9.1", "vllm": "0.12.0"},
            start_time="2025-01-01T00:00:00Z",
            end_time="2025-01-01T00:30:00Z",
        ),
    )


def matrix(
    gpus: tuple[str, ...] = ("h100", "h200"),
    models: tuple[str, ...] = ("qwen2.5-0.5b",),
    ranks: tuple[int, ...] = (8, 32),
    offloads: tuple[str, ...] = ("none", "po"),
    batches: tuple[int, ...] = (16, 64),
    steps: int = 10,
    reference: str | None = None,
) -> list[Result]:
    out = []
    for gpu in gpus:
        for model in models:
            for r in ranks:
                for off in offloads:
                    for rb in batches:
                        oom = gpu == "h100" and off == "none" and rb >= 64 and r >= 32
                        out.append(
                            make_result(
                                model=model,
                                gpu=gpu,
                                lora_rank=r,
                                offload=off,
                                rollout_batch=rb,
                                steps=steps,
                                status="oom" if oom else "ok",
                                reason="torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.1 GiB"
                                if oom
                                else None,
                                reference=reference,
                            )
                        )
    return out


def promoted_store(folder: Path) -> Path:
    """`folder / "baselines"`: the ok cells of a one-generation synthetic matrix, promoted as the gate promotes."""
    from suite.gate.store import promote

    store = folder / "baselines"
    ok = [(folder / f"{i}.json", r) for i, r in enumerate(matrix(gpus=("h100",))) if r.status == "ok"]
    promote(ok, store, allow_failed=False, min_samples=5)
    return store
