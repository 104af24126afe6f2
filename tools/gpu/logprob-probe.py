"""On the GPU host: what verl 0.9.1's log-prob step costs at the seed's shape, against the same maths vectorised.
verl's `logprobs_from_logits` loops in Python once per token where flash-attn's cross entropy is missing; this
times it on one micro batch's logits of the 7B cells (Qwen2.5 vocabulary, bf16), forward-only (the old log-prob
and ref passes) and forward + backward (the update), and scales both to a step of the seed's shape.
  python3 tools/gpu/logprob-probe.py [--device cuda] [--vocab 152064] [--tokens-per-seq 1119] [--repeats 3]
Prints one JSON line per measurement, then one summary line (what verl's path and the vectorised one cost a step).
Run it a second time with flash-attn's Python files on the path (a wheel built with FLASH_ATTENTION_SKIP_CUDA_BUILD)
and FLASH_ATTENTION_TRITON_AMD_ENABLE=TRUE, which lets `import flash_attn` skip its CUDA module: verl then takes
flash-attn's Triton cross entropy, and `flash_attn_cross_entropy` in every row says whether it did."""

from __future__ import annotations

import argparse
import json
import time


def timed(fn, sync, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    sync()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        runs.append(time.perf_counter() - t0)
    return sorted(runs)[len(runs) // 2]


def step_seconds(per_pass: dict[str, float], *, seqs: int, lp_micro: int, upd_micro: int) -> float:
    """One step's log-prob work from per-micro-batch seconds: the old log-prob and ref passes (forward, one
    log-prob micro batch at a time) and the update (forward + backward, one update micro batch at a time)."""
    return 2 * (seqs // lp_micro) * per_pass["forward"] + (seqs // upd_micro) * per_pass["forward_backward"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--vocab", type=int, default=152064)  # Qwen2.5-7B/14B's padded vocabulary (lm_head rows)
    ap.add_argument("--tokens-per-seq", type=int, default=1119)  # measured: ~95 prompt + 1024 response tokens
    ap.add_argument("--seqs", type=int, default=225)  # 45 prompts x 5 responses
    ap.add_argument("--lp-micro", type=int, default=15)  # log_prob_micro_batch_size_per_gpu of the 7B cells
    ap.add_argument("--upd-micro", type=int, default=5)  # ppo_micro_batch_size_per_gpu of the no-offload cells
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import torch
    from verl.utils import torch_functional as verl_F

    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def vectorised(logits, labels):
        return torch.log_softmax(logits.float(), -1).gather(-1, labels[:, None])[:, 0]

    def max_abs_diff(logits, labels) -> float:
        """How far verl's path is from the float32 maths on these logits (bf16 rounding is ~1e-2 at most)."""
        with torch.no_grad():
            got = verl_F.logprobs_from_logits(logits, labels).float()
            return float((got - vectorised(logits, labels)).abs().max())

    paths = {"verl": verl_F.logprobs_from_logits, "vectorised": vectorised}
    common = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "flash_attn_cross_entropy": verl_F.FLAH_ATTN_CROSS_ENTROPY_LOSS_AVAILABLE,
        "vocab": args.vocab,
    }
    per: dict[str, dict[str, float]] = {name: {} for name in paths}
    gen = torch.Generator(device=dev).manual_seed(0)
    for kind, micro in (("forward", args.lp_micro), ("forward_backward", args.upd_micro)):
        tokens = micro * args.tokens_per_seq
        logits = torch.randn(tokens, args.vocab, device=dev, generator=gen).to(torch.bfloat16)
        labels = torch.randint(0, args.vocab, (tokens,), device=dev, generator=gen)
        diff = round(max_abs_diff(logits, labels), 5)
        for name, fn in paths.items():
            if kind == "forward":

                def call(fn=fn, logits=logits, labels=labels):
                    with torch.no_grad():
                        fn(logits, labels)
            else:
                leaf = logits.detach().requires_grad_(True)

                def call(fn=fn, leaf=leaf, labels=labels):
                    fn(leaf, labels).sum().backward()
                    leaf.grad = None

            s = timed(call, sync, args.repeats)
            per[name][kind] = s
            row = {**common, "path": name, "pass": kind, "tokens": tokens, "seconds": round(s, 4)}
            if name == "verl":
                row["max_abs_diff"] = diff
            print(json.dumps(row), flush=True)
    shape = {"seqs": args.seqs, "lp_micro": args.lp_micro, "upd_micro": args.upd_micro}
    summary = {
        **common,
        **shape,
        "tokens_per_seq": args.tokens_per_seq,
        "verl_step_s": round(step_seconds(per["verl"], **shape), 2),
        "vectorised_step_s": round(step_seconds(per["vectorised"], **shape), 2),
    }
    print(json.dumps({"summary": summary}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
