"""Plan: expansion, exclusions, ids, plan-time constraints, the verl command of a cell, the seed recipes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suite.cli import main
from suite.matrix import load_matrix, parse_matrix
from suite.plan.expand import cell_id, expand
from suite.plan.overrides import ENTRY, format_value
from suite.plan.planner import plan_matrix

MATRICES = Path(__file__).resolve().parent.parent / "suite" / "matrices"
HEAD = """[matrix]
name = "t"
gpu = "h100"
gpus_per_node = {gpus}
model = "{model}"
backend = "{backend}"
"""


def head(gpus: int = 4, model: str = "synthetic:qwen2.5-7b", backend: str = "fsdp") -> str:
    return HEAD.format(gpus=gpus, model=model, backend=backend)


def argv_dict(argv: list[str]) -> dict[str, object]:
    """argv -> {key: value} with values parsed by Hydra's own override parser (the round trip verl sees)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    assert argv[:3] == ENTRY
    parser = OverridesParser.create()
    out: dict[str, object] = {}
    for a in argv[3:]:
        o = parser.parse_override(a)
        key = a.split("=", 1)[0]
        assert key not in out, f"duplicate override {key}"
        out[key] = o.value()
    return out


def plan(text: str, tmp_path: Path, profile: str = "bench", **kw) -> list:
    return plan_matrix(parse_matrix(text), profile, out_dir=tmp_path, validate_with_verl=False, **kw)


# --- expansion -----------------------------------------------------------------------------------------------
def test_expansion_is_the_product_in_axis_order() -> None:
    m = parse_matrix(
        head() + "[axes]\nlora_rank = [0, 8]\noffload = ['none', 'param']\ntp = [1, 2]\nrollout_batch = [16, 32, 64]\n"
    )
    points = expand(m)
    assert len(points) == 2 * 2 * 2 * 3
    assert points[0] == {"lora_rank": 0, "offload": "none", "tp": 1, "rollout_batch": 16}
    assert points[-1] == {"lora_rank": 8, "offload": "param", "tp": 2, "rollout_batch": 64}
    assert len({cell_id(p) for p in points}) == len(points)


@pytest.mark.parametrize(
    ("exclude", "left"),
    [
        ("[[exclude]]\ntp = 2\n", 4),
        ("[[exclude]]\ntp = 2\nlora_rank = 8\n", 6),
        ("[[exclude]]\noffload = 'param'\n[[exclude]]\nlora_rank = 0\ntp = 1\n", 3),
        ("[[exclude]]\ntp = [1, 2]\n", 0),
        ("[[exclude]]\noffload = ['param']\nlora_rank = [0, 8]\ntp = 1\n", 6),
    ],
)
def test_exclusions(exclude: str, left: int) -> None:
    m = parse_matrix(head() + "[axes]\nlora_rank = [0, 8]\noffload = ['none', 'param']\ntp = [1, 2]\n" + exclude)
    assert len(expand(m)) == left


def test_exclusion_matches_canonical_offload() -> None:
    m = parse_matrix(
        head() + "[axes]\noffload = ['none', 'optimizer+param']\n[[exclude]]\noffload = 'param+optimizer'\n"
    )
    assert [p["offload"] for p in expand(m)] == ["none"]


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        (
            {"lora_rank": 32, "offload": "param+optimizer", "tp": 4, "rollout_batch": 180},
            "lora32-off_param+optimizer-tp4-rb180",
        ),
        ({"lora_rank": 0, "offload": "none", "tp": 8, "rollout_batch": 512}, "full-off_none-tp8-rb512"),
        ({"lora_rank": 8, "offload": "optimizer", "tp": 1, "rollout_batch": 16}, "lora8-off_optimizer-tp1-rb16"),
    ],
)
def test_cell_ids_are_readable(point: dict, expected: str) -> None:
    assert cell_id(point) == expected


def test_ids_stable_across_value_order_and_plans(tmp_path: Path) -> None:
    a = plan(head() + "[axes]\ntp = [1, 2]\nlora_rank = [0, 8]\n", tmp_path)
    b = plan(head() + "[axes]\nlora_rank = [8, 0]\ntp = [2, 1]\n", tmp_path)
    assert sorted(c.id for c in a) == sorted(c.id for c in b)
    assert {c.id: c.argv for c in a} == {c.id: c.argv for c in b}
    assert a[0].full_id == "qwen2.5-7b/h100x4/fsdp/full-off_none-tp1-rb16"


