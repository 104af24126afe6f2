"""NVML sampler overhead, measured on a GPU host (not a unit test).

1. Cost of one sampling round (NVML `used` of every GPU), timed over many rounds.
2. Effect on GPU work: a fixed bf16 matmul workload timed with the sampler off and on (20 Hz, every GPU),
   alternating, several repeats; reports the median slowdown. The sampler runs in the suite's process,
   verl's training runs in others, so this bounds the effect from above.

    python3 benchmarks/nvml_overhead.py
"""

from __future__ import annotations

import statistics
import time

from suite.telemetry.nvml import MemorySampler, device_count, nvml_session


def sampling_round_us(nvml, indices: list[int], rounds: int = 2000) -> float:
    s = MemorySampler(nvml, indices)
    s._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
    t0 = time.perf_counter()
    for _ in range(rounds):
        s.sample_once()
    return (time.perf_counter() - t0) / rounds * 1e6


def workload_s(torch, n: int = 8192, iters: int = 200) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    import torch

    with nvml_session() as nvml:
        if nvml is None:
            raise SystemExit("no NVML: run this on a GPU host")
        idx = list(range(device_count(nvml)))
        per_round = sampling_round_us(nvml, idx)
        print(f"GPUs: {len(idx)}; one sampling round (all GPUs): {per_round:.1f} us; "
              f"at 20 Hz: {per_round * 20 / 1e4:.4f} % of one CPU core")
        workload_s(torch, iters=20)  # warm-up
        off, on = [], []
        for _ in range(7):
            off.append(workload_s(torch))
            with MemorySampler(nvml, idx, hz=20.0):
                on.append(workload_s(torch))
        m_off, m_on = statistics.median(off), statistics.median(on)
        print(f"matmul workload: off {m_off:.4f} s, on {m_on:.4f} s (median of 7); "
              f"overhead {100 * (m_on - m_off) / m_off:+.3f} %")
        print("off:", [round(x, 4) for x in off])
        print("on: ", [round(x, 4) for x in on])


if __name__ == "__main__":
    main()
