"""Matrix files: the shipped ones load; every malformed class exits 2 naming file, field, value, allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.cli import main
from suite.errors import InputError
from suite.matrix import AXES, load_matrix, parse_matrix
from suite.matrix.offload import backend_overrides, canonical, parse_offload

MATRICES = Path(__file__).resolve().parent.parent / "suite" / "matrices"
SHIPPED = sorted(MATRICES.glob("*.toml"))

HEAD = """[matrix]
name = "t"
gpu = "h100"
gpus_per_node = 2
model = "synthetic:qwen2.5-0.5b"
backend = "fsdp"
"""


def test_shipped_matrices_exist() -> None:
    names = {p.name for p in SHIPPED}
    assert {"h100.toml", "h20.toml", "h100-1gpu.toml", "h100-2gpu.toml", "smollm2-train.toml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_matrix_loads(path: Path) -> None:
    m = load_matrix(path)
    assert m.source == str(path)
    assert m.matrix.name
    values = m.axis_values()
    assert list(values) == [*AXES, *m.axes.extra()]  # the four named axes first, extra axes after
    assert all(len(v) >= 1 for v in values.values())
    assert m.profile("bench").steps > 0


def test_omitted_axis_comes_from_base() -> None:
    m = parse_matrix(HEAD + "[axes]\ntp = [1, 2]\n[base]\nlora_rank = 16\noffload = 'param'\nrollout_batch = 8\n")
    assert m.axis_values() == {"lora_rank": [16], "offload": ["param"], "tp": [1, 2], "rollout_batch": [8]}


def test_overrides_table_is_flattened() -> None:
    m = parse_matrix(HEAD + '[overrides]\n"a.b" = 1\nx.y = [1, 2]\n[overrides.t]\nu = "v"\n')
    assert m.overrides == {"a.b": 1, "x.y": [1, 2], "t.u": "v"}


def test_profiles_merge_over_defaults() -> None:
    m = parse_matrix(HEAD + "[profiles.bench]\nsteps = 3\n[profiles.train]\ntest_freq = 4\n")
    bench, train = m.profile("bench"), m.profile("train")
    assert (bench.steps, bench.warmup_steps, bench.total_steps, bench.ignore_eos) == (3, 2, 5, True)
    assert bench.val_before_train is False and bench.test_freq == -1
    assert train.val_before_train is True and train.test_freq == 4 and train.ignore_eos is False
    with pytest.raises(InputError, match="unknown profile 'fast'; allowed: bench, train"):
        m.profile("fast")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("none", "none"),
        ("param", "param"),
        ("optimizer+param", "param+optimizer"),
        ("policy", "policy"),
        ("activation+optimizer+param", "param+optimizer+activation"),
    ],
)
def test_offload_canonical(value: str, expected: str) -> None:
    assert canonical(value) == expected


@pytest.mark.parametrize("value", ["", "disk", "param+param", "param+", "none+param", "PARAM"])
def test_offload_rejects(value: str) -> None:
    assert parse_offload(value) is None


@pytest.mark.parametrize(
    ("value", "backend", "expected"),
    [
        (
            "none",
            "fsdp",
            {
                "actor_rollout_ref.actor.fsdp_config.param_offload": False,
                "actor_rollout_ref.actor.fsdp_config.optimizer_offload": False,
                "actor_rollout_ref.ref.fsdp_config.param_offload": False,
            },
        ),
        (
            "param+optimizer",
            "fsdp",
            {
                "actor_rollout_ref.actor.fsdp_config.param_offload": True,
                "actor_rollout_ref.actor.fsdp_config.optimizer_offload": True,
                "actor_rollout_ref.ref.fsdp_config.param_offload": True,
            },
        ),
        (
            "optimizer",
            "megatron",
            {
                "actor_rollout_ref.actor.megatron.param_offload": False,
                "actor_rollout_ref.actor.megatron.optimizer_offload": True,
                "actor_rollout_ref.ref.megatron.param_offload": False,
            },
        ),
        (
            "policy",
            "fsdp",
            {
                "actor_rollout_ref.actor.fsdp_config.param_offload": False,
                "actor_rollout_ref.actor.fsdp_config.optimizer_offload": False,
                "actor_rollout_ref.ref.fsdp_config.param_offload": False,
                "actor_rollout_ref.actor.fsdp_config.offload_policy": True,
            },
        ),
    ],
)
def test_offload_backend_keys(value: str, backend: str, expected: dict) -> None:
    assert backend_overrides(value, backend) == expected
    assert not any("grad_offload" in k for k in expected)


# (name, file text, field named in the message, fragments the message must contain)
MALFORMED = [
    ("toml-syntax", HEAD + "[axes]\ntp = [1, 2\n", None, ["TOML syntax error", "line 8"]),
    ("toml-syntax-mid", HEAD + "[axes]\ntp = = 1\n[base]\n", None, ["TOML syntax error", "line 8, column"]),
    ("toml-duplicate-key", HEAD + "name = 'u'\n", None, ["TOML syntax error", "line 7"]),
    ("unknown-table", HEAD + "[axis]\ntp = [1]\n", "axis", ["unknown table [axis]", "[axes]"]),
    ("unknown-matrix-key", HEAD + "gpus = 4\n", "matrix.gpus", ["unknown key 'gpus'", "gpus_per_node"]),
    ("unknown-base-key", HEAD + "[base]\nresponse_len = 4\n", "base.response_len", ["response_length"]),
    ("unknown-profile-key", HEAD + "[profiles.bench]\nstep = 4\n", "profiles.bench.step", ["steps"]),
    ("unknown-axis", HEAD + "[axes]\nppx = [1, 2]\n", "axes.ppx", ["unknown axis 'ppx'", "lora_rank, offload, tp"]),
    ("wrong-type-axis", HEAD + "[axes]\ntp = ['2']\n", "axes.tp[0]", ["'2'", "integer"]),
    ("wrong-type-scalar", HEAD.replace("gpus_per_node = 2", 'gpus_per_node = "2"'), "matrix.gpus_per_node", ["'2'"]),
    ("wrong-type-axis-not-list", HEAD + "[axes]\ntp = 2\n", "axes.tp", ["2", "list"]),
    ("wrong-type-bool", HEAD + "[base]\nuse_remove_padding = 'no'\n", "base.use_remove_padding", ["'no'", "bool"]),
    ("empty-axis", HEAD + "[axes]\nlora_rank = []\n", "axes.lora_rank", ["must not be empty"]),
    ("unknown-gpu", HEAD.replace('"h100"', '"h800"'), "matrix.gpu", ["'h800'", "a100, b200, h100, h20, h200"]),
    ("unknown-backend", HEAD.replace('"fsdp"', '"deepspeed"'), "matrix.backend", ["'deepspeed'", "'fsdp'"]),
    ("unknown-dataset", HEAD + 'dataset = "math"\n', "matrix.dataset", ["'math'", "gsm8k"]),
    ("wrong-type-flash-attn", HEAD + 'flash_attn = "yes"\n', "matrix.flash_attn", ["'yes'", "bool"]),
    ("unknown-offload", HEAD + "[axes]\noffload = ['none', 'nvme']\n", "axes.offload", ["'nvme'", "param+optimizer"]),
    ("unknown-offload-base", HEAD + "[base]\noffload = 'grad'\n", "base.offload", ["'grad'", "param+optimizer"]),
    ("zero-size", HEAD + "[axes]\nrollout_batch = [0]\n", "axes.rollout_batch[0]", ["0", "greater than 0"]),
    ("negative-size", HEAD + "[axes]\ntp = [-1]\n", "axes.tp[0]", ["-1", "greater than 0"]),
    ("negative-lora", HEAD + "[axes]\nlora_rank = [-8]\n", "axes.lora_rank[0]", ["-8", "greater than or equal"]),
    ("zero-gpus", HEAD.replace("gpus_per_node = 2", "gpus_per_node = 0"), "matrix.gpus_per_node", ["0"]),
    ("negative-nnodes", HEAD + "nnodes = -2\n", "matrix.nnodes", ["-2"]),
    ("zero-length", HEAD + "[base]\nresponse_length = 0\n", "base.response_length", ["0"]),
    ("zero-steps", HEAD + "[profiles.bench]\nsteps = 0\n", "profiles.bench.steps", ["0"]),
    ("negative-warmup", HEAD + "[profiles.bench]\nwarmup_steps = -1\n", "profiles.bench.warmup_steps", ["-1"]),
    ("bad-test-freq", HEAD + "[profiles.train]\ntest_freq = 0\n", "profiles.train.test_freq", ["0", "-1"]),
    ("gpu-util-range", HEAD + "[base]\ngpu_memory_utilization = 1.5\n", "base.gpu_memory_utilization", ["1.5"]),
    (
        "bad-mini-batch",
        HEAD + "[base]\nppo_mini_batch_size = 'half'\n",
        "base.ppo_mini_batch_size",
        ["'half'", "rollout_batch/K"],
    ),
    ("duplicate-axis-value", HEAD + "[axes]\ntp = [1, 1]\n", "axes", ["repeats", "tp"]),
    ("missing-matrix", "[axes]\ntp = [1]\n", "matrix", ["required table [matrix]"]),
    ("missing-key", HEAD.replace('name = "t"\n', ""), "matrix.name", ["required key"]),
    ("exclude-unknown-axis", HEAD + "[[exclude]]\nppx = 1\n", None, ["exclude[0]", "unknown axis 'ppx'"]),
    (
        "exclude-value-off-axis",
        HEAD + "[axes]\ntp = [1, 2]\n[[exclude]]\ntp = 4\n",
        None,
        ["exclude[0].tp", "4", "[1, 2]"],
    ),
    ("exclude-empty", HEAD + "[[exclude]]\n", None, ["exclude[0] is empty"]),
    ("bad-attn", HEAD + "[base]\nattn_implementation = 'flash3'\n", "base.attn_implementation", ["'flash3'", "sdpa"]),
]


@pytest.mark.parametrize(("name", "text", "field", "fragments"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_matrix_exits_2(
    name: str, text: str, field: str | None, fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    rc = main(["plan", str(path), "--no-verl-check"])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""  # nothing printed as if it worked
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one clear message
    msg = lines[0]
    assert msg.startswith(f"grpo-suite: error: {path}: ")
    if field:
        assert f": {field}: " in msg, msg
    for frag in fragments:
        assert frag in msg, (frag, msg)


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["plan", str(tmp_path / "nope.toml")])
    assert rc == 2
    assert "nope.toml" in capsys.readouterr().err


def test_unknown_profile_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "m.toml"
    path.write_text(HEAD)
    assert main(["plan", str(path), "--profile", "smoke", "--no-verl-check"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "unknown profile 'smoke'" in err and "bench, train" in err