# --- the verl command ----------------------------------------------------------------------------------------
def test_cell_command_points_into_its_dir(tmp_path: Path) -> None:
    (c,) = plan(
        head(gpus=1, model="synthetic:qwen2.5-0.5b") + "[base]\nlora_rank = 8\nrollout_batch = 16\n"
        "attn_implementation = 'sdpa'\nuse_remove_padding = false\n",
        tmp_path,
        data_root="/data/g",
    )
    d = argv_dict(c.argv)
    cell_dir = tmp_path.resolve() / c.full_id
    # a LoRA cell also asks for verl's INFO logs (its adapter-sync line: tests/test_lora_sync_log.py)
    assert c.env == {"VERL_FILE_LOGGER_PATH": str(cell_dir / "metrics.jsonl"), "VERL_LOGGING_LEVEL": "INFO"}
    assert d["+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH"] == str(cell_dir / "metrics.jsonl")
    assert d["trainer.validation_data_dir"] == str(cell_dir / "validation")
    assert d["trainer.default_local_dir"] == str(cell_dir / "ckpt")
    assert d["trainer.logger"] == ["console", "file"]
    # bench: the cell reads subsets of the dataset that the run cuts into its directory (suite/data/subset.py)
    assert d["data.train_files"] == str(cell_dir / "inputs/train.parquet")
    assert d["data.val_files"] == str(cell_dir / "inputs/val.parquet")
    assert c.inputs == {
        str(cell_dir / "inputs/train.parquet"): {"source": "/data/g/train.parquet", "rows": (8 + 2 + 1) * 16},
        str(cell_dir / "inputs/val.parquet"): {"source": "/data/g/test.parquet", "rows": 16},
    }
    (t,) = plan(
        head(gpus=1, model="synthetic:qwen2.5-0.5b") + "[base]\nlora_rank = 8\nrollout_batch = 16\n",
        tmp_path,
        data_root="/data/g",
        profile="train",
    )
    dt = argv_dict(t.argv)  # accuracy runs read the whole files
    assert dt["data.train_files"] == "/data/g/train.parquet" and dt["data.val_files"] == "/data/g/test.parquet"
    assert t.inputs == {}
    assert d["actor_rollout_ref.model.path"].endswith("/models/qwen2.5-0.5b")
    expected = {
        "algorithm.adv_estimator": "grpo",
        "actor_rollout_ref.rollout.name": "vllm",
        "actor_rollout_ref.rollout.mode": "async",
        "actor_rollout_ref.actor.strategy": "fsdp2",
        "+actor_rollout_ref.model.override_config.attn_implementation": "sdpa",
        "actor_rollout_ref.model.use_remove_padding": False,
        "actor_rollout_ref.actor.use_torch_compile": False,
        "actor_rollout_ref.actor.fsdp_config.use_torch_compile": False,
        "actor_rollout_ref.ref.fsdp_config.use_torch_compile": False,
        "+ray_kwargs.ray_init.include_dashboard": False,
        "actor_rollout_ref.rollout.agent.num_workers": 2,
        "reward.num_workers": 2,
        "data.dataloader_num_workers": 2,
        "actor_rollout_ref.model.lora_rank": 8,
        "actor_rollout_ref.model.lora_alpha": 32,
        "actor_rollout_ref.model.target_modules": "all-linear",
        "trainer.n_gpus_per_node": 1,
        "trainer.nnodes": 1,
        "trainer.total_training_steps": 10,
        "trainer.save_freq": -1,
        "trainer.project_name": "grpo-suite-t",
        "trainer.experiment_name": "qwen2.5-0.5b__h100x1__fsdp__lora8-off_none-tp1-rb16",
    }
    for k, v in expected.items():
        assert d[k] == v, k
    assert (c.warmup_steps, c.total_steps) == (2, 10)


def test_bench_profile_is_fixed_length_eager_no_validation(tmp_path: Path) -> None:
    (c,) = plan(head(), tmp_path, "bench")
    d = argv_dict(c.argv)
    assert d["trainer.val_before_train"] is False and d["trainer.test_freq"] == -1
    assert d["actor_rollout_ref.rollout.ignore_eos"] is True
    assert d["actor_rollout_ref.rollout.enforce_eager"] is True
    assert "actor_rollout_ref.rollout.max_num_seqs" not in d  # eager vLLM captures no graphs: verl's default


@pytest.mark.parametrize(
    ("extra", "profile", "expected"),
    [
        # graphs in a bench cell: at most rollout_batch x n sequences in flight (16 x 4), never above verl's 256
        ("rollout_batch = 16\nrollout_n = 4\nenforce_eager = false\n", "bench", 64),
        ("rollout_batch = 128\nrollout_n = 8\nenforce_eager = false\n", "bench", 256),
        ("rollout_batch = 16\nrollout_n = 4\nenforce_eager = false\nmax_num_seqs = 100\n", "bench", 100),
        ("rollout_batch = 16\nrollout_n = 4\nenforce_eager = false\n", "train", None),  # validation batches
        ("rollout_batch = 16\nrollout_n = 4\n", "bench", None),
    ],
)
def test_bench_cells_with_graphs_cap_max_num_seqs(
    extra: str, profile: str, expected: int | None, tmp_path: Path
) -> None:
    (c,) = plan(head(gpus=1, model="synthetic:qwen2.5-0.5b") + "[base]\n" + extra, tmp_path, profile)
    assert argv_dict(c.argv).get("actor_rollout_ref.rollout.max_num_seqs") == expected


