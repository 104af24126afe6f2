"""How far two bf16 forward passes of a synthetic stand-in drift apart, on CPU: the test of whether the 14B
bf16-actor run's failed rollout/actor sentinel (Pearson 0.56 where every 7B run read > 0.99) comes from the
random weights or from what the run computed.

    python benchmarks/standin_numerics.py [--models qwen2.5-7b,qwen2.5-14b] [--streams bf16,bf16-flex]
        [--prompt 187] [--response 1024] [--out DIR]     # ~25 min on 2 cores for 0.5B-32B, all streams

Each model is the exact architecture of `synthetic:<key>` with the stand-in's weights (suite/models/weights.py:
N(0, 0.02) bf16, norms ones, biases zeros, seeded by tensor name; CPU generator, so not the GPU hosts' bytes),
built one decoder layer at a time so that a 32B model needs one layer of memory. One random sequence of the
seed's shape (187 prompt tokens, the runs' real prompt length, and 1024 response tokens, positions from 0 as
verl's padding removal numbers them) runs through transformers' own Qwen2 decoder layers in streams that see
the same weights:

- `fp32`: weights and activations in fp32, SDPA attention (the reference);
- `bf16`: bf16 weights and activations, SDPA: what vLLM computes in (bf16, RoPE angles from fp32 frequencies);
- `bf16-eager`: the same with transformers' eager attention: another summation order, the kind of difference
  two engines' kernels have;
- `bf16-flex`: flex attention (a causal BlockMask): the trainer of the runs with verl's default fp32 actor,
  which FSDP's mixed precision runs in bf16 with its fp32 RoPE buffer (on CPU torch compiles flex attention to
  C++, not to the GPU's Triton kernel: the same maths, not the same code);
- `bf16-flex-rope16`: the same with RoPE's `inv_freq` buffer in bf16: the trainer with
  `fsdp_config.model_dtype=bf16`, where verl 0.9.1 calls `module.to(bf16)` after loading
  (workers/engine/fsdp/transformer_impl.py `_build_module`), which casts floating buffers too, and FSDP2 has no
  buffer dtype to undo it. A bf16 frequency is off by up to 2^-9 of itself, so its angle at position p is off by
  p times that: radians by a few hundred tokens.

At every `--every` layers (and the last) the final norm and LM head turn each stream's hidden states at the
response's positions into next-token distributions. For a pair (A, B), A playing the rollout, over one token
sampled from A at each position: the Pearson correlation of their probabilities and the mean absolute difference
(verl's `training/rollout_actor_probs_pearson_corr` and `rollout_probs_diff_mean`), the mean of log pA - log pB
(verl's `rollout_corr/kl`), the full-vocabulary KL(A || B), and A's and B's log-perplexity of those tokens
(`rollout_corr/rollout_log_ppl`, `training_log_ppl`); per layer, the hidden states' RMS and the distance
|hA - hB| / |hA|."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from suite.models.archs import Arch
from suite.models.build import synthetic_arch


@dataclass(frozen=True)
class Stream:
    dtype: str  # weights and activations
    attn: str  # transformers' attention implementation
    rope: str = "float32"  # the rotary embedding's inv_freq buffer


STREAMS: dict[str, Stream] = {
    "fp32": Stream("float32", "sdpa"),
    "bf16": Stream("bfloat16", "sdpa"),
    "bf16-eager": Stream("bfloat16", "eager"),
    "bf16-flex": Stream("bfloat16", "flex_attention"),
    # verl 0.9.1 with fsdp_config.model_dtype=bf16: `module.to(bf16)` after loading casts every floating buffer,
    # RoPE's inv_freq too (FSDP2 has no buffer dtype to put it back)
    "bf16-flex-rope16": Stream("bfloat16", "flex_attention", rope="bfloat16"),
}
# (A, B): A plays vLLM's rollout, B the trainer
PAIRS = (("bf16", "bf16-eager"), ("bf16", "bf16-flex"), ("bf16", "bf16-flex-rope16"), ("bf16", "fp32"))
DEFAULT_MODELS = ("qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b")


def _config(arch: Arch, attn: str) -> Any:
    from transformers import AutoConfig

    config = AutoConfig.for_model(**arch.hf_config())
    config._attn_implementation = attn
    return config


def _weights(specs: list[Any], prefix: str, seed: int, std: float) -> dict[str, Any]:
    """The stand-in's bf16 tensors whose names start with `prefix`, keyed by the rest of the name."""
    from suite.models import weights

    mine = [s for s in specs if s.name.startswith(prefix)]
    return {s.name[len(prefix) :]: weights.make_tensor(s, seed=seed, std=std, device="cpu") for s in mine}


