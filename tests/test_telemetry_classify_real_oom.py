"""The real out-of-memory log of the H100 OOM cell (2026-11-28): the reason is the torch line with the sizes,
not Ray's wrapper printed before it."""

from pathlib import Path

from suite.telemetry.classify import classify, find_oom, read_log_lines

LOG = Path(__file__).parent / "fixtures" / "h100-2026-11-28" / "log-oom-compute_log_prob.txt"


def test_real_oom_reason_is_the_torch_line_with_sizes():
    f = classify(1, read_log_lines(LOG))
    assert f is not None and f.status == "oom" and f.kind == "cuda"
    assert f.reason.startswith("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 78.82 GiB.")
    assert "total capacity of 79.18 GiB" in f.reason and "RayTaskError" not in f.reason


def test_ray_wrappers_come_first_in_the_real_log():
    lines = read_log_lines(LOG)
    first = next(i for i, x in enumerate(lines) if "OutOfMemoryError" in x)
    torch_line = next(i for i, x in enumerate(lines) if "CUDA out of memory" in x)
    assert "RayTaskError(OutOfMemoryError)" in lines[first] and first < torch_line


def test_specific_patterns_win_over_earlier_generic_ones():
    lines = [
        "ray.exceptions.RayTaskError(OutOfMemoryError): ray::X.run()",
        "ValueError: No available memory for the cache blocks.",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB",
    ]
    assert find_oom(lines) == ("cuda", lines[2])
    assert find_oom(lines[:2]) == ("kv-cache", lines[1])
    assert find_oom(lines[:1]) == ("cuda", lines[0])  # the wrapper alone still says out of memory
    assert find_oom(["all fine"]) is None


def test_the_first_line_of_the_best_pattern_is_the_cause():
    lines = [
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1 GiB (first)",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1 GiB (echo)",
    ]
    assert find_oom(lines)[1].endswith("(first)")