def test_profile_can_turn_the_cap_off(tmp_path: Path) -> None:
    text = (
        head(gpus=1, model="synthetic:qwen2.5-0.5b") + "[base]\nenforce_eager = false\n"
        "[profiles.bench]\nfit_max_num_seqs = false\n"
    )
    (c,) = plan(text, tmp_path, "bench")
    assert "actor_rollout_ref.rollout.max_num_seqs" not in argv_dict(c.argv)


def test_train_profile_validates_before_and_at_the_end(tmp_path: Path) -> None:
    (c,) = plan(head() + "[profiles.train]\nsteps = 12\ntest_freq = 5\nval_max_samples = 100\n", tmp_path, "train")
    d = argv_dict(c.argv)
    assert d["trainer.val_before_train"] is True
    # verl validates when test_freq > 0 and (step % test_freq == 0 or last step): 5, 10 and 12.
    assert d["trainer.test_freq"] == 5 and d["trainer.total_training_steps"] == 12
    assert d["actor_rollout_ref.rollout.ignore_eos"] is False
    assert d["data.val_max_samples"] == 100


def test_no_lora_keys_for_full_finetuning(tmp_path: Path) -> None:
    (c,) = plan(head(), tmp_path)
    keys = [a.split("=", 1)[0] for a in c.argv[3:]]
    assert not any("lora" in k or "target_modules" in k or "layered_summon" in k for k in keys)


def test_megatron_keys(tmp_path: Path) -> None:
    (c,) = plan(head(gpus=8, backend="megatron") + "[base]\ntp = 4\nlora_rank = 16\noffload = 'param'\n", tmp_path)
    d = argv_dict(c.argv)
    assert d["model_engine"] == "megatron"
    assert d["actor_rollout_ref.actor.megatron.tensor_model_parallel_size"] == 4
    assert d["actor_rollout_ref.rollout.tensor_model_parallel_size"] == 4
    assert d["actor_rollout_ref.model.lora.rank"] == 16 and d["actor_rollout_ref.model.lora.alpha"] == 32
    assert d["actor_rollout_ref.actor.megatron.param_offload"] is True
    assert "actor_rollout_ref.model.lora_rank" not in d and "actor_rollout_ref.actor.strategy" not in d
    assert not any("grad_offload" in a or "fsdp_config" in a for a in c.argv)
    assert not any("attention_backend" in a for a in c.argv)  # unset: verl's default stays


def test_megatron_attention_backend_key(tmp_path: Path) -> None:
    (c,) = plan(
        head(gpus=2, model="synthetic:qwen2.5-1.5b", backend="megatron")
        + "[base]\ntp = 2\nmegatron_attention_backend = 'fused'\n",
        tmp_path,
    )
    d = argv_dict(c.argv)
    assert d["actor_rollout_ref.actor.megatron.override_transformer_config.attention_backend"] == "fused"
    # an FSDP matrix has no Megatron key even with the field set
    (f,) = plan(
        head(gpus=2, model="synthetic:qwen2.5-1.5b") + "[base]\nmegatron_attention_backend = 'fused'\n", tmp_path / "f"
    )
    assert not any("attention_backend" in a for a in f.argv)


@pytest.mark.parametrize(
    ("fsdp_name", "megatron_name"), [("h100-2gpu", "h100-2gpu-megatron"), ("h100-1gpu-graphs", "h100-1gpu-megatron")]
)
def test_megatron_twins_share_settings_with_their_fsdp_cells(fsdp_name: str, megatron_name: str) -> None:
    """A Megatron twin matrix's cells are its FSDP matrix's full-fine-tuning cells with the backend swapped."""
    fsdp, meg = load_matrix(MATRICES / f"{fsdp_name}.toml"), load_matrix(MATRICES / f"{megatron_name}.toml")
    assert meg.matrix.backend == "megatron" and fsdp.matrix.backend == "fsdp"
    for k in ("model", "gpus_per_node", "dataset"):
        assert getattr(meg.matrix, k) == getattr(fsdp.matrix, k), k
    for k in (
        "prompt_length",
        "response_length",
        "rollout_n",
        "gpu_memory_utilization",
        "lr",
        "ppo_mini_batch_size",
        "ppo_micro_batch_size_per_gpu",
        "log_prob_micro_batch_size_per_gpu",
        "max_model_len",
        "max_num_batched_tokens",
        "seed",
        "enforce_eager",
    ):
        assert getattr(meg.base, k) == getattr(fsdp.base, k), k
    assert {cell_id(p) for p in expand(meg)} <= {cell_id(p) for p in expand(fsdp)}


