import time

from fakes.nvml import GIB, FakeGpu, FakeNvml

from suite.telemetry import nvml as nv


def test_sampler_keeps_max_used_per_gpu_at_10hz_or_more():
    gpus = [FakeGpu(used=[1 * GIB, 30 * GIB, 2 * GIB]), FakeGpu(used=[5 * GIB, 6 * GIB])]
    sampler = nv.MemorySampler(FakeNvml(gpus), [0, 1], hz=50).start()
    time.sleep(0.3)
    samples = sampler.stop()
    assert samples.peak_gib == [30.0, 6.0]
    assert samples.indices == [0, 1]
    assert samples.samples >= 5
    assert samples.rate_hz >= 10
    assert samples.errors == 0


def test_sampler_only_reads_the_cells_gpus():
    gpus = [FakeGpu(used=[70 * GIB]), FakeGpu(used=[3 * GIB])]
    with nv.MemorySampler(FakeNvml(gpus), [1], hz=50) as s:
        time.sleep(0.05)
    assert gpus[0].reads == 0
    assert gpus[1].reads >= 1
    assert s.result is not None and s.result.peak_gib == [3.0]
    assert s.stop() is s.result


def test_sampler_without_nvml_records_nothing():
    s = nv.MemorySampler(None, [0, 1]).start()
    assert not s.enabled
    assert s.stop() is None


def test_sampler_with_bad_index_disables_itself():
    s = nv.MemorySampler(FakeNvml([FakeGpu()]), [3]).start()
    assert s.stop() is None


def test_open_nvml_degrades_to_none_without_driver():
    # On CPU CI there is no libnvidia-ml: open_nvml must return None, not raise.
    nvml = nv.open_nvml()
    try:
        if nvml is not None:  # a GPU machine: then it must answer
            assert nv.device_count(nvml) >= 0
    finally:
        nv.close_nvml(nvml)


def test_gpu_info():
    info = nv.gpu_info(FakeNvml([FakeGpu(), FakeGpu()], cuda=12040), [0, 1])
    assert (info.name, info.count, info.driver, info.cuda) == ("NVIDIA H100 80GB HBM3", 2, "580.95.05", "12.4")
    assert nv.gpu_info(None, [0]) is None


def test_wait_gpus_free_returns_once_free():
    gpu = FakeGpu(used=[40 * GIB, 40 * GIB, GIB // 2])
    sleeps = []
    msg = nv.wait_gpus_free(FakeNvml([gpu]), [0], timeout_s=10, poll_s=1, sleep=sleeps.append)
    assert msg is None and len(sleeps) == 2


def test_wait_gpus_free_gives_up_with_a_clear_message():
    gpus = [FakeGpu(), FakeGpu(used=[12 * GIB], processes=2)]
    t = [0.0]

    def sleep(s):
        t[0] += s

    msg = nv.wait_gpus_free(FakeNvml(gpus), [0, 1], timeout_s=5, poll_s=1, sleep=sleep, clock=lambda: t[0])
    assert msg is not None
    assert "GPU 1: 12.0 GiB used, 2 compute process(es)" in msg and "GPU 0" not in msg
    assert t[0] >= 5


def test_busy_by_process_even_with_little_memory():
    uses = nv.gpu_use(FakeNvml([FakeGpu(processes=1)]), [0])
    assert nv.busy_gpus(uses, max_used_gib=1.0) == uses
    assert nv.wait_gpus_free(None, [0]) is None


def test_sampler_timeline_keeps_the_max_of_each_window_and_marks_gaps(monkeypatch):
    clock = iter([100.0, 100.1, 100.5, 101.2, 101.9, 104.0, 104.1])  # _begin, then one reading per sample
    monkeypatch.setattr(nv.time, "monotonic", lambda: next(clock))
    gpus = [FakeGpu(used=[1 * GIB, 3 * GIB, 2 * GIB, 5 * GIB, 4 * GIB, 7 * GIB])]
    s = nv.MemorySampler(FakeNvml(gpus), [0], hz=20, timeline_interval_s=1.0)
    assert s._begin()
    for _ in range(6):
        s.sample_once()
    out = s._summary(5.0)
    # windows [0, 1) [1, 2) [2, 3) [3, 4) [4, 5) s from the start: two gaps where no sample fell
    assert out.timeline_gib == [[3.0], [5.0], [None], [None], [7.0]]
    assert out.started_at == 100.0 and out.timeline_interval_s == 1.0
    assert out.peak_gib == [7.0] and out.samples == 6


def test_sampler_timeline_has_one_column_per_gpu_in_index_order():
    gpus = [FakeGpu(used=[2 * GIB]), FakeGpu(used=[9 * GIB]), FakeGpu(used=[4 * GIB])]
    with nv.MemorySampler(FakeNvml(gpus), [2, 1], hz=50) as s:
        time.sleep(0.1)
    r = s.result
    assert r is not None and r.timeline_gib and all(w == [4.0, 9.0] for w in r.timeline_gib)
    assert r.started_at is not None


def test_window_max_keeps_each_series_apart():
    from suite.telemetry.sampler import WindowMax

    w = WindowMax(2, interval_s=0.5)
    w.start(now=10.0)
    for t, k, v in [(10.1, 0, 1.0), (10.2, 0, 3.0), (10.3, 1, 2.0), (11.2, 1, 5.0), (11.4, 0, 0.5)]:
        w.add(k, v, now=t)
    # windows [10, 10.5) [10.5, 11) [11, 11.5)
    assert w.rows() == [[3.0, 2.0], [None, None], [0.5, 5.0]]
    assert WindowMax(3).rows() == []
