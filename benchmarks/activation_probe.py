"""Measure, on CPU, the two training-memory terms of the planner that do not depend on the GPU: the bytes a
Qwen2 decoder layer saves for backward per token (transformers + peft, bf16, SDPA), and how many logits-sized
tensors verl 0.9.1's log-prob code keeps alive at once (the path taken without flash-attn).

    python benchmarks/activation_probe.py [--out DIR]     # ~2 min on 2 cores; writes DIR/activation-probe.json
    python benchmarks/activation_probe.py --device cuda [--out DIR]   # the logits rows on a GPU (~20 s)

Layers: every tensor autograd saves in the forward pass is seen through `saved_tensors_hooks` and counted once
per storage (parameters and buffers excluded); the per-layer bytes per token are the difference between a
3-layer and a 2-layer model. Sizes of saved tensors are what the graph asks for, the same on CPU and GPU, and
SDPA's fused kernels save q, k, v, the output and the log-sum-exp on both. Fits by least squares over several
shapes give the coefficients of hidden (h), KV width (kv), intermediate (i) and LoRA rank (r).

Logits: verl's `logprobs_from_logits` (+ `entropy_from_logits` where verl asks for entropy) on a bf16
(tokens x vocab) tensor from a frozen projection, forward and backward, in a fresh process under torch's
profiler, which records every allocation and free: the peak of live bytes, logits included, in units of one
bf16 logits tensor. Those are the tensors of the autograd graph and of verl's row-wise loop, which a GPU
allocates too (its kernels' scratch space aside).

`--device cuda`: the logits rows only, on the GPU, under `torch.autocast("cuda", bfloat16)` as verl 0.9.1's
FSDP engine runs them (workers/engine/fsdp/transformer_impl.py `forward_step` wraps the model and
`prepare_model_outputs`, entropy and log-probs included, in autocast; CUDA autocast runs softmax, sum and
log_softmax in fp32, which the CPU rows, run without autocast, do not see). Peaks are torch's
`max_memory_allocated` above what was allocated before, in the same units, once with flash-attn's Triton cross
entropy where it is importable and once with verl's own path (`VERL_DISABLE_FLASH_ATTN_CE=1`)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

SEQ, BATCH = 64, 2
SHAPES = [  # (hidden, intermediate, heads, kv heads): independent enough to separate h, kv and i
    (256, 768, 8, 2),
    (512, 768, 8, 2),
    (256, 1536, 8, 2),
    (256, 768, 8, 4),
    (384, 1024, 12, 2),
    (512, 2048, 16, 4),
]
RANKS = (8, 32)
LOGITS_TOKENS, LOGITS_VOCAB = 512, 152064  # the peaks are exact multiples from 512 to 2048 tokens
LOGITS_MODES = {
    "old_log_prob": "no grad, entropy (verl computes it for the actor's old log-probs)",
    "ref_log_prob": "no grad, no entropy",
    "update": "forward + backward, no entropy (entropy_coeff 0)",
    "update_entropy": "forward + backward with entropy (entropy_coeff != 0)",
}


def saved_bytes(h: int, i: int, heads: int, kv_heads: int, layers: int, *, rank: int, masked: bool) -> int:
    import peft
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(
        vocab_size=512,
        hidden_size=h,
        intermediate_size=i,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=4 * SEQ,
        tie_word_embeddings=False,
    )
    model: Any = transformers.Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    model.set_attn_implementation("sdpa")
    if rank:
        # bf16 adapters, as under verl's FSDP mixed precision (param_dtype bf16): peft's fp32 default would save a
        # cast fp32 copy of every adapter input
        lora = peft.LoraConfig(r=rank, lora_alpha=rank, target_modules="all-linear")
        model = peft.get_peft_model(model, lora).to(torch.bfloat16)
    model.train()
    ids = torch.randint(0, 512, (BATCH, SEQ))
    mask = torch.ones(BATCH, SEQ, dtype=torch.long)
    if masked:  # padding makes transformers build a 4-D mask, and SDPA then needs k, v repeated to every head
        mask[:, :3] = 0
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in own:
            storages[ptr] = max(storages.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
    return sum(storages.values())


def layer_rows() -> list[dict[str, Any]]:
    rows = []
    for h, i, heads, kvh in SHAPES:
        for rank in (0, *RANKS):
            for masked in (False, True):
                per = saved_bytes(h, i, heads, kvh, 3, rank=rank, masked=masked) - saved_bytes(
                    h, i, heads, kvh, 2, rank=rank, masked=masked
                )
                kv = kvh * h // heads
                rows.append(dict(h=h, kv=kv, i=i, rank=rank, masked=masked, bytes_per_token=per / (BATCH * SEQ)))
    return rows


def fit(rows: list[dict[str, Any]]) -> dict[str, float]:
    cols = ["h", "kv", "i"] + (["rank"] if rows[0]["rank"] else [])
    a = np.array([[r[c] for c in cols] for r in rows], float)
    y = np.array([r["bytes_per_token"] for r in rows])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    out = {c: round(float(v), 3) for c, v in zip(cols, coef, strict=True)}
    out["max_residual_bytes"] = round(float(np.abs(a @ coef - y).max()), 3)
    return out


def layer_fits(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    fits = {}
    for lora in (False, True):
        for masked in (False, True):
            group = [r for r in rows if (r["rank"] > 0) == lora and r["masked"] == masked]
            fits[f"{'lora' if lora else 'full'}-{'masked' if masked else 'packed'}"] = fit(group)
    return fits


# One logits phase as verl 0.9.1 runs it (temperature 1: verl skips the scaling; the lm_head is frozen, as a LoRA
# actor's), shared by the CPU and the CUDA child so that both measure the same tensors.
_LOGITS_PHASE = r"""
def phase_inputs(mode, layout, tokens, vocab, device):
    torch.manual_seed(0)
    rows = 4 if layout == "padded" else 1  # padded: 4 sequences of one length, as verl's (bsz, seq) batch
    x = torch.randn(rows, tokens // rows, 16, dtype=torch.bfloat16, device=device, requires_grad=mode.startswith("update"))
    w = torch.randn(vocab, 16, dtype=torch.bfloat16, device=device)
    # a token count that 4 does not divide (the 7B cells' 15 x 1211) keeps whole rows: one label per row position
    return x, w, torch.randint(0, vocab, (rows * (tokens // rows),), device=device)


# the inputs are made before the measured window (phase_inputs): only the phase's own tensors count
def logits_phase(mode, layout, x, w, labels, entropy_of):
    grad = mode.startswith("update")
    rows, tokens = x.shape[0], labels.shape[0]
    with torch.set_grad_enabled(grad):
        logits = x @ w.T
        entropy = mode in ("old_log_prob", "update_entropy")
        ent = entropy_of(logits).sum() if entropy else 0
        if layout == "padded":  # verl's use_remove_padding=False branch: narrow, then concatenate
            lengths = torch.full((rows,), x.shape[1], device=x.device)
            nested = torch.nested.narrow(logits, 1, torch.zeros_like(lengths), lengths, layout=torch.jagged)
            flat = torch.cat(list(nested.unbind()))
        else:
            flat = logits[0]
        lp = F.logprobs_from_logits(flat, labels, inplace_backward=not entropy)
        loss = lp.sum() + ent
    if grad:
        del lp
        loss.backward()
"""

_LOGITS_CHILD = (
    r"""
import sys, torch
from torch.profiler import ProfilerActivity, profile
from verl.utils import torch_functional as F
mode, layout, tokens, vocab = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
"""
    + _LOGITS_PHASE
    + r"""
inputs = phase_inputs(mode, layout, tokens, vocab, "cpu")
with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
    logits_phase(mode, layout, *inputs, F.entropy_from_logits)
events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns())
live = peak = 0
for e in events:  # every allocation and free of the CPU allocator, in order
    live += e.nbytes()
    peak = max(peak, live)
print(F.FLAH_ATTN_CROSS_ENTROPY_LOSS_AVAILABLE, peak / (tokens * vocab * 2))
"""
)


_LOGITS_CUDA_CHILD = (
    r"""
import json, os, sys, traceback, torch
from verl.utils import torch_functional as F
tokens, vocab = int(sys.argv[1]), int(sys.argv[2])
unit = tokens * vocab * 2
"""
    + _LOGITS_PHASE
    + r"""
# peak bytes allocated above the start, over one logits phase under verl's CUDA autocast
def measure(mode, layout, entropy_of):
    inputs = phase_inputs(mode, layout, tokens, vocab, "cuda")
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits_phase(mode, layout, *inputs, entropy_of)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


rows_out = []
paths = ["flash_attn", "verl"] if F.FLAH_ATTN_CROSS_ENTROPY_LOSS_AVAILABLE else ["verl"]
# verl's FSDP engine compiles entropy_from_logits (dynamic=True) on the remove-padding path when
# use_torch_compile is on (its default) and calls it eagerly on the padded path
compiled_entropy = torch.compile(F.entropy_from_logits, dynamic=True)
for path in paths:
    os.environ["VERL_DISABLE_FLASH_ATTN_CE"] = "0" if path == "flash_attn" else "1"
    for layout, entropy_fn in (("packed", "eager"), ("packed", "compiled"), ("padded", "eager")):
        for mode in sys.argv[3:]:
            entropy = mode in ("old_log_prob", "update_entropy")
            if entropy_fn == "compiled" and not entropy:
                continue
            row = dict(mode=mode, layout=layout, cross_entropy=path, entropy_fn=entropy_fn if entropy else None)
            entropy_of = compiled_entropy if entropy_fn == "compiled" else F.entropy_from_logits
            try:
                # a compiled entropy compiles (forward and backward) in a first, unmeasured call of the same shapes
                for _ in range(2 if entropy_fn == "compiled" else 1):
                    row["peak_units"] = round(measure(mode, layout, entropy_of) / unit, 3)
            except Exception as e:  # one row failing (e.g. out of memory at a large size) keeps the others
                row.pop("peak_units", None)
                row["error"] = f"{type(e).__name__}: {e}"[:300]
                traceback.print_exc(file=sys.stderr)
            rows_out.append(row)
            torch.cuda.empty_cache()
print(json.dumps({"gpu": torch.cuda.get_device_name(), "rows": rows_out}))
"""
)


def logits_rows_cuda(tokens: int) -> tuple[str, list[dict[str, Any]]]:
    cmd = [sys.executable, "-c", _LOGITS_CUDA_CHILD, str(tokens), str(LOGITS_VOCAB), *LOGITS_MODES]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    return out["gpu"], [dict(r, what=LOGITS_MODES[r["mode"]], tokens=tokens) for r in out["rows"]]


def logits_rows() -> list[dict[str, Any]]:
    rows = []
    for layout in ("packed", "padded"):
        for mode, what in LOGITS_MODES.items():
            cmd = [sys.executable, "-c", _LOGITS_CHILD, mode, layout, str(LOGITS_TOKENS), str(LOGITS_VOCAB)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
            if out[-2] == "True":
                raise SystemExit("flash-attn's cross entropy is importable: this probe measures the path without it")
            rows.append(dict(mode=mode, layout=layout, what=what, peak_units=round(float(out[-1]), 3)))
    return rows


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


def provenance() -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": {
            "machine": platform.machine(),
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "versions": {p: version(p) for p in ("torch", "transformers", "peft", "verl")},
        "seq": SEQ,
        "batch": BATCH,
        "logits_tokens": LOGITS_TOKENS,
        "logits_vocab": LOGITS_VOCAB,
    }


def markdown(doc: dict[str, Any]) -> str:
    lines = ["| layer case | h | kv | i | rank | max residual (B) |", "|---|---:|---:|---:|---:|---:|"]
    for case, f in doc["layer_fits"].items():
        lines.append(
            f"| {case} | {f['h']:.2f} | {f['kv']:.2f} | {f['i']:.2f} | {f.get('rank', 0):.2f} "
            f"| {f['max_residual_bytes']:.1f} |"
        )
    lines += ["", "| logits phase | layout | what | peak (x one bf16 logits tensor) |", "|---|---|---|---:|"]
    for r in doc["logits"]:
        lines.append(f"| {r['mode']} | {r['layout']} | {r['what']} | {r['peak_units']:.2f} |")
    return "\n".join(lines)


def markdown_cuda(doc: dict[str, Any]) -> str:
    lines = [
        f"logits on {doc['gpu']} under CUDA autocast (bf16), {doc['tokens']} tokens:",
        "",
        "| logits phase | layout | cross entropy | entropy | what | peak (x one bf16 logits tensor) |",
        "|---|---|---|---|---|---:|",
    ]
    for r in doc["logits"]:
        peak = f"{r['peak_units']:.2f}" if "peak_units" in r else f"failed: {r['error']}"
        ent = r.get("entropy_fn") or "-"
        lines.append(f"| {r['mode']} | {r['layout']} | {r['cross_entropy']} | {ent} | {r['what']} | {peak} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="folder for activation-probe.json (default: print only)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: the logits rows on a GPU")
    ap.add_argument("--tokens", type=int, default=4096, help="logits rows with --device cuda (default 4096)")
    args = ap.parse_args()
    if args.device == "cuda":
        gpu, rows = logits_rows_cuda(args.tokens)
        doc = {"provenance": provenance(), "gpu": gpu, "tokens": args.tokens, "autocast": "bf16", "logits": rows}
        print(markdown_cuda(doc))
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "activation-probe-cuda.json").write_text(json.dumps(doc, indent=1) + "\n")
        return 0
    rows = layer_rows()
    doc = {"provenance": provenance(), "layer_fits": layer_fits(rows), "layers": rows, "logits": logits_rows()}
    print(markdown(doc))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "activation-probe.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
