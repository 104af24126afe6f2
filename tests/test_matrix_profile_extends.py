"""A profile a matrix file adds under a new name starts from the Profile defaults unless it `extends` another
profile (the file's or the suite's bench/train): the 2026-12-06 run of `short` lost bench's fixed-length rollouts."""

from __future__ import annotations

import pytest

from suite.errors import InputError
from suite.matrix.load import parse_matrix
from suite.matrix.schema import DEFAULT_PROFILES

HEAD = """
[matrix]
name = "m"
gpu = "h100"
gpus_per_node = 1
backend = "fsdp"
model = "synthetic:qwen2.5-0.5b"

[axes]
lora_rank = [0]
"""


def _m(profiles: str):
    return parse_matrix(HEAD + profiles, source="m.toml")


def test_a_new_profile_without_extends_starts_from_the_defaults() -> None:
    p = _m("[profiles.short]\nsteps = 2\n").profile("short")
    assert (p.steps, p.warmup_steps, p.ignore_eos, p.fit_max_num_seqs, p.subset_data) == (2, 0, False, False, False)


def test_extends_bench_takes_the_suite_s_bench_and_the_file_s_bench_over_it() -> None:
    m = _m('[profiles.bench]\nsteps = 4\nwarmup_steps = 1\n\n[profiles.short]\nextends = "bench"\nsteps = 2\n')
    short, bench = m.profile("short"), m.profile("bench")
    assert (short.steps, short.warmup_steps) == (2, 1)  # warm-up from the file's bench, steps its own
    for key in ("ignore_eos", "fit_max_num_seqs", "subset_data"):
        assert getattr(short, key) is getattr(bench, key) is DEFAULT_PROFILES["bench"][key] is True
    assert short.extends is None and short.total_steps == 3


def test_extends_a_suite_profile_the_file_does_not_name() -> None:
    p = _m('[profiles.quick-train]\nextends = "train"\nsteps = 3\n').profile("quick-train")
    assert (p.steps, p.val_before_train, p.test_freq) == (3, True, 20)


def test_a_chain_of_extends() -> None:
    m = _m('[profiles.a]\nextends = "bench"\nsteps = 3\n\n[profiles.b]\nextends = "a"\nwarmup_steps = 0\n')
    b = m.profile("b")
    assert (b.steps, b.warmup_steps, b.ignore_eos) == (3, 0, True)


def test_an_unknown_parent_is_refused_at_load_with_the_allowed_names() -> None:
    with pytest.raises(
        InputError, match=r"profiles.short.extends: unknown profile 'bnech'; allowed: bench, short, train"
    ):
        _m('[profiles.short]\nextends = "bnech"\n')


def test_a_cycle_is_refused_at_load() -> None:
    with pytest.raises(InputError, match=r"profiles.b.extends: a cycle \(a -> b -> a\)"):
        _m('[profiles.a]\nextends = "b"\n\n[profiles.b]\nextends = "a"\n')
    with pytest.raises(InputError, match=r"a cycle \(a -> a\)"):
        _m('[profiles.a]\nextends = "a"\n')


def test_an_unknown_profile_still_names_the_allowed_ones() -> None:
    with pytest.raises(InputError, match="unknown profile 'nope'; allowed: bench, train"):
        _m("").profile("nope")