def _causal_mask(attn: str, tokens: int, dtype: Any) -> Any:
    import torch

    if attn == "flex_attention":  # transformers passes a BlockMask straight to flex_attention
        from torch.nn.attention.flex_attention import create_block_mask

        return create_block_mask(lambda b, h, q, kv: q >= kv, 1, 1, tokens, tokens, device="cpu")
    return torch.full((tokens, tokens), torch.finfo(dtype).min, dtype=dtype).triu(1)[None, None]


def _rotary(rotary: Any, dtype: str) -> Any:
    import torch

    rotary.inv_freq = rotary.inv_freq.to(getattr(torch, dtype))
    return rotary


def _pair_metrics(logp_a: Any, logp_b: Any, gen: Any) -> dict[str, float]:
    import torch

    tok = torch.multinomial(logp_a.exp(), 1, generator=gen).squeeze(1)
    la = logp_a.gather(1, tok[:, None]).squeeze(1)
    lb = logp_b.gather(1, tok[:, None]).squeeze(1)
    pa, pb = la.exp(), lb.exp()
    pearson = torch.corrcoef(torch.stack([pa, pb]))[0, 1].item()
    kl_full = (logp_a.exp() * (logp_a - logp_b)).sum(1).mean().item()
    return {
        "pearson": round(pearson, 5),
        "probs_diff_mean": float(f"{(pa - pb).abs().mean().item():.4g}"),
        "log_ratio_mean": round((la - lb).mean().item(), 5),
        "kl_full": round(kl_full, 5),
        "log_ppl_a": round(-la.mean().item(), 4),
        "log_ppl_b": round(-lb.mean().item(), 4),
    }


def probe(
    arch: Arch, *, prompt: int, response: int, every: int, seed: int, streams: tuple[str, ...] = tuple(STREAMS)
) -> dict[str, Any]:
    """One model's streams over a sequence of `prompt` + `response` tokens, layer by layer, scored on the
    response's positions; see the module's docstring."""
    import torch
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RMSNorm, Qwen2RotaryEmbedding

    from suite.models.weights import tensor_specs

    t0 = time.perf_counter()
    chosen = {name: STREAMS[name] for name in streams}
    pairs = [(a, b) for a, b in PAIRS if a in chosen and b in chosen]
    configs = {name: _config(arch, st.attn) for name, st in chosen.items()}
    dtypes = {name: getattr(torch, st.dtype) for name, st in chosen.items()}
    config = _config(arch, "sdpa")
    tokens = prompt + response
    specs, std = tensor_specs(config), float(config.initializer_range)
    n_layers = int(config.num_hidden_layers)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 151643, (1, tokens), generator=gen)  # below the special tokens
    pos = torch.arange(tokens)[None]
    emb = _weights(specs, "model.embed_tokens.", seed, std)["weight"]
    head = emb if config.tie_word_embeddings else _weights(specs, "lm_head.", seed, std)["weight"]
    final_norm = _weights(specs, "model.norm.", seed, std)["weight"]
    rotary = {name: _rotary(Qwen2RotaryEmbedding(config), st.rope) for name, st in chosen.items()}
    h = {name: emb[ids].to(dt_) for name, dt_ in dtypes.items()}
    masks = {name: _causal_mask(st.attn, tokens, dtypes[name]) for name, st in chosen.items()}
    layers_out: list[dict[str, Any]] = []
    probes: list[dict[str, Any]] = []

    def lens(depth: int) -> None:
        logp = {}
        for name, dt_ in dtypes.items():
            norm = Qwen2RMSNorm(config.hidden_size, eps=config.rms_norm_eps).to(dt_)
            norm.weight.data.copy_(final_norm.to(dt_))
            with torch.no_grad():
                logits = norm(h[name])[0, prompt:] @ head.to(dt_).T
            logp[name] = torch.log_softmax(logits.float(), dim=-1)
        row: dict[str, Any] = {"layers": depth}
        for a, b in pairs:
            row[f"{a}|{b}"] = _pair_metrics(logp[a], logp[b], torch.Generator().manual_seed(seed + depth))
        probes.append(row)

    for i in range(n_layers):
        w = _weights(specs, f"model.layers.{i}.", seed, std)
        for name, dt_ in dtypes.items():
            with torch.device("meta"):
                layer = Qwen2DecoderLayer(configs[name], layer_idx=i)
            layer = layer.to_empty(device="cpu").to(dt_)
            layer.load_state_dict({k: v.to(dt_) for k, v in w.items()}, strict=True)
            with torch.no_grad():
                cos_sin = rotary[name](h[name], pos)
                out = layer(h[name], attention_mask=masks[name], position_ids=pos, position_embeddings=cos_sin)
            h[name] = out[0] if isinstance(out, tuple) else out
            del layer
        layers_out.append(
            {
                "layer": i + 1,
                "rms": {name: round(v.float().pow(2).mean().sqrt().item(), 4) for name, v in h.items()},
                "rel_dist": {
                    f"{a}|{b}": round(((h[a].float() - h[b].float()).norm() / h[a].float().norm()).item(), 5)
                    for a, b in pairs
                },
            }
        )
        if (i + 1) % every == 0 or i + 1 == n_layers:
            lens(i + 1)
    return {
        "model": f"synthetic:{arch.key}",
        "layers": n_layers,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "prompt_tokens": prompt,
        "response_tokens": response,
        "seconds": round(time.perf_counter() - t0, 1),
        "final": probes[-1],
        "probes": probes,
        "per_layer": layers_out,
    }


