"""On the GPU host: what each way of keeping an offloaded copy on the host costs in time and host memory.

verl's FSDP2 offload and vLLM's sleep backup copy GPU tensors to the host every step. Four ways to hold such a copy:
  pinned_cached    `t.to("cpu", non_blocking=True)`: torch's pinned host caching allocator (what verl asks for);
                   blocks rounded up to a power of two, kept cached after free
  pageable_fresh   `t.to("cpu")`, freed after each round (what suite/run/pageable_copies.py makes of it): exact size,
                   returned to the system, faulted in again on the next copy
  pageable_reused  one exact-size pageable buffer, allocated once, copied into each round
  registered       one exact-size buffer pinned in place with cudaHostRegister, allocated once: pinned speed
                   without the allocator's rounding
  host_buffers     the same through suite/run/pageable_copies.py's HostBuffers (what registered_host_copies runs)
  host_buffers_dtensor  HostBuffers on DTensors of a one-GPU mesh, as FSDP2 holds parameters; checks that the
                   host DTensor's data is the registered buffer and that the values survive the round trip

Each mode runs in a fresh process (the caching allocator is per process) and moves the same bytes, in tensors of
the sizes given (default: the 14B recipe's fp32 MLP projection and attention output, non-powers of two), D2H then
H2D, ROUNDS times. Prints one JSON line per mode: GiB/s per round and direction, the process RSS growth, and
torch's pinned-host reserved bytes where it reports them.
  python3 tools/gpu/copy-probe.py [--gib 8] [--rounds 3]"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

MODES = ("pinned_cached", "pageable_fresh", "pageable_reused", "registered", "host_buffers", "host_buffers_dtensor")
# bytes: Qwen2.5-14B gate/up/down projection in fp32 (13824 x 5120 x 4) and o_proj (5120 x 5120 x 4)
SIZES = (13824 * 5120 * 4, 5120 * 5120 * 4)

CHILD = r"""
import json, sys, time, torch
mode, gib, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
sizes = [int(s) for s in sys.argv[4].split(",")]

def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) * 1024

torch.cuda.init()
if mode == "host_buffers_dtensor":
    import os
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor, Shard
    from torch.distributed.device_mesh import init_device_mesh
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    dist.init_process_group("nccl", rank=0, world_size=1)
    mesh = init_device_mesh("cuda", (1,))
target, gpu = gib * 2**30, []
while sum(t.numel() for t in gpu) < target:
    gpu.append(torch.ones(sizes[len(gpu) % len(sizes)], dtype=torch.uint8, device="cuda"))
nbytes = sum(t.numel() for t in gpu)
before = rss()
host = None
if mode.startswith("host_buffers"):
    sys.path.insert(0, ".")
    from suite.run.pageable_copies import HostBuffers
    buffers = HostBuffers()
    if mode == "host_buffers_dtensor":
        gpu = [DTensor.from_local(t, mesh, [Shard(0)], run_check=False) for t in gpu]
if mode in ("pageable_reused", "registered"):
    host = [torch.empty(t.numel(), dtype=torch.uint8) for t in gpu]
    for h in host:
        h.fill_(0)  # fault the pages in once, as a buffer kept across steps would be
    if mode == "registered":
        cudart = torch.cuda.cudart()
        for h in host:
            err = cudart.cudaHostRegister(h.data_ptr(), h.numel(), 0)
            if int(err) != 0:
                print(json.dumps({"mode": mode, "error": f"cudaHostRegister returned {err}"}))
                sys.exit(0)
d2h, h2d, peak = [], [], 0
for _ in range(rounds):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    if mode == "pinned_cached":
        out = [t.to("cpu", non_blocking=True) for t in gpu]
    elif mode == "pageable_fresh":
        out = [t.to("cpu") for t in gpu]
    elif mode.startswith("host_buffers"):
        out = [buffers.to_host(i, t) for i, t in enumerate(gpu)]
    else:
        for h, t in zip(host, gpu):
            h.copy_(t, non_blocking=(mode == "registered"))
        out = host
    torch.cuda.synchronize()
    d2h.append(round(nbytes / 2**30 / (time.perf_counter() - t0), 2))
    peak = max(peak, rss() - before)
    t0 = time.perf_counter()
    for h, t in zip(out, gpu):
        if mode == "host_buffers_dtensor":
            t._local_tensor.copy_(h._local_tensor, non_blocking=True)
        else:
            t.copy_(h, non_blocking=(mode in ("pinned_cached", "registered", "host_buffers")))
    torch.cuda.synchronize()
    h2d.append(round(nbytes / 2**30 / (time.perf_counter() - t0), 2))
    if mode in ("pinned_cached", "pageable_fresh"):
        del out  # freed as verl and vLLM free theirs once the weights are back on the GPU
check = {}
if mode.startswith("host_buffers"):
    local = [h._local_tensor if mode == "host_buffers_dtensor" else h for h in out]
    check = {
        "aliases_buffers": all(a.data_ptr() == b.data_ptr() for a, b in zip(local, buffers.buffers.values())),
        "pinned": all(x.is_pinned() for x in local), "buffer_gib": round(buffers.nbytes / 2**30, 2),
        "values_kept": bool(all(bool((x[:1024] == 1).all()) for x in local)),
        "host_type": type(out[0]).__name__,
    }
stats = torch.cuda.host_memory_stats() if hasattr(torch.cuda, "host_memory_stats") else {}
print(json.dumps({
    "mode": mode, "gib": round(nbytes / 2**30, 2), "tensors": len(gpu), "d2h_gib_s": d2h, "h2d_gib_s": h2d,
    "rss_growth_gib": round(peak / 2**30, 2), "pinned_reserved_gib": round(stats.get("reserved_bytes.peak", 0) / 2**30, 2),
    "torch": torch.__version__, "gpu": torch.cuda.get_device_name(), **check,
}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args(argv)
    sizes = ",".join(str(s) for s in SIZES)
    for mode in args.modes.split(","):
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(args.gib), str(args.rounds), sizes],
            capture_output=True,
            text=True,
            timeout=600,
        )
        line = proc.stdout.strip().splitlines()[-1:] or [json.dumps({"mode": mode, "error": proc.stderr[-2000:]})]
        print(line[0], flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
