"""Every planned command composes with the installed verl 0.9.1's Hydra config and passes verl's own CPU-side
checks; what verl would reject at run time is an invalid cell carrying verl's message."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.matrix import load_matrix, parse_matrix
from suite.plan.planner import plan_matrix

pytest.importorskip("verl")

MATRICES = Path(__file__).resolve().parent.parent / "suite" / "matrices"
SHIPPED = sorted(MATRICES.glob("*.toml"))
HEAD = """[matrix]
name = "t"
gpu = "h100"
gpus_per_node = 4
model = "synthetic:qwen2.5-7b"
backend = "{backend}"
"""


@pytest.mark.parametrize("profile", ["bench", "train"])
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_cell_is_valid_for_verl(path: Path, profile: str, verl_validator, tmp_path: Path) -> None:
    m = load_matrix(path)
    cells = plan_matrix(m, profile, out_dir=tmp_path, validator=verl_validator)
    assert cells
    # the suite's own rules may refuse a cell verl would accept (bypass-lora-ref-first: it crashed on the GPU);
    # every other cell must be one verl's config accepts
    refused = [c for c in cells if c.status == "invalid" and (c.reason or "").startswith("bypass-lora-ref-first")]
    bad = [(c.id, c.reason) for c in cells if c.status != "ok" and c not in refused]
    assert not bad, bad[:3]
    assert len(refused) < len(cells)


def test_verl_check_is_what_marks_cells(verl_validator) -> None:
    """The check composes for real: the config it returns is verl's, with the cell's values in it."""
    m = load_matrix(MATRICES / "h20.toml")
    (c,) = [
        c
        for c in plan_matrix(m, out_dir="/tmp/x", validate_with_verl=False)
        if c.id.endswith("tp8-rb512") and "param+optimizer" in c.id
    ]
    cfg = verl_validator.compose(c.argv[3:])
    assert cfg.model_engine == "megatron"
    assert cfg.actor_rollout_ref.actor.strategy == "megatron"  # the group choice swapped the actor config
    assert cfg.actor_rollout_ref.actor.megatron.tensor_model_parallel_size == 8
    assert cfg.actor_rollout_ref.actor.megatron.param_offload is True
    assert cfg.data.train_batch_size == 512
    assert verl_validator.check(c.argv[3:]) is None


BROKEN = [
    # (name, backend, [overrides] text, fragments of the reason)
    (
        "removed-grad-offload",
        "megatron",
        "'actor_rollout_ref.actor.megatron.grad_offload' = true",
        ["Could not override 'actor_rollout_ref.actor.megatron.grad_offload'"],
    ),
    ("unknown-key", "fsdp", "'actor_rollout_ref.rollout.tensor_parallel' = 2", ["tensor_parallel", "not in struct"]),
    ("fsdp-key-on-megatron", "megatron", "'actor_rollout_ref.actor.fsdp_config.param_offload' = true", ["fsdp_config"]),
    (
        "type-float",
        "fsdp",
        "'actor_rollout_ref.rollout.gpu_memory_utilization' = 'lots'",
        ["gpu_memory_utilization='lots'", "0.5 (float)"],
    ),
    ("type-bool", "fsdp", "'actor_rollout_ref.actor.use_kl_loss' = 1", ["use_kl_loss=1", "(bool)"]),
    (
        "type-int",
        "megatron",
        "'actor_rollout_ref.actor.megatron.tensor_model_parallel_size' = 'four'",
        ["tensor_model_parallel_size='four'"],
    ),
    (
        "sync-mode-removed",
        "fsdp",
        "'actor_rollout_ref.rollout.mode' = 'sync'",
        ["Rollout mode 'sync' has been removed"],
    ),
    (
        "micro-batch-both",
        "fsdp",
        "'actor_rollout_ref.actor.ppo_micro_batch_size' = 16",
        ["validate_config", "ppo_micro_batch_size"],
    ),
    ("loss-agg-mode", "fsdp", "'actor_rollout_ref.actor.loss_agg_mode' = 'mean'", ["Invalid loss_agg_mode: mean"]),
    ("hydra-syntax", "fsdp", "'trainer.logger' = '[console'", []),
    ("add-existing", "fsdp", "'+actor_rollout_ref.rollout.n' = 2", ["Could not append", "rollout.n"]),
]


@pytest.mark.parametrize(("name", "backend", "override", "fragments"), BROKEN, ids=[b[0] for b in BROKEN])
def test_verl_rejects(
    name: str, backend: str, override: str, fragments: list[str], verl_validator, tmp_path: Path
) -> None:
    m = parse_matrix(HEAD.format(backend=backend) + "[base]\ntp = 4\n[overrides]\n" + override + "\n")
    (c,) = plan_matrix(m, out_dir=tmp_path, validator=verl_validator)
    if name == "hydra-syntax":
        # A TOML string is quoted into the argv: Hydra reads it back as the same string, so it is valid.
        assert c.status == "ok", c.reason
        return
    assert c.status == "invalid"
    assert c.reason.startswith("verl-config: "), c.reason
    for f in fragments:
        assert f in c.reason, (f, c.reason)


def test_raw_hydra_string_errors_are_verl_config_errors(verl_validator) -> None:
    assert verl_validator.check(["trainer.logger=[console"]).startswith("hydra: ")
    assert verl_validator.check(["data.train_batch_size=${oops"]).startswith("hydra: ")


def test_no_verl_check_keeps_cells_ok(tmp_path: Path) -> None:
    m = parse_matrix(HEAD.format(backend="fsdp") + "[overrides]\n'actor_rollout_ref.rollout.tensor_parallel' = 2\n")
    (c,) = plan_matrix(m, out_dir=tmp_path, validate_with_verl=False)
    assert c.status == "ok"


def test_cached_results_match_uncached(verl_validator, tmp_path: Path) -> None:
    """A fresh validator (no caches) gives the same verdicts as the shared, warmed one."""
    from suite.plan.verl_check import VerlValidator

    text = HEAD.format(backend="fsdp") + (
        "[axes]\ntp = [1, 2, 4]\nrollout_batch = [16, 32]\noffload = ['none', 'param']\n"
        "[overrides]\n'actor_rollout_ref.actor.loss_agg_mode' = 'token-mean'\n"
    )
    m = parse_matrix(text)
    warm = plan_matrix(m, out_dir=tmp_path, validator=verl_validator)
    fresh = plan_matrix(m, out_dir=tmp_path, validator=VerlValidator())
    assert [(c.id, c.status, c.reason) for c in warm] == [(c.id, c.status, c.reason) for c in fresh]
    assert all(c.status == "ok" for c in warm)
