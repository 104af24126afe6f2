"""What loading a checkpoint the way verl's FSDP engine does costs in host RAM, by model dtype, on CPU: the
measurement behind the host planner's start-up phase (suite/memory/host.py `model_load`).

    python benchmarks/load_rss.py DIR [--dtypes fp32,bf16] [--out OUT]   # DIR: `grpo-suite model build` output

Each dtype runs in a child process of its own (so one load's pages never count in the next): after the imports
it samples its own /proc/self/status (VmRSS, RssAnon, RssFile) every 5 ms while
`AutoModelForCausalLM.from_pretrained(DIR, dtype=...)` runs and then `module.to(dtype)` (verl 0.9.1
`_build_module`), and reports the peak and the after-load increase over the post-import level, per parameter.
The checkpoint's safetensors are read through mmap: pages count in RssFile once touched. transformers 5 keeps
the file's tensors where the dtype is the file's (no copy until something reads them), and copies them where it
is not."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

DTYPES = ("fp32", "bf16")
KEYS = ("VmRSS", "RssAnon", "RssFile")
GIB = 2**30

CHILD = r"""
import json, sys, threading, time

def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in KEYS:
                out[key] = int(value.split()[0]) * 1024
    return out

import torch, transformers

KEYS = %(keys)r
path, name = sys.argv[1], sys.argv[2]
dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
base = status()
peak = dict(base)
done = threading.Event()

def sample():
    while not done.is_set():
        for k, v in status().items():
            peak[k] = max(peak[k], v)
        time.sleep(0.005)

t = threading.Thread(target=sample, daemon=True)
t.start()
model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
loaded = status()
model = model.to(dtype)
cast = status()
done.set()
t.join()
for k, v in cast.items():
    peak[k] = max(peak[k], v)
print(json.dumps({"base": base, "peak": peak, "loaded": loaded, "cast": cast,
                  "parameters": sum(p.numel() for p in model.parameters())}))
"""


def measure(checkpoint: Path, dtype: str) -> dict[str, Any]:
    """One dtype's load in a fresh interpreter: bytes per parameter over the post-import RSS, and GiB."""
    code = CHILD % {"keys": KEYS}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(checkpoint), dtype], capture_output=True, text=True, check=True
    )
    raw = json.loads(proc.stdout.strip().splitlines()[-1])
    n = raw["parameters"]
    out: dict[str, Any] = {"dtype": dtype, "parameters": n, "base_rss_gib": round(raw["base"]["VmRSS"] / GIB, 3)}
    for when in ("peak", "loaded", "cast"):
        out[when] = {
            k: {
                "gib": round((raw[when][k] - raw["base"][k]) / GIB, 3),
                "bytes_per_parameter": round((raw[when][k] - raw["base"][k]) / n, 3),
            }
            for k in KEYS
        }
    return out


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        "| dtype | parameters | peak RSS GiB (bytes/param) | of it file-backed | after from_pretrained | after .to() |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in doc["loads"]:
        pk, ld, ca = r["peak"], r["loaded"], r["cast"]
        lines.append(
            f"| {r['dtype']} | {r['parameters']:,} | {pk['VmRSS']['gib']:.2f} ({pk['VmRSS']['bytes_per_parameter']:.2f})"
            f" | {pk['RssFile']['gib']:.2f} | {ld['VmRSS']['gib']:.2f} ({ld['VmRSS']['bytes_per_parameter']:.2f})"
            f" | {ca['VmRSS']['gib']:.2f} ({ca['VmRSS']['bytes_per_parameter']:.2f}) |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path, help="a model folder (config.json + safetensors)")
    ap.add_argument("--dtypes", default=",".join(DTYPES), help=f"of {', '.join(DTYPES)}")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from standin_numerics import choice_list, provenance  # beside this script

    dtypes = choice_list(ap, "--dtypes", args.dtypes, DTYPES)
    if not (args.checkpoint / "config.json").is_file():
        ap.error(f"checkpoint: {args.checkpoint} has no config.json (make one with `grpo-suite model build`)")

    doc = {
        "provenance": provenance(),
        "checkpoint": args.checkpoint.name,
        "loads": [measure(args.checkpoint, d) for d in dtypes],
    }
    print(markdown(doc))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "load-rss.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