def test_megatron_gradient_accumulation_fusion_is_off_unless_asked(tmp_path: Path) -> None:
    key = "++actor_rollout_ref.actor.megatron.override_transformer_config.gradient_accumulation_fusion"
    meg = head(gpus=2, model="synthetic:qwen2.5-1.5b", backend="megatron") + "[base]\ntp = 2\n"
    (c,) = plan(meg, tmp_path)
    assert argv_dict(c.argv)[key] is False
    (on,) = plan(meg + "megatron_gradient_accumulation_fusion = true\n", tmp_path / "on")
    assert argv_dict(on.argv)[key] is True
    assert not any("ref.megatron.override_transformer_config" in a for a in on.argv)
    (f,) = plan(head(gpus=2, model="synthetic:qwen2.5-1.5b") + "[base]\ntp = 2\n", tmp_path / "f")
    assert not any("gradient_accumulation_fusion" in a for a in f.argv)


EVIDENCE = MATRICES.parent.parent / "baselines" / "evidence" / "2026-11-28-h200x2-megatron"


@pytest.mark.parametrize(
    ("matrix", "folder", "cell"),
    [
        ("h100-1gpu-megatron", "h100-megatron", "qwen2.5-0.5b/h100x1/megatron/full-off_none-tp1-rb16"),
        ("h100-1gpu-graphs", "h100-graphs", "qwen2.5-0.5b/h100x1/fsdp/full-off_none-tp1-rb16"),
    ],
)
def test_planned_command_is_the_one_that_ran(matrix: str, folder: str, cell: str, monkeypatch, capsys) -> None:
    """The plan reflects what the H200 runs of 2026-11-28 taught: planning the shipped matrix today, with the
    host's paths, gives exactly the verl command that ran ok there (the Megatron one after its first try
    crashed on gradient_accumulation_fusion and was rerun with the override the plan now emits)."""
    ran = json.loads((EVIDENCE / folder / cell / "cell.json").read_text())
    monkeypatch.setenv("HOME", "/root")
    monkeypatch.setenv("GRPO_SUITE_CACHE", "/root/.cache/grpo-suite")
    assert (
        main(
            [
                "plan",
                str(MATRICES / f"{matrix}.toml"),
                "--profile",
                "bench",
                "--format",
                "json",
                "--out",
                f"/root/runs/{folder}",
                "--data-root",
                "/root/.cache/grpo-suite/data/gsm8k-offline",
                "--no-verl-check",
            ]
        )
        == 0
    )
    (planned,) = [c for c in json.loads(capsys.readouterr().out) if c["full_id"] == cell]
    assert planned["full_id"] == cell and planned["status"] == "ok"
    # Since then a bench cell reads subsets of the same files (cut into its directory before it starts).
    sources = {dest: spec["source"] for dest, spec in planned["inputs"].items()}
    argv = [
        a.split("=", 1)[0] + "=" + sources[a.split("=", 1)[1]] if a.split("=", 1)[-1] in sources else a
        for a in planned["argv"]
    ]
    assert len(sources) == 2 and argv != planned["argv"]
    assert sorted(argv) == sorted(ran["argv"])
    crashed = EVIDENCE / "h100-megatron-crash" / cell / "result.json"
    if crashed.exists():
        first = json.loads(crashed.read_text())
        assert first["status"] == "crash" and "gradient_accumulation_fusion" in first["reason"]
        assert set(argv) - set(first["provenance"]["argv"]) == {
            "++actor_rollout_ref.actor.megatron.override_transformer_config.gradient_accumulation_fusion=False"
        }


def test_raw_overrides_replace_generated_keys(tmp_path: Path) -> None:
    (c,) = plan(
        head() + "[overrides]\n'actor_rollout_ref.rollout.n' = 8\n'+trainer.extra' = 'x y'\n"
        "'++actor_rollout_ref.rollout.temperature' = 0.7\n",
        tmp_path,
    )
    d = argv_dict(c.argv)
    assert d["actor_rollout_ref.rollout.n"] == 8
    assert d["+trainer.extra"] == "x y"
    assert d["++actor_rollout_ref.rollout.temperature"] == 0.7
    assert "actor_rollout_ref.rollout.temperature" not in d


def test_local_model_path_is_expanded(tmp_path: Path) -> None:
    (c,) = plan(head(gpus=1, model="~/models/smollm2-135m-instruct"), tmp_path)
    assert argv_dict(c.argv)["actor_rollout_ref.model.path"] == str(Path("~/models/smollm2-135m-instruct").expanduser())
    assert c.full_id.startswith("smollm2-135m-instruct/h100x1/")


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "with space",
        "a,b",
        "true",
        "1",
        "1e-3",
        "null",
        "~tilde",
        "${oc.env:HOME}",
        'q"uote',
        "a=b",
        "/abs/path+plus/x",
        "",
        3,
        0.5,
        1e-06,
        True,
        False,
        None,
        ["console", "file"],
        [1, 2.5, True],
        [],
    ],
)
def test_format_value_round_trips_through_hydra(value: object) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_override(f"k={format_value(value)}").value()
    if isinstance(value, str) and value.startswith("${"):
        assert parsed == "\\" + value or parsed == value  # quoted interpolation stays a string in the argv
    else:
        assert parsed == value