def provenance() -> dict[str, Any]:
    import torch
    import transformers

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    from activation_probe import _cpu_model  # beside this script

    cpu = _cpu_model()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": f"{cpu}, {torch.get_num_threads()} threads",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "suite_commit": commit,
        "argv": sys.argv[1:],
    }


def choice_list(ap: argparse.ArgumentParser, option: str, value: str, allowed: Sequence[str]) -> tuple[str, ...]:
    """A comma-separated option's values; any not in `allowed` ends the script with both named."""
    values = tuple(x.strip() for x in value.split(","))
    unknown = [x for x in values if x not in allowed]
    if unknown:
        ap.error(f"{option}: unknown {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return values


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        "| model | layers | hidden | pair | Pearson | probs diff mean | log-ratio mean | KL full | log-ppl A / B |",
        "|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for m in doc["models"]:
        for a, b in PAIRS:
            r = m["final"].get(f"{a}|{b}")
            if r is None:
                continue
            lines.append(
                f"| {m['model']} | {m['layers']} | {m['hidden_size']} | {a} vs {b} | {r['pearson']:.4f} | "
                f"{r['probs_diff_mean']:.3g} | {r['log_ratio_mean']:.4f} | {r['kl_full']:.4f} | "
                f"{r['log_ppl_a']:.2f} / {r['log_ppl_b']:.2f} |"
            )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--prompt", type=int, default=187, help="prompt tokens (the seed runs' real prompt length)")
    ap.add_argument("--response", type=int, default=1024, help="response tokens: the positions scored")
    ap.add_argument("--streams", default=",".join(STREAMS), help=f"of {', '.join(STREAMS)}")
    ap.add_argument("--every", type=int, default=4, help="apply the LM head every N layers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    streams = choice_list(ap, "--streams", args.streams, STREAMS)
    models = []
    for key in args.models.split(","):
        m = probe(
            synthetic_arch(f"synthetic:{key.strip()}"),
            prompt=args.prompt,
            response=args.response,
            every=args.every,
            seed=args.seed,
            streams=streams,
        )
        pearson = ", ".join(f"{k} {v['pearson']}" for k, v in m["final"].items() if k != "layers")
        print(f"{m['model']}: {m['layers']} layers, {m['seconds']} s; Pearson {pearson}", flush=True)
        models.append(m)
    doc = {"provenance": provenance(), "streams": {n: asdict(STREAMS[n]) for n in streams}, "models": models}
    print(markdown(doc))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "standin-numerics.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
