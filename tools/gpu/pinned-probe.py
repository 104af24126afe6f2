"""On the GPU host: does this torch honour PYTORCH_ALLOC_CONF=pinned_max_round_threshold_mb, and what does a
pinned block of the 14B recipe's offloaded fp32 MLP weight size (13824 x 5120 x 4 bytes) cost the host?
Each setting runs in a fresh process (torch reads the variable once).
  python3 tools/gpu/pinned-probe.py
Prints one JSON line per setting: the allocator's reserved bytes, the process RSS growth, or the error.
  python3 tools/gpu/pinned-probe.py --honoured FILE   # exit 0 when FILE (that output) says the setting works"""

from __future__ import annotations

import json
import os
import subprocess
import sys

SIZE = 13824 * 5120 * 4  # bytes: one Qwen2.5-14B gate/up/down projection in fp32 (270 MiB)

CHILD = """
import json, torch
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) * 1024
torch.cuda.init()
before = rss()
try:
    gpu = torch.empty(SIZE, dtype=torch.uint8, device="cuda")
    host = gpu.to("cpu", non_blocking=True)  # what verl's FSDP2 param offload does
    torch.cuda.synchronize()
    stats = torch.cuda.host_memory_stats() if hasattr(torch.cuda, "host_memory_stats") else {}
    out = {"pinned": host.is_pinned(), "rss_growth": rss() - before,
           "reserved": stats.get("reserved_bytes.current"), "allocated": stats.get("allocated_bytes.current")}
except Exception as exc:
    out = {"error": f"{type(exc).__name__}: {exc}"[:300]}
print(json.dumps(out))
""".replace("SIZE", str(SIZE))


def honoured(rows: list[dict]) -> bool:
    """The setting was accepted and the block kept its own size (the allocator's reserved bytes, else the
    process's RSS growth, under 1.5x what was asked: a rounded 270 MiB block takes 512 MiB)."""
    for r in rows:
        if r.get("PYTORCH_ALLOC_CONF") and "error" not in r and r.get("pinned"):
            held = r["reserved"] if r.get("reserved") is not None else r.get("rss_growth", 0)
            return held < 1.5 * r["asked"]
    return False


def main() -> int:
    if sys.argv[1:2] == ["--honoured"]:  # exit 0 when the probe's output (a file) says the setting works
        with open(sys.argv[2]) as f:
            rows = [json.loads(line) for line in f if line.startswith("{")]
        return 0 if honoured(rows) else 1
    import torch

    for conf in (None, "pinned_max_round_threshold_mb:1"):
        env = {k: v for k, v in os.environ.items() if k not in ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF")}
        if conf:
            env["PYTORCH_ALLOC_CONF"] = conf
        p = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
        line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else json.dumps({"error": p.stderr[-300:]})
        row = {"torch": torch.__version__, "PYTORCH_ALLOC_CONF": conf, "asked": SIZE, **json.loads(line)}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