# --- plan-time constraints -----------------------------------------------------------------------------------
CONSTRAINTS = [
    # (name, matrix text, rule named in the reason, numbers in the reason)
    ("tp-divides-gpus", head(gpus=4) + "[base]\ntp = 3\n", "tp-divides-gpus", ["3", "4 GPUs"]),
    (
        "tp-divides-heads",
        head(gpus=8, model="synthetic:qwen2.5-1.5b") + "[base]\ntp = 8\nrollout_batch = 32\n",
        "tp-divides-heads",
        ["8", "12 attention heads"],
    ),
    # vLLM replicates KV heads when tp is a multiple of them: 12 heads / 2 KV heads at tp 6 is fine.
    ("kv-replicated", head(gpus=6, model="synthetic:qwen2.5-1.5b") + "[base]\ntp = 6\nrollout_batch = 24\n", None, []),
    (
        "smollm-kv-replicated",
        head(gpus=9, model="synthetic:smollm2-135m") + "[base]\ntp = 9\nrollout_batch = 9\n"
        "ppo_micro_batch_size_per_gpu = 5\nlog_prob_micro_batch_size_per_gpu = 5\n",
        None,
        [],
    ),
    (
        "tp-vs-kv-heads",
        head(gpus=7, model="synthetic:qwen2.5-0.5b") + "[base]\ntp = 7\nrollout_batch = 7\n"
        "ppo_micro_batch_size_per_gpu = 5\nlog_prob_micro_batch_size_per_gpu = 5\n",
        "tp-vs-kv-heads",
        ["7", "2 KV heads"],
    ),
    # megatron-core 0.18 replicates query groups like vLLM: TP 4 over 2 KV heads is fine, TP 3 over 2 is not
    ("megatron-kv", head(gpus=4, model="synthetic:qwen2.5-1.5b", backend="megatron") + "[base]\ntp = 4\n", None, []),
    (
        "megatron-kv-3",
        head(gpus=6, model="synthetic:qwen2.5-1.5b", backend="megatron") + "[base]\ntp = 3\nrollout_batch = 12\n",
        "tp-vs-kv-heads",
        ["3", "2 KV heads"],
    ),
    (
        "megatron-attention",
        head(gpus=2, model="synthetic:qwen2.5-1.5b", backend="megatron")
        + "[base]\ntp = 2\nattn_implementation = 'sdpa'\n",
        "megatron-attention-needs-flash-attn",
        ["flash (verl default)", "'sdpa'", "megatron_attention_backend = 'fused'"],
    ),
    # flex is one of torch's attentions, as for the memory planner: no flash-attn unless the matrix says so
    (
        "megatron-attention-flex",
        head(gpus=2, model="synthetic:qwen2.5-1.5b", backend="megatron")
        + "[base]\ntp = 2\nattn_implementation = 'flex_attention'\n",
        "megatron-attention-needs-flash-attn",
        ["flash (verl default)", "'flex_attention' (no flash-attn)", "megatron_attention_backend = 'fused'"],
    ),
    (
        "megatron-attention-flex-with-flash-attn",
        head(gpus=2, model="synthetic:qwen2.5-1.5b", backend="megatron")
        + "flash_attn = true\n[base]\ntp = 2\nattn_implementation = 'flex_attention'\n",
        None,
        [],
    ),
    (
        "megatron-attention-flash",
        head(gpus=2, model="synthetic:qwen2.5-1.5b", backend="megatron")
        + "[base]\ntp = 2\nattn_implementation = 'sdpa'\nmegatron_attention_backend = 'flash'\n",
        "megatron-attention-needs-flash-attn",
        ["flash needs flash-attn"],
    ),
    (
        "megatron-attention-fused",
        head(gpus=2, model="synthetic:qwen2.5-1.5b", backend="megatron")
        + "[base]\ntp = 2\nattn_implementation = 'sdpa'\nmegatron_attention_backend = 'fused'\n",
        None,
        [],
    ),
    (
        "megatron-attention-with-flash-attn",
        head(gpus=2, model="synthetic:qwen2.5-1.5b", backend="megatron")
        + "[base]\ntp = 2\nattn_implementation = 'flash_attention_2'\n",
        None,
        [],
    ),
    # the matrix says where it runs: flash-attn installed beside sdpa, or none beside verl's default attention
    (
        "megatron-attention-sdpa-with-flash-attn",
        head(gpus=2, model="synthetic:qwen2.5-1.5b", backend="megatron")
        + "flash_attn = true\n[base]\ntp = 2\nattn_implementation = 'sdpa'\n",
        None,
        [],
    ),
    (
        "megatron-attention-said-none",
        head(gpus=2, model="synthetic:qwen2.5-1.5b", backend="megatron") + "flash_attn = false\n[base]\ntp = 2\n",
        "megatron-attention-needs-flash-attn",
        ["flash (verl default)", "flash_attn = false", "megatron_attention_backend = 'fused'"],
    ),
    # FSDP: transformers' flash_attention_2 imports flash-attn's kernels; a torch attention runs without them
    (
        "fsdp-attention-said-none",
        head(gpus=1, model="synthetic:qwen2.5-0.5b") + "flash_attn = false\n[base]\nrollout_batch = 8\n",
        "fsdp-attention-needs-flash-attn",
        ["flash_attention_2 (verl default)", "flash_attn = false", "'sdpa'"],
    ),
    (
        "fsdp-attention-said-none-flash2",
        head(gpus=1, model="synthetic:qwen2.5-0.5b")
        + "flash_attn = false\n[base]\nrollout_batch = 8\nattn_implementation = 'flash_attention_2'\n",
        "fsdp-attention-needs-flash-attn",
        ["attn_implementation flash_attention_2 needs"],
    ),
    (
        "fsdp-attention-said-none-sdpa",
        head(gpus=1, model="synthetic:qwen2.5-0.5b")
        + "flash_attn = false\n[base]\nrollout_batch = 8\nattn_implementation = 'sdpa'\n",
        None,
        [],
    ),
    (
        "fsdp-attention-unsaid",
        head(gpus=1, model="synthetic:qwen2.5-0.5b") + "[base]\nrollout_batch = 8\n",
        None,
        [],
    ),
    (
        "megatron-kv-replicate",
        head(gpus=4, model="synthetic:qwen2.5-0.5b", backend="megatron")
        + "[base]\ntp = 2\nrollout_batch = 16\n[overrides]\n",
        None,
        [],
    ),
    (
        "megatron-tp-pp-dp",
        head(gpus=6, backend="megatron") + "[base]\ntp = 2\npp = 2\nrollout_batch = 12\n",
        "megatron-tp-pp-dp",
        ["TP 2 x PP 2", "6 GPUs"],
    ),
    (
        "pp-layers",
        head(gpus=4, model="synthetic:qwen2.5-1.5b", backend="megatron") + "[base]\npp = 3\n",
        "megatron-tp-pp-dp",
        [],
    ),
    ("pp-fsdp", head(gpus=4) + "[base]\npp = 2\n", "pp-megatron-only", ["2"]),
    (
        "ulysses-padding",
        head(gpus=4) + "[base]\nulysses_sp = 2\nuse_remove_padding = false\n",
        "ulysses-needs-remove-padding",
        ["2"],
    ),
    ("ulysses-gpus", head(gpus=4) + "[base]\nulysses_sp = 3\n", "ulysses-divides-gpus", ["3", "4"]),
    ("ulysses-megatron", head(gpus=4, backend="megatron") + "[base]\nulysses_sp = 2\n", "ulysses-fsdp-only", []),
    (
        "train-batch-divisible",
        head(gpus=8) + "[base]\nrollout_batch = 10\nrollout_n = 3\n",
        "train-batch-divisible",
        ["10 x n 3 = 30", "8"],
    ),
    (
        "mini-gt-train",
        head(gpus=4) + "[base]\nrollout_batch = 16\nppo_mini_batch_size = 32\n",
        "train-batch-vs-mini-batch",
        ["16", "32"],
    ),
    (
        "mini-split",
        head(gpus=4) + "[base]\nrollout_batch = 18\nrollout_n = 4\nppo_mini_batch_size = 'rollout_batch/4'\n",
        "mini-batch-split",
        ["rollout_batch/4", "18"],
    ),
    (
        "mini-vs-micro",
        head(gpus=4) + "[base]\nrollout_batch = 16\nrollout_n = 5\nppo_micro_batch_size_per_gpu = 8\n",
        "mini-vs-micro-batch",
        ["20 responses", "8"],
    ),
    (
        "log-prob-micro",
        head(gpus=4) + "[base]\nrollout_batch = 16\nrollout_n = 5\nppo_micro_batch_size_per_gpu = 4\n"
        "log_prob_micro_batch_size_per_gpu = 8\n",
        "log-prob-micro-batch",
        ["20 responses", "8"],
    ),
    (
        "megatron-minimal-batch",
        head(gpus=8, backend="megatron") + "[base]\ntp = 2\nrollout_batch = 6\nrollout_n = 2\n"
        "ppo_micro_batch_size_per_gpu = 4\n",
        "train-batch-divisible",
        ["12", "16"],
    ),
    ("lora-rank-vllm", head(gpus=4) + "[base]\nlora_rank = 1024\n", "lora-rank-vllm", ["1024", "512"]),
    ("lora-fsdp1-1gpu", head(gpus=1) + "[base]\nlora_rank = 8\nstrategy = 'fsdp'\n", "lora-1gpu-needs-fsdp2", []),
    (
        "bypass-lora-kl-override",
        head(gpus=1) + '[base]\nlora_rank = 8\n[overrides]\n"algorithm.rollout_correction.bypass_mode" = true\n',
        "bypass-lora-ref-first",
        ["use_kl_loss = false", "bypass_mode = false"],
    ),
    (
        "bypass-lora-kl-plus-prefix",
        head(gpus=1) + '[base]\nlora_rank = 8\n[overrides]\n"+algorithm.rollout_correction.bypass_mode" = true\n',
        "bypass-lora-ref-first",
        [],
    ),
    (
        "bypass-lora-no-kl",
        head(gpus=1) + "[base]\nlora_rank = 8\nuse_kl_loss = false\n[overrides]\n"
        '"algorithm.rollout_correction.bypass_mode" = true\n',
        None,
        [],
    ),
    (
        "bypass-full-fine-tune",
        head(gpus=1) + '[base]\nlora_rank = 0\n[overrides]\n"algorithm.rollout_correction.bypass_mode" = true\n',
        None,
        [],
    ),
    (
        "bypass-off-lora-kl",
        head(gpus=1) + '[base]\nlora_rank = 8\n[overrides]\n"algorithm.rollout_correction.bypass_mode" = false\n',
        None,
        [],
    ),
    (
        "offload-fsdp-only",
        head(gpus=8, backend="megatron") + "[base]\noffload = 'param+activation'\n",
        "offload-backend",
        ["activation"],
    ),
    (
        "offload-policy-fsdp1",
        head(gpus=4) + "[base]\noffload = 'policy'\nstrategy = 'fsdp'\n",
        "offload-policy-needs-fsdp2",
        [],
    ),
    (
        "length-max-model-len",
        head() + "[base]\nprompt_length = 512\nresponse_length = 1024\nmax_model_len = 1024\n",
        "length-vs-max-model-len",
        ["512", "1024", "1536"],
    ),
    (
        "length-context",
        head(model="synthetic:smollm2-135m", gpus=1) + "[base]\nprompt_length = 4096\nresponse_length = 8192\n",
        "length-vs-context",
        ["12288", "8192"],
    ),
    ("batched-tokens", head() + "[base]\nmax_num_batched_tokens = 128\n", "batched-tokens-vs-seqs", ["128", "256"]),
]


