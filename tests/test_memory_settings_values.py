"""Integer settings read back from a result's argv: values that are not numbers count as unset, with a note."""

import pytest

from suite.memory.settings import settings_from_argv

AR = "actor_rollout_ref.rollout"
BASE = [f"{AR}.gpu_memory_utilization=0.3", f"{AR}.tensor_model_parallel_size=1"]


def test_numbers_are_read():
    s = settings_from_argv(
        [*BASE, f"{AR}.max_num_batched_tokens=8192", f"{AR}.max_model_len=768", f"{AR}.max_num_seqs=64"],
        model="synthetic:qwen2.5-0.5b",
        gpu="h100",
        n_gpus=1,
    )
    assert (s.max_num_batched_tokens, s.max_model_len, s.max_num_seqs) == (8192, 768, 64)
    assert not any("not a number" in n for n in s.notes)


@pytest.mark.parametrize("key", ["max_num_batched_tokens", "max_model_len", "max_num_seqs"])
def test_a_redacted_value_is_unset_with_a_note(key):
    # the first real H100 results carry max_num_batched_tokens=<redacted> (an over-eager secret filter)
    s = settings_from_argv([*BASE, f"{AR}.{key}=<redacted>"], model="synthetic:qwen2.5-0.5b", gpu="h100", n_gpus=1)
    assert getattr(s, key) is None
    assert f"{key}='<redacted>' is not a number: verl's default assumed" in s.notes


def test_unset_values_stay_unset_without_a_note():
    s = settings_from_argv(BASE, model="synthetic:qwen2.5-0.5b", gpu="h100", n_gpus=1)
    assert s.max_num_batched_tokens is None and s.max_model_len is None
    assert not any("not a number" in n for n in s.notes)


@pytest.mark.parametrize("gpu", ["h100", "h200"])
def test_cuda_graphs_add_their_calibrated_term_in_every_phase(gpu):
    from suite.memory.calibration import default_calibration
    from suite.memory.model import predict

    def peaks(eager: bool) -> dict[str, float]:
        s = settings_from_argv(
            [*BASE, f"{AR}.enforce_eager={eager}"], model="synthetic:qwen2.5-0.5b", gpu=gpu, n_gpus=1
        )
        assert s.enforce_eager is eager
        return {p.name: p.total_gib for p in predict(s).phases}

    graphs, eager = peaks(False), peaks(True)
    term = default_calibration().overhead.cuda_graphs_gib
    assert 0.5 < term < 1.5  # measured: 0.86 GiB on five H100/H200 cells (suite/memory/calibration.toml)
    assert graphs.keys() == eager.keys()
    for phase in graphs:
        assert graphs[phase] - eager[phase] == pytest.approx(term, abs=0.02), phase
