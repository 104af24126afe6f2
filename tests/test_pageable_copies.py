"""suite/run/pageable_copies.py and `[base] pageable_host_copies`: loaded through verl's own external-modules hook,
the module replaces verl 0.9.1's FSDP2 model and optimizer offload with blocking copies to pageable memory, and
turns off the pinned sleep backup of vLLM's CuMemAllocator as that module is imported; the plan loads it for the
cells that ask, and the memory planner drops the pinned rounding of exactly those copies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from suite.matrix import load_matrix, parse_matrix
from suite.memory.calibration import default_calibration
from suite.memory.host import host_states, predict_host
from suite.memory.predict import annotate_cells
from suite.memory.settings import settings_from_argv, settings_from_cell
from suite.plan.cell import EXTERNAL_MODULES_ENV, EXTERNAL_MODULES_KEY, PAGEABLE_COPIES_MODULE, ROPE_FP32_MODULE
from suite.plan.planner import plan_matrix

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]
MATRICES = ROOT / "suite" / "matrices"
GIB = 2**30

# A stand-in for vLLM's cumem module (vLLM is not installed here): the one name the patch sets, read as sleep() does.
FAKE_CUMEM = "PIN_MEMORY = True\ndef backup_pinned():\n    return PIN_MEMORY\n"

# In a fresh interpreter: verl imported first (it imports VERL_USE_EXTERNAL_MODULES), then what the patch touches.
CHECK = """
import json, sys, torch, verl
from verl.utils import fsdp_utils
from verl.utils.fsdp_utils import offload_fsdp_model_to_cpu, offload_fsdp_optimizer
import vllm.device_allocator.cumem as cumem
model = torch.nn.Linear(4, 3)
opt = torch.optim.AdamW(model.parameters())
model(torch.ones(2, 4)).sum().backward()
opt.step()
offload_fsdp_model_to_cpu(model)  # FSDP version 0 for a plain module: verl's FSDP2 branch
offload_fsdp_optimizer(opt)
states = [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
print(json.dumps({
    "fsdp2": getattr(fsdp_utils.offload_fsdp2_model_to_cpu, "_grpo_suite_pageable", False),
    "optimizer": getattr(offload_fsdp_optimizer, "_grpo_suite_pageable", False),
    "pin_memory": cumem.backup_pinned(),
    "devices": sorted({str(p.device) for p in model.parameters()} | {str(v.device) for v in states}),
    "finders": sum(1 for f in sys.meta_path if getattr(f, "_grpo_suite_pageable", False)),
}))
"""


def _check(
    tmp_path: Path,
    env_value: str | None,
    code: str = CHECK,
    cumem: str = FAKE_CUMEM,
    extra_env: dict[str, str] | None = None,
) -> dict:
    fake = tmp_path / "fake-vllm"
    (fake / "vllm" / "device_allocator").mkdir(parents=True, exist_ok=True)
    (fake / "vllm" / "__init__.py").write_text("")
    (fake / "vllm" / "device_allocator" / "__init__.py").write_text("")
    (fake / "vllm" / "device_allocator" / "cumem.py").write_text(cumem)
    env = {k: v for k, v in os.environ.items() if k != EXTERNAL_MODULES_ENV and not k.startswith("GRPO_SUITE_")}
    env.update(extra_env or {})
    if env_value is not None:
        env[EXTERNAL_MODULES_ENV] = env_value
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(fake), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    got["announced"] = sorted(
        line.split(": ", 1)[1].split(" patched", 1)[0]
        for line in out.stderr.splitlines()
        if line.startswith("[grpo-suite] pageable host copies: ")
    )
    got["registered"] = sorted(
        line.split(": ", 1)[1].split(" patched", 1)[0]
        for line in out.stderr.splitlines()
        if line.startswith("[grpo-suite] registered host copies: ")
    )
    return got


def import_error(*modules: str) -> str:
    """Code for `_check`: import `modules` in order and print the ImportError's text (None where all import)."""
    imports = "".join(f"    import {m}\n" for m in modules)
    return f"""
import json
try:
{imports}    print(json.dumps({{"error": None}}))
except ImportError as exc:
    print(json.dumps({{"error": str(exc)}}))
"""


def test_without_the_module_verl_and_vllm_run_as_they_are(tmp_path: Path) -> None:
    pytest.importorskip("verl")
    got = _check(tmp_path, None)
    assert (got["fsdp2"], got["optimizer"], got["pin_memory"], got["finders"]) == (False, False, True, 0)
    assert got["announced"] == []


def test_through_verls_hook_every_copy_is_pageable(tmp_path: Path) -> None:
    pytest.importorskip("verl")
    got = _check(tmp_path, f"{ROPE_FP32_MODULE},{PAGEABLE_COPIES_MODULE}")
    assert (got["fsdp2"], got["optimizer"], got["pin_memory"], got["finders"]) == (True, True, False, 1)
    assert got["devices"] == ["cpu"]  # the offload still moves parameters and Adam states to the host
    assert got["announced"] == ["verl.utils.fsdp_utils", "vllm.device_allocator.cumem"]  # once each, in the log


def test_modules_imported_before_it_are_patched_too_and_install_is_idempotent(tmp_path: Path) -> None:
    pytest.importorskip("verl")
    code = """
import json, sys
import vllm.device_allocator.cumem as cumem
import verl.utils.fsdp_utils as fu
import suite.run.pageable_copies as pc
pc.install(); pc.install()
print(json.dumps({"pin": cumem.PIN_MEMORY, "fsdp2": getattr(fu.offload_fsdp2_model_to_cpu, "_grpo_suite_pageable", False),
                  "finders": sum(1 for f in sys.meta_path if getattr(f, "_grpo_suite_pageable", False))}))
"""
    got = _check(tmp_path, None, code)
    announced = ["verl.utils.fsdp_utils", "vllm.device_allocator.cumem"]  # once each, install() thrice
    assert got == {"pin": False, "fsdp2": True, "finders": 1, "announced": announced, "registered": []}


def test_the_finder_leaves_other_modules_and_missing_ones_alone(tmp_path: Path) -> None:
    code = """
import json, sys, importlib.util
import suite.run.pageable_copies as pc
finder = next(f for f in sys.meta_path if getattr(f, "_grpo_suite_pageable", False))
import json as j2
print(json.dumps({"other": finder.find_spec("json", None) is None,
                  "missing": importlib.util.find_spec("no_such_module_xyz") is None,
                  "json_ok": j2.dumps([1]) == "[1]"}))
"""
    assert _check(tmp_path, None, code) == {
        "other": True,
        "missing": True,
        "json_ok": True,
        "announced": [],
        "registered": [],
    }


def test_a_module_without_the_names_it_patches_fails_its_import(tmp_path: Path) -> None:
    # a vLLM whose cumem lost PIN_MEMORY would back up pinned while the cell reads as pageable: the import fails
    got = _check(
        tmp_path, None, import_error("suite.run.pageable_copies", "vllm.device_allocator.cumem"), cumem="OTHER = 1\n"
    )
    assert got["error"].startswith("pageable_host_copies: vllm.device_allocator.cumem has no PIN_MEMORY")
    assert got["announced"] == []


def test_the_preflight_probe_names_a_vllm_without_what_is_patched(tmp_path: Path) -> None:
    from suite.run import preflight as pf

    fake = tmp_path / "fake-vllm" / "vllm" / "device_allocator"
    fake.mkdir(parents=True)
    for init in (fake.parent / "__init__.py", fake / "__init__.py"):
        init.write_text("")
    (fake / "cumem.py").write_text("OTHER = 1\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path / "fake-vllm")])}
    got = pf.probe([PAGEABLE_COPIES_MODULE, pf.PAGEABLE_CUMEM], python=sys.executable, env=env)
    assert got.failure is None and got.errors[PAGEABLE_COPIES_MODULE] is None
    assert "vllm.device_allocator.cumem has no PIN_MEMORY" in str(got.errors[pf.PAGEABLE_CUMEM])


# -- the plan and the planner ----------------------------------------------------------------------------------


def test_the_shipped_matrices_load_it_and_name_it_in_their_ids(tmp_path: Path) -> None:
    ids = {}
    for name in ("h100-1gpu-7b-pageable", "h200-1gpu-14b-pageable"):
        m = load_matrix(MATRICES / f"{name}.toml")
        [cell] = plan_matrix(m, "bench", out_dir=tmp_path / name, validate_with_verl=False)
        assert cell.setting(EXTERNAL_MODULES_KEY) == PAGEABLE_COPIES_MODULE
        ids[name] = (cell.id, m.matrix.reference, m.matrix.reference_matrix)
    # at 7B the pinned recipe runs, and is the reference; at 14B only the pageable one fits the host
    seven, ref7, where7 = ids["h100-1gpu-7b-pageable"]
    assert seven == ref7 + "-pageable" and where7 == "h100-1gpu-7b-fa"
    fourteen, ref14, where14 = ids["h200-1gpu-14b-pageable"]
    assert fourteen.endswith("-pageable") and fourteen == ref14 and where14 is None


HEAD = """
[matrix]
name = "pg"
gpu = "h200"
gpus_per_node = 1
dataset = "gsm8k"
model = "synthetic:qwen2.5-14b"
backend = "fsdp"
host_memory_gb = 125
[axes]
offload = ["param+optimizer"]
rollout_batch = [45]
pageable_host_copies = [true, false]
[base]
lora_rank = 32
lora_alpha = 32
target_modules = "all-linear"
layered_summon = true
load_format = "safetensors"
prompt_length = 512
response_length = 1024
rollout_n = 5
ppo_mini_batch_size = "rollout_batch"
ppo_micro_batch_size_per_gpu = 15
log_prob_micro_batch_size_per_gpu = 15
max_model_len = 1536
max_num_batched_tokens = 1536
gpu_memory_utilization = 0.3
strategy = "{strategy}"
"""


def _cells(tmp_path: Path, strategy: str = "fsdp2") -> dict:
    m = parse_matrix(HEAD.format(strategy=strategy), source="pg.toml")
    cells = annotate_cells(plan_matrix(m, "bench", out_dir=tmp_path, validate_with_verl=False))
    return {c.id.rsplit("-", 1)[-1]: c for c in cells}


def _states(cell):
    s = settings_from_cell(cell)
    # a result's recorded command reads the same (what `memory validate` checks a measured run against)
    again = settings_from_argv(
        list(cell.argv), model=cell.model, gpu=cell.gpu, n_gpus=cell.n_gpus, backend=cell.backend
    )
    assert again.pageable_copies == s.pageable_copies
    return s, host_states(s, default_calibration())


def test_the_planner_drops_exactly_the_rounding_of_the_copies_made_pageable(tmp_path: Path) -> None:
    cells = _cells(tmp_path)
    assert set(cells) == {"pageable", "pinned"}
    assert cells["pinned"].setting(EXTERNAL_MODULES_KEY) is None
    s_pin, pin = _states(cells["pinned"])
    s_pg, pg = _states(cells["pageable"])
    assert (s_pin.pageable_copies, s_pg.pageable_copies) == (False, True)
    # the 14B recipe's numbers: fp32 weights 55.5 GiB (40.0 rounding), vLLM's backup 27.8 (21.5 rounding)
    assert pin.offloaded_params.raw / GIB == pytest.approx(55.5, abs=0.1)
    assert pin.offloaded_params.rounding / GIB == pytest.approx(40.0, abs=0.1)
    assert pin.vllm_sleep_copy.rounding / GIB == pytest.approx(21.5, abs=0.1)
    for part in ("offloaded_params", "vllm_sleep_copy", "optimizer_states"):
        assert getattr(pg, part).raw == getattr(pin, part).raw, part  # the same bytes
        assert getattr(pg, part).rounding == 0.0, part  # none of them rounded
    drop = predict_host(s_pin).peak_gib - predict_host(s_pg).peak_gib
    assert drop == pytest.approx((pin.offloaded_params.rounding + pin.vllm_sleep_copy.rounding) / GIB + 0.1, abs=0.15)
    # on a 125 GiB host: the pinned recipe is over Ray's 0.95 threshold, the pageable one under it
    assert cells["pinned"].status == "predicted-host-oom" and cells["pageable"].status == "ok"
    assert cells["pageable"].predicted_host_memory_gb == pytest.approx(109.8, abs=0.1)
    assert cells["pageable"].predicted_memory_gb == cells["pinned"].predicted_memory_gb  # the GPU is untouched


def test_fsdp1_keeps_its_pinned_flat_parameters(tmp_path: Path) -> None:
    # verl's FSDP1 offload moves flat parameters with its own non-blocking copy, which the module leaves alone
    cells = _cells(tmp_path, strategy="fsdp")
    _, pin = _states(cells["pinned"])
    _, pg = _states(cells["pageable"])
    assert pg.offloaded_params == pin.offloaded_params and pg.offloaded_params.rounding > 0
    assert pg.vllm_sleep_copy.rounding == 0.0 < pin.vllm_sleep_copy.rounding


def test_the_preflight_imports_it_for_the_cells_that_load_it(tmp_path: Path) -> None:
    from suite.run import preflight as pf

    cells = list(_cells(tmp_path).values())
    needs = pf.needs(cells)
    need = {n.module: n for n in needs}[PAGEABLE_COPIES_MODULE]
    assert need.package == "grpo-suite" and [c.rsplit("-", 1)[-1] for c in need.cells] == ["pageable"]
    # the modules it patches are probed after it, for the same cells
    order = [n.module for n in needs]
    after = order[order.index(PAGEABLE_COPIES_MODULE) + 1 :]
    assert after[:2] == [pf.PAGEABLE_FSDP_UTILS, pf.PAGEABLE_CUMEM]
    assert {n.module: n.cells for n in needs}[pf.PAGEABLE_CUMEM] == need.cells
    from suite.run import pageable_copies as pc

    assert (pf.PAGEABLE_FSDP_UTILS, pf.PAGEABLE_CUMEM) == (pc.FSDP_UTILS, pc.CUMEM)
    got = pf.probe([PAGEABLE_COPIES_MODULE], python=sys.executable, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert got.failure is None and got.errors == {PAGEABLE_COPIES_MODULE: None}
    hint = pf.hint(need, "ModuleNotFoundError: No module named 'suite'", {})
    assert hint is not None and "PYTHONPATH" in hint and "pageable_host_copies" in hint


def test_a_non_boolean_value_is_refused_naming_the_field() -> None:
    with pytest.raises(Exception, match="pageable_host_copies"):
        parse_matrix(HEAD.format(strategy="fsdp2").replace("[true, false]", '["yes"]'), source="pg.toml")