@pytest.mark.parametrize(("name", "text", "rule", "numbers"), CONSTRAINTS, ids=[c[0] for c in CONSTRAINTS])
def test_constraint(name: str, text: str, rule: str | None, numbers: list[str], tmp_path: Path) -> None:
    (c,) = plan(text, tmp_path)
    if rule is None:
        assert c.status == "ok", c.reason
        return
    assert c.status == "invalid"
    assert c.reason.startswith(rule + ":"), c.reason
    for n in numbers:
        assert n in c.reason, (n, c.reason)
    assert c.argv[:3] == ENTRY  # the command is still there, for inspection


def test_kv_heads_replicated_when_tp_is_a_multiple(tmp_path: Path) -> None:
    # Qwen2.5-0.5B: 14 heads, 2 KV heads: vLLM TP 2 splits, TP 7 is not allowed (14 % 7 == 0 but 7 % 2 != 0).
    cells = plan(
        head(gpus=14, model="synthetic:qwen2.5-0.5b") + "[axes]\ntp = [2, 7, 14]\n[base]\nrollout_batch = 14\n"
        "ppo_micro_batch_size_per_gpu = 5\nlog_prob_micro_batch_size_per_gpu = 5\n",
        tmp_path,
    )
    by_tp = {c.axes["tp"]: c for c in cells}
    assert by_tp[2].status == "ok", by_tp[2].reason
    assert by_tp[7].reason.startswith("tp-vs-kv-heads")
    assert by_tp[14].status == "ok", by_tp[14].reason


