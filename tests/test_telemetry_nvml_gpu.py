"""The NVML sampler against the real driver (GPU machines only)."""

import time

import pytest

from suite.telemetry import nvml as nv


@pytest.mark.gpu
def test_real_nvml_sampler_rate_peak_and_cost():
    nvml = nv.open_nvml()
    if nvml is None:
        pytest.skip("no NVML (CPU machine)")
    try:
        indices = list(range(nv.device_count(nvml)))
        info = nv.gpu_info(nvml, indices)
        assert info is not None and info.count == len(indices) and info.driver
        t0 = time.perf_counter()
        for _ in range(200):
            nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(0))
        per_read_us = (time.perf_counter() - t0) / 200 * 1e6
        sampler = nv.MemorySampler(nvml, indices, hz=20).start()
        time.sleep(2.0)
        s = sampler.stop()
    finally:
        nv.close_nvml(nvml)
    print(
        f"\nNVML: {info.name} x{info.count}, driver {info.driver}, CUDA {info.cuda}; one read {per_read_us:.1f} us; "
        f"sampler {s.rate_hz:.1f} Hz, {s.samples} rounds, CPU {s.cpu_s * 1e3:.1f} ms over {s.duration_s:.2f} s"
    )
    assert s.rate_hz >= 10 and s.errors == 0
    assert all(p > 0 for p in s.peak_gib)  # the driver itself holds some memory on every GPU
    assert s.cpu_s / s.duration_s < 0.05  # well under 5 % of one core
