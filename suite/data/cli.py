"""`grpo-suite data gsm8k`: write verl's GSM8K parquet files."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="prepare datasets in verl's parquet layout")
    dsub = p.add_subparsers(dest="data_command", metavar="DATASET", required=True)
    g = dsub.add_parser("gsm8k", help="GSM8K train/test parquet (openai/gsm8k, a local copy, or --offline)")
    g.add_argument("--out", required=True, help="directory for train.parquet and test.parquet")
    g.add_argument("--source", default="openai/gsm8k", help="hub id or a local directory of train/test files")
    g.add_argument("--offline", action="store_true", help="generate GSM8K-style problems (reasoning-gym)")
    g.add_argument("--train-size", type=int, default=2000, help="--offline only")
    g.add_argument("--test-size", type=int, default=256, help="--offline only")
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=_gsm8k)


def _gsm8k(args: argparse.Namespace) -> int:
    from suite.data import gsm8k

    if args.offline:
        splits = gsm8k.offline_gsm8k(args.train_size, args.test_size, args.seed)
    else:
        splits = gsm8k.load_gsm8k(args.source)
    counts = gsm8k.write_gsm8k(args.out, splits)
    for split, n in counts.items():
        print(f"{args.out}/{split}.parquet: {n} rows")
    return 0