# --- seed recipes (DESIGN.md) --------------------------------------------------------------------------------
A = "actor_rollout_ref"
SEED_LORA_FSDP = {
    "algorithm.adv_estimator": "grpo",
    f"{A}.model.path": "Qwen/Qwen2.5-32B-Instruct",
    f"{A}.model.lora_rank": 32,
    f"{A}.model.lora_alpha": 32,
    f"{A}.model.target_modules": "all-linear",
    f"{A}.actor.optim.lr": 3e-5,
    f"{A}.actor.fsdp_config.param_offload": True,
    f"{A}.actor.fsdp_config.optimizer_offload": True,
    f"{A}.ref.fsdp_config.param_offload": True,
    f"{A}.rollout.name": "vllm",
    f"{A}.rollout.tensor_model_parallel_size": 4,
    f"{A}.actor.ulysses_sequence_parallel_size": 2,
    "data.train_batch_size": 180,
    f"{A}.actor.ppo_mini_batch_size": 180,
    f"{A}.rollout.n": 5,
    f"{A}.rollout.gpu_memory_utilization": 0.3,
    f"{A}.rollout.max_model_len": 1536,
    f"{A}.rollout.max_num_batched_tokens": 1536,
    f"{A}.rollout.layered_summon": True,
    "data.max_prompt_length": 512,
    "data.max_response_length": 1024,
    "trainer.n_gpus_per_node": 4,
    "trainer.nnodes": 1,
    "trainer.test_freq": 5,
}
SEED_MEGATRON = {
    "model_engine": "megatron",
    "algorithm.adv_estimator": "grpo",
    f"{A}.model.path": "Qwen/Qwen2.5-32B-Instruct",
    f"{A}.actor.megatron.tensor_model_parallel_size": 8,
    f"{A}.actor.megatron.pipeline_model_parallel_size": 1,
    f"{A}.rollout.tensor_model_parallel_size": 8,
    f"{A}.actor.megatron.param_offload": True,
    f"{A}.actor.megatron.optimizer_offload": True,
    f"{A}.ref.megatron.param_offload": True,
    "data.train_batch_size": 512,
    f"{A}.actor.ppo_mini_batch_size": 256,
    f"{A}.actor.ppo_micro_batch_size_per_gpu": 1,
    f"{A}.rollout.n": 5,
    f"{A}.rollout.name": "vllm",
    f"{A}.rollout.gpu_memory_utilization": 0.6,
    "data.max_prompt_length": 2048,
    "data.max_response_length": 6144,
    "trainer.n_gpus_per_node": 8,
    "trainer.nnodes": 1,
}


