"""suite/run/rope_fp32.py and `[matrix] keep_rope_fp32`: a cast of transformers' Qwen2 to bf16 (what verl 0.9.1's
`module.to(model_dtype)` does to a bf16 actor) puts RoPE's frequencies in bf16 and its angles whole radians off;
with the module loaded through verl's own external-modules hook they stay fp32 and the angles exact; the plan
loads it in the workers of cells with a 16-bit actor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from suite.matrix import parse_matrix  # noqa: E402
from suite.plan.cell import EXTERNAL_MODULES_ENV, EXTERNAL_MODULES_KEY, ROPE_FP32_MODULE  # noqa: E402
from suite.plan.planner import plan_matrix  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def rope_fp32():
    """The module, installed for one test and taken out after it (importing it wraps torch.nn.Module._apply for
    the whole process, as it should in verl's workers and must not in the rest of this test run)."""
    import importlib

    saved = torch.nn.Module._apply
    mod = importlib.import_module("suite.run.rope_fp32")
    mod.install()
    yield mod
    torch.nn.Module._apply = saved


# In a fresh interpreter: verl imported first (it imports VERL_USE_EXTERNAL_MODULES), then a Qwen2 with the
# 14B's head size (128) and RoPE theta cast to bf16 as verl casts its actor; the angles against fp32 ones.
CHECK = """
import json, torch, verl
from transformers import AutoConfig
from transformers.models.qwen2.modeling_qwen2 import Qwen2Model, Qwen2RotaryEmbedding
from suite.models.archs import ARCHS
cfg = AutoConfig.for_model(**ARCHS["qwen2.5-14b"].hf_config())
cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads = 1, 256, 2, 1
cfg.intermediate_size, cfg.vocab_size = 64, 100
m = Qwen2Model(cfg).to(torch.bfloat16)
pos = torch.arange(1211)[None]
c16, s16 = m.rotary_emb(torch.zeros(1, 1, dtype=torch.bfloat16), pos)
c32, s32 = Qwen2RotaryEmbedding(cfg)(torch.zeros(1, 1), pos)
err = (c16.float() - c32.to(torch.bfloat16).float()).abs()
print(json.dumps({"inv": str(m.rotary_emb.inv_freq.dtype), "orig": str(m.rotary_emb.original_inv_freq.dtype),
                  "err": err.max().item(), "err_first64": err[0, :64].max().item(),
                  "weights": str(m.layers[0].mlp.up_proj.weight.dtype)}))
"""


def _check(env_value: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != EXTERNAL_MODULES_ENV}
    if env_value is not None:
        env[EXTERNAL_MODULES_ENV] = env_value
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    out = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_bf16_cast_puts_ropes_frequencies_in_bf16_and_its_angles_radians_off() -> None:
    got = _check(None)
    assert (got["inv"], got["orig"], got["weights"]) == ("torch.bfloat16",) * 3
    assert got["err"] > 1.0  # cos off by more than 1 at some position below 1211: the angle is wrong, not rounded
    assert got["err_first64"] > 0.01  # already past bf16's rounding of cos in the first 64 positions


def test_loaded_through_verls_hook_the_frequencies_stay_fp32_and_the_angles_exact() -> None:
    got = _check(ROPE_FP32_MODULE)
    assert (got["inv"], got["orig"], got["weights"]) == ("torch.float32", "torch.float32", "torch.bfloat16")
    assert got["err"] == 0.0  # the fp32 module's cos and sin, rounded to bf16 as transformers returns them


def _rotary(**rope) -> object:
    from transformers import AutoConfig
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding

    from suite.models.archs import ARCHS

    cfg = AutoConfig.for_model(**ARCHS["qwen2.5-7b"].hf_config())
    if rope:
        cfg.rope_parameters = {**cfg.rope_parameters, **rope}
    return Qwen2RotaryEmbedding(cfg)


@pytest.mark.parametrize("rope", [{}, {"rope_type": "linear", "factor": 4.0}], ids=["default", "linear"])
def test_restore_recomputes_the_frequencies_of_the_modules_rope_type(rope_fp32, rope: dict) -> None:
    r = _rotary(**rope)
    exact = r.inv_freq.clone()
    r._buffers["inv_freq"] = exact.to(torch.bfloat16)
    r._buffers["original_inv_freq"] = exact.to(torch.bfloat16)
    assert rope_fp32.restore(r) is True
    assert r.inv_freq.dtype == torch.float32 and torch.equal(r.inv_freq, exact)
    assert torch.equal(r.original_inv_freq, exact)
    assert rope_fp32.restore(r) is False  # already fp32: untouched


def test_restore_leaves_other_modules_and_meta_tensors_alone(rope_fp32) -> None:
    lin = torch.nn.Linear(4, 4).to(torch.bfloat16)
    assert rope_fp32.restore(lin) is False and lin.weight.dtype == torch.bfloat16
    r = _rotary()
    r._buffers["inv_freq"] = torch.empty(r.inv_freq.shape, dtype=torch.bfloat16, device="meta")
    assert rope_fp32.restore(r) is False and r.inv_freq.is_meta
    odd = torch.nn.Module()
    odd.register_buffer("inv_freq", torch.ones(3, dtype=torch.bfloat16))  # no config to compute from
    assert rope_fp32.restore(odd) is False and odd.inv_freq.dtype == torch.bfloat16


def test_install_is_idempotent_and_casts_still_cast(rope_fp32) -> None:
    wrapped = torch.nn.Module._apply
    rope_fp32.install()
    assert torch.nn.Module._apply is wrapped and wrapped._grpo_suite_rope_fp32 is True
    r = _rotary().to(torch.bfloat16)
    assert r.inv_freq.dtype == torch.float32  # the wrapper, in this process
    net = torch.nn.Sequential(torch.nn.Linear(4, 4)).to(torch.float16)
    assert net[0].weight.dtype == torch.float16


def test_the_rest_of_the_test_run_casts_as_torch_does() -> None:
    assert not getattr(torch.nn.Module._apply, "_grpo_suite_rope_fp32", False)
    assert _rotary().to(torch.bfloat16).inv_freq.dtype == torch.bfloat16


# --- the plan --------------------------------------------------------------------------------------------------
HEAD = """[matrix]
name = "rope"
gpu = "h100"
gpus_per_node = 1
model = "synthetic:qwen2.5-0.5b"
backend = "{backend}"
{line}
[axes]
"actor_rollout_ref.actor.fsdp_config.model_dtype" = ["bf16", "fp32"]
{overrides}
[base]
rollout_batch = 8
"""


def _plan(tmp_path: Path, line: str = "", backend: str = "fsdp", overrides: str = "") -> dict[str, object]:
    m = parse_matrix(HEAD.format(line=line, backend=backend, overrides=overrides), source="rope.toml")
    cells = plan_matrix(m, "bench", out_dir=tmp_path, validate_with_verl=False)
    return {c.id.rsplit("-", 1)[-1]: c.setting(EXTERNAL_MODULES_KEY) for c in cells}


def test_cells_with_a_16_bit_actor_load_the_fix_and_fp32_ones_do_not(tmp_path: Path) -> None:
    assert _plan(tmp_path) == {"mdbf16": ROPE_FP32_MODULE, "mdfp32": None}


def test_keep_rope_fp32_false_runs_verl_as_it_is_and_true_every_fsdp_cell(tmp_path: Path) -> None:
    assert _plan(tmp_path / "off", "keep_rope_fp32 = false") == {"mdbf16": None, "mdfp32": None}
    assert _plan(tmp_path / "on", "keep_rope_fp32 = true") == {"mdbf16": ROPE_FP32_MODULE, "mdfp32": ROPE_FP32_MODULE}


def test_a_16_bit_reference_loads_the_fix_too(tmp_path: Path) -> None:
    # a full fine-tune's reference goes through the same module.to(); verl stores it in fp32 unless told otherwise
    ref = '[overrides]\n"actor_rollout_ref.ref.fsdp_config.model_dtype" = "bf16"\n'
    assert _plan(tmp_path, overrides=ref) == {"mdbf16": ROPE_FP32_MODULE, "mdfp32": ROPE_FP32_MODULE}
    fp32_ref = '[overrides]\n"actor_rollout_ref.ref.fsdp_config.model_dtype" = "fp32"\n'
    assert _plan(tmp_path / "fp32", overrides=fp32_ref) == {"mdbf16": ROPE_FP32_MODULE, "mdfp32": None}


def test_a_matrixs_own_external_modules_come_first(tmp_path: Path) -> None:
    own = f'[overrides]\n"+{EXTERNAL_MODULES_KEY}" = "my_models"\n'
    assert _plan(tmp_path, overrides=own) == {"mdbf16": f"my_models,{ROPE_FP32_MODULE}", "mdfp32": "my_models"}


def test_keep_rope_fp32_true_is_refused_for_megatron() -> None:
    text = HEAD.format(line="keep_rope_fp32 = true", backend="megatron", overrides="")
    with pytest.raises(Exception, match="keep_rope_fp32 = true applies to the fsdp backend"):
        parse_matrix(text, source="rope.toml")


def test_the_preflight_imports_the_fix_for_the_cells_that_load_it(tmp_path: Path) -> None:
    from suite.run import preflight as pf

    m = parse_matrix(HEAD.format(line="", backend="fsdp", overrides=""), source="rope.toml")
    cells = plan_matrix(m, "bench", out_dir=tmp_path, validate_with_verl=False)
    need = {n.module: n for n in pf.needs(cells)}[ROPE_FP32_MODULE]
    assert need.package == "grpo-suite" and [c.rsplit("-", 1)[-1] for c in need.cells] == ["mdbf16"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    got = pf.probe([ROPE_FP32_MODULE], python=sys.executable, env=env)
    assert got.failure is None and got.errors == {ROPE_FP32_MODULE: None}
    hint = pf.hint(need, "ModuleNotFoundError: No module named 'suite'", {})
    assert hint is not None and "PYTHONPATH" in hint and "keep_rope_fp32 = false" in hint
