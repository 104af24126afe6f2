"""Readable names and the verl keys they set (suite/matrix/verl_keys.py): a raw [overrides] key that sets what a
readable name of the file sets is an input error naming both; a readable axis value is typed as its [base] field;
a raw-key axis that is a readable setting is planned and checked as that setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from suite.cli import main
from suite.errors import InputError
from suite.matrix import parse_matrix, verl_keys
from suite.matrix.schema import Matrix
from suite.plan.planner import plan_matrix

HEAD = """[matrix]
name = "t"
gpu = "h100"
gpus_per_node = 4
model = "synthetic:qwen2.5-0.5b"
backend = "{backend}"
"""
RS = "actor_rollout_ref.rollout"


def _plan(text: str, tmp_path: Path, backend: str = "fsdp") -> list:
    return plan_matrix(
        parse_matrix(HEAD.format(backend=backend) + text), "bench", out_dir=tmp_path, validate_with_verl=False
    )


def _error(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str = "fsdp") -> str:
    path = tmp_path / "m.toml"
    path.write_text(HEAD.format(backend=backend) + text)
    assert main(["plan", str(path), "--no-verl-check"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"grpo-suite: error: {path}: ")
    return err


# -- (a) a raw override and a readable name for one setting ------------------------------------------------
@pytest.mark.parametrize(
    ("text", "backend", "field", "where"),
    [
        (
            f'[base]\ngpu_memory_utilization = 0.6\n[overrides]\n"{RS}.gpu_memory_utilization" = 0.7\n',
            "fsdp",
            f"overrides.{RS}.gpu_memory_utilization",
            "base.gpu_memory_utilization",
        ),
        (
            f'[axes]\ngpu_memory_utilization = [0.3, 0.5]\n[overrides]\n"++{RS}.gpu_memory_utilization" = 0.7\n',
            "fsdp",
            f"overrides.++{RS}.gpu_memory_utilization",
            "axes.gpu_memory_utilization",
        ),
        (
            f'[axes]\ntp = [1, 2]\n[overrides]\n"{RS}.tensor_model_parallel_size" = 4\n',
            "fsdp",
            f"overrides.{RS}.tensor_model_parallel_size",
            "axes.tp",
        ),
        (
            '[base]\nlora_rank = 8\n[overrides]\n"actor_rollout_ref.model.lora.rank" = 16\n',
            "megatron",
            "overrides.actor_rollout_ref.model.lora.rank",
            "base.lora_rank",
        ),
        (
            '[base]\noffload = "param"\n[overrides]\n"actor_rollout_ref.actor.fsdp_config.param_offload" = false\n',
            "fsdp",
            "overrides.actor_rollout_ref.actor.fsdp_config.param_offload",
            "base.offload",
        ),
    ],
    ids=["base", "readable-axis", "named-axis", "megatron-key", "offload"],
)
def test_override_of_a_readable_setting_exits_2_naming_both(
    text: str, backend: str, field: str, where: str, tmp_path: Path, capsys
) -> None:
    err = _error(text, tmp_path, capsys, backend)
    assert f": {field}: " in err and where in err and "give it in one place" in err


def test_overrides_that_refine_or_set_unnamed_settings_stay(tmp_path: Path) -> None:
    # the reference model's offload is derived from `offload`, not the same setting: a raw key may refine it
    (c,) = _plan(
        '[base]\noffload = "param"\n[overrides]\n"actor_rollout_ref.ref.fsdp_config.param_offload" = false\n'
        f'"{RS}.n" = 8\n',
        tmp_path,
    )
    assert c.setting("actor_rollout_ref.ref.fsdp_config.param_offload") is False
    assert c.setting("actor_rollout_ref.actor.fsdp_config.param_offload") is True
    assert c.setting(f"{RS}.n") == 8  # rollout_n is not given in the file: the raw key sets it
    # an FSDP key on a Megatron matrix is not what `lora_rank` sets there (verl itself refuses it)
    (m,) = _plan('[base]\nlora_rank = 8\n[overrides]\n"actor_rollout_ref.model.lora_rank" = 16\n', tmp_path, "megatron")
    assert m.setting("actor_rollout_ref.model.lora.rank") == 8


def test_the_error_comes_before_any_gpu_time(tmp_path: Path, capsys) -> None:
    path = tmp_path / "m.toml"
    path.write_text(HEAD.format(backend="fsdp") + f'[base]\nrollout_n = 4\n[overrides]\n"{RS}.n" = 8\n')
    assert main(["run", str(path), "--dry-run", "--out", str(tmp_path / "runs")]) == 2
    assert f"overrides.{RS}.n" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# -- (b) readable axis values are typed as their field --------------------------------------------------------
def test_readable_axis_values_take_their_fields_type(tmp_path: Path) -> None:
    cells = _plan("[axes]\ngpu_memory_utilization = [1, 0.5]\n", tmp_path)
    assert [c.id for c in cells] == ["full-off_none-tp1-rb16-gmu1.0", "full-off_none-tp1-rb16-gmu0.5"]
    assert [c.axes["gpu_memory_utilization"] for c in cells] == [1.0, 0.5]
    assert isinstance(cells[0].axes["gpu_memory_utilization"], float)
    assert f"{RS}.gpu_memory_utilization=1.0" in cells[0].argv
    # a raw key that is a readable setting is typed the same way
    raw = _plan(f'[axes]\n"{RS}.gpu_memory_utilization" = [1]\n', tmp_path)
    assert [c.id for c in raw] == ["full-off_none-tp1-rb16-gmu1.0"]


@pytest.mark.parametrize(
    ("text", "field", "fragments"),
    [
        ("[axes]\ngpu_memory_utilization = [1, 1.0]\n", "axes.gpu_memory_utilization", ["repeats a value"]),
        (
            "[axes]\nenable_gradient_checkpointing = [true, 1]\n",
            "axes.enable_gradient_checkpointing",
            ["bad value 1", "allowed: true or false"],
        ),
        ("[axes]\nmax_num_seqs = [64, 128.0]\n", "axes.max_num_seqs", ["bad value 128.0", "allowed: an integer"]),
        ("[axes]\nload_format = ['dummy', 1]\n", "axes.load_format", ["bad value 1", "allowed: a string"]),
        ("[axes]\nstrategy = ['fsdp', 'ddp']\n", "axes.strategy", ["bad value 'ddp'", "allowed: 'fsdp' or 'fsdp2'"]),
        (
            f'[axes]\n"{RS}.max_num_seqs" = [64, "128"]\n',
            f"axes.{RS}.max_num_seqs",
            ["bad value '128'", "allowed: an integer (max_num_seqs)"],
        ),
    ],
    ids=["int-and-float-alike", "bool", "int", "str", "literal", "raw-key"],
)
def test_wrong_axis_types_exit_2_naming_the_axis_and_the_type(
    text: str, field: str, fragments: list[str], tmp_path: Path, capsys
) -> None:
    err = _error(text, tmp_path, capsys)
    assert f": {field}: " in err, err
    for f in fragments:
        assert f in err, (f, err)


# -- (c) a raw-key axis is checked as the setting it is --------------------------------------------------------
def test_plan_rules_see_raw_key_axes_as_their_setting(tmp_path: Path) -> None:
    cells = _plan(f'[axes]\n"{RS}.max_num_batched_tokens" = [128, 4096]\n', tmp_path)
    assert [(c.status, (c.reason or "").split(":")[0]) for c in cells] == [
        ("invalid", "batched-tokens-vs-seqs"),
        ("ok", ""),
    ]
    micro = _plan('[axes]\n"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu" = [4, 7]\n', tmp_path)
    assert [c.status for c in micro] == ["ok", "invalid"] and micro[1].reason.startswith("mini-vs-micro-batch")
    tp = _plan(f'[axes]\n"{RS}.tensor_model_parallel_size" = [2, 3]\n', tmp_path)
    assert [c.status for c in tp] == ["ok", "invalid"] and tp[1].reason.startswith("tp-divides-gpus")


def test_raw_key_axis_reaches_what_its_setting_decides(tmp_path: Path) -> None:
    # the bench profile cuts each cell's train subset to its rollout batch: a raw batch axis must do the same
    cells = _plan('[axes]\n"data.train_batch_size" = [16, 32]\n', tmp_path)
    rows = [next(iter(c.inputs.values()))["rows"] for c in cells]
    assert rows == [(10 + 1) * 16, (10 + 1) * 32]
    assert [c.setting("actor_rollout_ref.actor.ppo_mini_batch_size") for c in cells] == [16, 32]


# -- the table against what the planner writes ----------------------------------------------------------------
PAIRS: dict[str, tuple[Any, Any]] = {
    "lora_rank": (8, 16),
    "lora_alpha": (16, 32),
    "target_modules": ("a", "b"),
    "tp": (1, 2),
    "rollout_batch": (16, 32),
    "prompt_length": (256, 512),
    "response_length": (256, 512),
    "dataloader_num_workers": (1, 2),
    "seed": (1, 2),
    "rollout_n": (2, 3),
    "gpu_memory_utilization": (0.3, 0.4),
    "temperature": (0.5, 0.7),
    "enforce_eager": (True, False),
    "layered_summon": (True, False),
    "load_format": ("dummy", "safetensors"),
    "max_num_batched_tokens": (4096, 8192),
    "max_model_len": (1024, 2048),
    "max_num_seqs": (64, 128),
    "agent_num_workers": (1, 2),
    "log_prob_micro_batch_size_per_gpu": (2, 4),
    "lr": (1e-6, 2e-6),
    "ppo_mini_batch_size": (8, 16),
    "ppo_micro_batch_size_per_gpu": (2, 4),
    "use_kl_loss": (True, False),
    "kl_loss_coef": (0.001, 0.002),
    "entropy_coeff": (0.0, 0.1),
    "strategy": ("fsdp", "fsdp2"),
    "ulysses_sp": (1, 2),
    "pp": (1, 2),
    "megatron_attention_backend": ("fused", "flash"),
    "megatron_gradient_accumulation_fusion": (True, False),
    "use_remove_padding": (True, False),
    "enable_gradient_checkpointing": (True, False),
    "use_fused_kernels": (False, True),
    "use_shm": (True, False),
    "attn_implementation": ("sdpa", "eager"),
    "reward_num_workers": (1, 2),
    "tq_storage_units": (2, 4),
    "format_score": (0.1, 0.2),
    "offload": ("none", "param+optimizer"),
    "reward": ("verl", "gsm8k-format"),
}
# What a name's keys need to be written at all.
NEEDS = {
    "lora_alpha": {"lora_rank": 8},
    "target_modules": {"lora_rank": 8},
    "layered_summon": {"lora_rank": 8},
    "format_score": {"reward": "gsm8k-format"},
}


def _written(backend: str, base: dict[str, Any]) -> dict[str, Any]:
    m = Matrix.model_validate(
        {
            "matrix": {
                "name": "t",
                "gpu": "h100",
                "gpus_per_node": 4,
                "model": "synthetic:qwen2.5-0.5b",
                "backend": backend,
            },
            "base": base,
        }
    )
    (c,) = plan_matrix(m, "bench", out_dir="/tmp/unused", validate_with_verl=False)
    return {o.key: o.value for o in c.overrides}


@pytest.mark.parametrize("backend", ["fsdp", "megatron"])
def test_every_listed_key_is_written_by_its_name(backend: str) -> None:
    assert set(PAIRS) == set(verl_keys.names())
    for name, (a, b) in PAIRS.items():
        if name == "offload" and backend == "fsdp":
            b = "param+optimizer+activation+policy"  # the FSDP-only components write keys of their own
        keys = verl_keys.keys_of(name, backend)
        before, after = (_written(backend, {**NEEDS.get(name, {}), name: v}) for v in (a, b))
        changed = {k for k in {*before, *after} if before.get(k) != after.get(k)}
        assert set(keys) <= changed, (name, set(keys) - changed)
        for key in keys:
            if name not in ("offload", "reward", "use_fused_kernels"):
                assert verl_keys.readable_name(key, backend) == name
                assert verl_keys.readable_name("++" + key, backend) == name


def test_raw_key_axis_types_follow_the_backend(tmp_path: Path) -> None:
    # `model.lora.rank` is the LoRA rank on Megatron only; on FSDP it is an unknown raw key (verl refuses it)
    with pytest.raises(InputError, match="allowed: an integer"):
        parse_matrix(HEAD.format(backend="megatron") + '[axes]\n"actor_rollout_ref.model.lora.rank" = ["8"]\n')
    m = parse_matrix(HEAD.format(backend="fsdp") + '[axes]\n"actor_rollout_ref.model.lora.rank" = ["8"]\n')
    assert m.axis_values()["actor_rollout_ref.model.lora.rank"] == ["8"]