@pytest.mark.parametrize(
    ("matrix", "cell", "expected"),
    [
        ("h100.toml", "lora32-off_param+optimizer-tp4-rb180", SEED_LORA_FSDP),
        ("h20.toml", "full-off_param+optimizer-tp8-rb512", SEED_MEGATRON),
    ],
)
def test_seed_recipe_is_a_cell(matrix: str, cell: str, expected: dict, tmp_path: Path) -> None:
    cells = plan_matrix(load_matrix(MATRICES / matrix), "train", out_dir=tmp_path, validate_with_verl=False)
    (c,) = [c for c in cells if c.id == cell]
    assert c.status == "ok", c.reason
    d = argv_dict(c.argv)
    for k, v in expected.items():
        assert k in d, k
        assert d[k] == v, (k, d[k], v)
    assert not any("grad_offload" in k for k in d)
    if "model_engine" not in expected:
        assert "model_engine" not in d


# --- CLI -----------------------------------------------------------------------------------------------------
def test_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["plan", str(MATRICES / "h100-2gpu.toml"), "--format", "json", "--no-verl-check", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    cells = json.loads(out)
    assert len(cells) == 8
    for c in cells:
        assert {"id", "axes", "status", "reason", "argv", "env", "full_id", "n_gpus"} <= set(c)
        assert c["argv"][:3] == ENTRY and c["status"] == "ok"
        assert c["env"]["VERL_FILE_LOGGER_PATH"].startswith(str(tmp_path.resolve()))


def test_cli_table(capsys: pytest.CaptureFixture) -> None:
    assert main(["plan", str(MATRICES / "h20.toml"), "--no-verl-check"]) == 0
    out = capsys.readouterr().out
    assert "full-off_param+optimizer-tp8-rb512" in out and "16 ok / 16 cells" in out
    assert "verl.trainer.main_ppo" not in out


def test_cli_strict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "m.toml"
    path.write_text(head(gpus=4) + "[axes]\ntp = [1, 3]\n")
    assert main(["plan", str(path), "--no-verl-check"]) == 0
    capsys.readouterr()
    assert main(["plan", str(path), "--no-verl-check", "--strict", "--format", "json"]) == 2
    out, err = capsys.readouterr()
    assert [c["status"] for c in json.loads(out)] == ["ok", "invalid"]
    assert "1 of 2 cells are not ok" in err


def test_plan_notes_a_setting_the_generation_s_image_torch_lacks(tmp_path, capsys):
    args = ["--no-verl-check", "--out", str(tmp_path), "--format", "json"]
    assert main(["plan", str(MATRICES / "h200-1gpu-14b-pinned.toml"), *args]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)) == 8  # the note goes to stderr: the JSON stays whole
    assert "note: torch 2.11.0 (the h200 image) lacks allocator key pinned_max_round_threshold_mb" in err
    assert main(["plan", str(MATRICES / "h200-1gpu-14b.toml"), *args]) == 0
    assert "note:" not in capsys.readouterr().err
