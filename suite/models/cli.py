"""`grpo-suite model ...`: build or import the checkpoints cells run on."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="build synthetic checkpoints, the offline tokenizer, or import GGUF models")
    msub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    b = msub.add_parser("build", help="build synthetic:<arch> (exact architecture, random bf16 weights)")
    b.add_argument("model", help="e.g. synthetic:qwen2.5-0.5b")
    b.add_argument("--out", help="output directory (default: the cache path plan/run use)")
    b.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    b.add_argument("--seed", type=int, default=0)
    b.add_argument(
        "--workers", type=int, default=None, help="shards generated and written at once (default: 2 per GPU, 2 on CPU)"
    )
    b.set_defaults(func=_build)

    t = msub.add_parser("tokenizer", help="build the offline Qwen2.5 tokenizer into the cache")
    t.set_defaults(func=_tokenizer)

    g = msub.add_parser("import-gguf", help="dequantise a GGUF checkpoint into a bf16 Hugging Face checkpoint")
    g.add_argument("gguf")
    g.add_argument("--out", required=True)
    g.set_defaults(func=_import)

    ls = msub.add_parser("list", help="list the architectures `synthetic:` accepts")
    ls.set_defaults(func=_list)


def _print(report) -> int:
    print(json.dumps(report.__dict__, indent=2))
    return 0


def _build(args: argparse.Namespace) -> int:
    from suite.models.build import build_synthetic

    if args.workers is not None and args.workers < 1:
        from suite.errors import InputError

        raise InputError(f"bad value {args.workers}; allowed: an integer >= 1", field="--workers")
    return _print(build_synthetic(args.model, args.out, device=args.device, seed=args.seed, workers=args.workers))


def _tokenizer(args: argparse.Namespace) -> int:
    from suite.models.build import ensure_tokenizer

    print(ensure_tokenizer())
    return 0


def _import(args: argparse.Namespace) -> int:
    from suite.models.build import import_gguf

    return _print(import_gguf(args.gguf, args.out))


def _list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from suite.models.archs import ARCHS

    rows = [
        (f"synthetic:{a.key}" if a.model_type == "qwen2" else "-", a.hf_id, f"{a.num_parameters / 1e9:.2f}B",
         a.num_hidden_layers, a.hidden_size, a.num_attention_heads, a.num_key_value_heads)
        for a in ARCHS.values()
    ]  # fmt: skip
    print(tabulate(rows, headers=["model", "copies", "params", "layers", "hidden", "heads", "kv heads"]))
    return 0
