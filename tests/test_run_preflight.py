"""Preflight: what the cells import, probed in a real child interpreter, diagnosed with the known fixes."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from unittest import mock

import pytest
from fakes.cells import with_argv

from suite.cli import main
from suite.matrix import load_matrix
from suite.plan.hydra import split_argv
from suite.plan.planner import plan_matrix
from suite.run import preflight as pf

MATRICES = Path(__file__).resolve().parents[1] / "suite" / "matrices"
FUSION = "actor_rollout_ref.actor.megatron.override_transformer_config.gradient_accumulation_fusion"


def cells_of(name: str, tmp_path: Path) -> list:
    return plan_matrix(load_matrix(MATRICES / f"{name}.toml"), "bench", out_dir=tmp_path, validate_with_verl=False)


def by_module(needs: list[pf.Need]) -> dict[str, pf.Need]:
    out = {n.module: n for n in needs}
    assert len(out) == len(needs)  # one row per module: its cells are merged
    return out


def test_overrides_of_drops_plus_prefixes_and_flags() -> None:
    argv = ["python3", "-m", "verl.trainer.main_ppo", "a.b=1", "+c=x=y", "++d.e=False", "--flag"]
    assert {o.key: o.value for o in split_argv(argv)[1]} == {"a.b": 1, "c": "x=y", "d.e": False}


def test_megatron_cells_need_the_stack_that_ran_and_no_apex(tmp_path: Path) -> None:
    cells = cells_of("h100-1gpu-megatron", tmp_path)
    needs = by_module(pf.needs(cells))
    assert set(needs) == {
        "torch",
        "ray",
        "vllm",
        "verl.trainer.main_ppo",
        "transformer_engine.pytorch",
        "megatron.core",
        "megatron.bridge",
        "modelopt",
    }
    assert needs["megatron.bridge"].package == "megatron-bridge"
    assert needs["modelopt"].package == "nvidia-modelopt"
    assert set(needs["megatron.core"].cells) == {c.id for c in cells if c.status == "ok"}
    # the plan turns gradient_accumulation_fusion off, so apex is not needed; flash-attn is FSDP's


def test_fusion_on_or_left_to_the_bridge_needs_apex(tmp_path: Path) -> None:
    cell = cells_of("h100-1gpu-megatron", tmp_path)[0]
    on = with_argv(cell, [a if FUSION not in a else f"++{FUSION}=True" for a in cell.argv])
    unset = with_argv(dataclasses.replace(cell, id="unset"), [a for a in cell.argv if FUSION not in a])
    assert len(unset.argv) == len(cell.argv) - 1
    needs = by_module(pf.needs([on, unset]))
    assert needs["fused_weight_gradient_mlp_cuda"].package == "apex"
    assert needs["fused_weight_gradient_mlp_cuda"].cells == (cell.id, "unset")


def test_fsdp_seed_needs_flash_attn_and_peft(tmp_path: Path) -> None:
    cells = cells_of("h100", tmp_path)
    needs = by_module(pf.needs(cells))
    assert "flash_attn.bert_padding" in needs  # remove-padding on
    assert "peft" in needs
    assert not any(m.startswith(("megatron", "transformer_engine")) for m in needs)
    runnable = {c.id for c in cells if c.status in ("ok", "predicted-oom")}
    assert set(needs["flash_attn.bert_padding"].cells) == runnable
    assert set(needs["peft"].cells) == {c for c in runnable if not c.startswith("full")}


def test_padded_fsdp_cells_need_no_flash_attn_and_full_ft_no_peft(tmp_path: Path) -> None:
    cells = cells_of("h100-1gpu-graphs", tmp_path)
    needs = by_module(pf.needs(cells))
    assert "flash_attn.bert_padding" not in needs
    assert set(needs["peft"].cells) == {c.id for c in cells if c.id.startswith("lora") and c.status == "ok"}
    full = [c for c in cells if c.id.startswith("full")]
    assert full and "peft" not in by_module(pf.needs(full))


def test_remove_padding_on_sdpa_needs_no_flash_attn(tmp_path: Path) -> None:
    """h200-1gpu-7b-rmpad: remove-padding cells on sdpa (verl 0.9.1 unpads in pure torch)."""
    cells = cells_of("h200-1gpu-7b-rmpad", tmp_path)
    rmpad = [c for c in cells if "-rmpad-" in c.id and c.status == "ok"]
    assert rmpad and all(c.setting("actor_rollout_ref.model.use_remove_padding") is True for c in rmpad)
    assert "flash_attn.bert_padding" not in by_module(pf.needs(rmpad))
    # the same cell on verl's default attention (flash_attention_2) needs it
    flash = [with_argv(c, [a for a in c.argv if "attn_implementation" not in a]) for c in rmpad[:1]]
    assert by_module(pf.needs(flash))["flash_attn.bert_padding"].cells == (rmpad[0].id,)


def test_unrun_and_foreign_cells_need_nothing(tmp_path: Path) -> None:
    cell = cells_of("h100-1gpu-graphs", tmp_path)[0]
    invalid = dataclasses.replace(cell, status="invalid", reason="x")
    foreign = with_argv(cell, [sys.executable, "train.py", "a=1"])
    assert pf.needs([invalid, foreign]) == []
    assert pf.check_cells([invalid, foreign]) == ([], "")


# -- probe: a real child interpreter -----------------------------------------------------------------------

CUBLAS_ERROR = (
    "OSError: /site/transformer_engine/libtransformer_engine.so: undefined symbol: "
    "cublasLtGroupedMatrixLayoutInit_internal, version libcublasLt.so.13"
)


@pytest.fixture
def fake_site(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    (site / "te_like").mkdir(parents=True)
    (site / "te_like" / "__init__.py").write_text("")
    (site / "te_like" / "pytorch.py").write_text(f"raise OSError({CUBLAS_ERROR.split(': ', 1)[1]!r})\n")
    (site / "exits.py").write_text("import sys\nsys.exit('no GPU here')\n")
    (site / "fine.py").write_text("VALUE = 1\n")
    (site / "slow.py").write_text("import time\ntime.sleep(30)\n")
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)}


def test_probe_reports_each_import_in_a_child(fake_site: dict[str, str]) -> None:
    r = pf.probe(
        ["fine", "te_like.pytorch", "exits", "no_such_module_xyz"],
        python=sys.executable,
        env=fake_site,
        packages=["pytest"],
    )
    assert r.failure is None
    assert r.errors["fine"] is None
    assert r.errors["te_like.pytorch"] == CUBLAS_ERROR  # type and message, as verl would have died with
    assert r.errors["exits"] == "SystemExit: no GPU here"  # an extension's exit does not end the probe
    assert r.errors["no_such_module_xyz"] == "ModuleNotFoundError: No module named 'no_such_module_xyz'"
    import pytest as pt

    assert r.versions["pytest"] == pt.__version__  # the child's metadata, asked for by name


def test_probe_failures_are_findings_not_exceptions(fake_site: dict[str, str]) -> None:
    r = pf.probe(["fine"], python="no-such-python-3.99", env=fake_site)
    assert r.failure == "no interpreter 'no-such-python-3.99' on PATH"
    r = pf.probe(["slow"], python=sys.executable, env=fake_site, timeout_s=1)
    assert r.failure == "imports took over 1 s"
    need = pf.Need("slow", "slow", "test", ("c1",))
    assert pf.diagnose([need], r) == [pf.Finding("error", "slow", "slow", ("c1",), "imports took over 1 s")]


# -- diagnose: the fixes learned on GPU hosts ---------------------------------------------------------------


def finding(module: str, package: str, error: str, versions: dict[str, str] | None = None) -> pf.Finding:
    need = pf.Need(module, package, "test", ("c1", "c2"))
    [f] = pf.diagnose([need], pf.Probe("python3", {module: error}, versions or {}))
    assert f.level == "error" and f.detail == error and f.cells == ("c1", "c2")
    return f


def test_te_on_an_older_cublas_names_both_versions_and_the_te_that_loads() -> None:
    f = finding(
        "transformer_engine.pytorch",
        "transformer-engine[pytorch]",
        CUBLAS_ERROR,
        {"transformer-engine": "2.16.1", "nvidia-cublas": "13.1.0.3"},
    )
    assert "Transformer Engine 2.16.1" in f.hint and "cuBLAS 13.1.0.3" in f.hint and "TE 2.12.0" in f.hint


def test_other_known_failures_get_their_fix() -> None:
    assert (
        "megatron_gradient_accumulation_fusion = false"
        in finding("fused_weight_gradient_mlp_cuda", "apex", "ModuleNotFoundError: No module named 'x'").hint
    )
    assert (
        "never the PyPI package named 'apex'"
        in finding("fused_weight_gradient_mlp_cuda", "apex", "ModuleNotFoundError: x").hint
    )
    assert "'pulp<4'" in finding("modelopt", "nvidia-modelopt", "ModuleNotFoundError: No module named 'modelopt'").hint
    assert "--no-deps megatron-bridge" in finding("megatron.bridge", "megatron-bridge", "ModuleNotFoundError: x").hint
    assert (
        "use_remove_padding = false"
        in finding(
            "flash_attn.bert_padding", "flash-attn", "ImportError: flash_attn_2_cuda.so: undefined symbol: _ZN3c10"
        ).hint
    )
    assert (
        "--no-build-isolation"
        in finding(
            "transformer_engine.pytorch",
            "transformer-engine[pytorch]",
            "ModuleNotFoundError: No module named 'transformer_engine_torch'",
        ).hint
    )
    assert (
        "exactly one of transformer-engine-cu12"
        in finding(
            "transformer_engine.pytorch",
            "transformer-engine[pytorch]",
            "OSError: libtransformer_engine.so: cannot open shared object file",
        ).hint
    )
    assert finding("vllm", "vllm", "ModuleNotFoundError: No module named 'vllm'").hint is None


def test_ok_findings_carry_the_package_version() -> None:
    needs = [
        pf.Need("transformer_engine.pytorch", "transformer-engine[pytorch]", "w", ("c",)),
        pf.Need("megatron.core", "megatron-core", "w", ("c",)),
    ]
    probe = pf.Probe(
        "python3", {"transformer_engine.pytorch": None, "megatron.core": None}, {"transformer-engine": "2.12.0"}
    )
    found = pf.diagnose(needs, probe)
    assert [(f.level, f.detail) for f in found] == [("ok", "2.12.0"), ("ok", "")]
    assert pf.errors(found) == []
    table = pf.format_findings(found, python="python3")
    assert table.splitlines()[0] == "python: python3"
    assert "version or import error" in table.splitlines()[1]
    assert "transformer_engine.pytorch" in table and "1 cell " in table


def test_format_puts_the_fix_under_its_row() -> None:
    f = finding("modelopt", "nvidia-modelopt", "ModuleNotFoundError: No module named 'modelopt'")
    lines = pf.format_findings([f]).splitlines()
    assert lines[1].startswith("error") and "2 cells" in lines[1]
    assert lines[2].strip().startswith("fix: pip install nvidia-modelopt")


# -- CLI: this CPU machine has verl but no vLLM: a real refusal before any GPU time ---------------------


def test_doctor_on_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", str(MATRICES / "h100-1gpu-graphs.toml"), "--cells", "full-*", "--format", "json"]) == 2
    data = json.loads(capsys.readouterr().out)
    found = {f["module"]: f for f in data["findings"]}
    assert found["verl.trainer.main_ppo"]["level"] == "ok" and found["verl.trainer.main_ppo"]["detail"] == "0.9.1"
    assert found["torch"]["level"] == "ok"
    assert found["vllm"]["level"] == "error" and "No module named 'vllm'" in found["vllm"]["detail"]
    assert "peft" not in found  # full fine-tuning cells only


def test_run_refuses_before_building_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    code = main(
        [
            "run",
            str(MATRICES / "h100-1gpu-megatron.toml"),
            "--out",
            str(out),
            "--no-verl-check",
            "--data-root",
            str(tmp_path / "no-data"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "environment: this environment cannot import what the selected cells need" in err
    assert "--no-preflight skips" in err and "vllm" in err and "megatron.bridge" in err
    assert "fix: pip install --no-deps megatron-bridge" in err
    assert not list(out.rglob("result.json")) and not (tmp_path / "no-data").exists()


# -- GPUs: warnings only (the runner records cells that do not fit as skipped) ------------------------------


def gpu(name: str = "NVIDIA H100 80GB HBM3", count: int = 1):
    from suite.telemetry.nvml import GpuInfo

    return GpuInfo(name=name, count=count, driver="580.159.04", cuda="13.0", total_gib=[79.2] * count)


def test_gpu_findings_name_the_host_and_what_will_not_fit(tmp_path: Path) -> None:
    one = cells_of("h100-1gpu-graphs", tmp_path)
    two = cells_of("h100-2gpu", tmp_path)
    found = pf.gpu_findings(one + two, gpu(count=1), visible=None)
    assert found[0].level == "ok" and found[0].detail == "1x NVIDIA H100 80GB HBM3, driver 580.159.04, CUDA 13.0"
    [big] = [f for f in found if f.level == "warning"]
    assert set(big.cells) == {c.id for c in two if c.status == "ok"}
    assert big.detail == "need up to 2 GPUs per node, 1 visible" and "recorded `skipped`" in big.hint
    assert pf.errors(found) == []
    # --gpus / CUDA_VISIBLE_DEVICES narrow what is visible
    assert any("1 visible" in f.detail for f in pf.gpu_findings(two, gpu(count=8), visible=1))
    assert [f.level for f in pf.gpu_findings(two, gpu(count=8), visible=None)] == ["ok"]


def test_gpu_findings_warn_about_another_generation(tmp_path: Path) -> None:
    cells = cells_of("h100-1gpu-graphs", tmp_path)
    found = pf.gpu_findings(cells, gpu("NVIDIA H200", 2), visible=None)
    [other] = [f for f in found if f.level == "warning"]
    assert other.detail == "planned for h100, this host is h200"
    assert "filed under h200" in other.hint


def test_gpu_findings_without_nvml_or_cells(tmp_path: Path) -> None:
    cells = cells_of("h100-1gpu-graphs", tmp_path)
    [f] = pf.gpu_findings(cells, None, visible=None)
    assert f.level == "warning" and "no NVML" in f.detail
    invalid = [dataclasses.replace(c, status="invalid") for c in cells]
    assert pf.gpu_findings(invalid, gpu(), visible=None) == []


# -- torch allocator keys: a key the cells' torch does not know fails every worker as CUDA starts -------------

PINNED = "pinned_max_round_threshold_mb"


def test_allocator_keys_come_from_the_cells_ray_workers_and_env(tmp_path: Path) -> None:
    pinned = cells_of("h200-1gpu-14b-pinned", tmp_path)
    keys = pf.allocator_keys(pinned)
    assert list(keys) == [PINNED]
    assert set(keys[PINNED]) == {c.id for c in pinned if c.status in pf.RUNNABLE} and len(keys[PINNED]) == 8
    assert pf.allocator_keys(cells_of("h200-1gpu-14b", tmp_path)) == {}  # no pinned setting, no key
    # the cell's own environment, under either of torch's names, with several keys and spaces
    cell = pinned[0]
    both = dataclasses.replace(
        cell, env={**cell.env, "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True, garbage_collection_threshold:0.8"}
    )
    assert list(pf.allocator_keys([both])) == ["expandable_segments", "garbage_collection_threshold", PINNED]
    assert pf.allocator_keys([dataclasses.replace(cell, status="invalid")]) == {}


def fake_torch(tmp_path: Path, names: bytes) -> dict[str, str]:
    """A package named torch whose c10 library names `names` (as torch's allocator config parser does)."""
    site = tmp_path / "torch-site"
    (site / "torch" / "lib").mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text("")
    (site / "torch" / "lib" / "libc10.so").write_bytes(b"\x7fELF\x00" + names + b"\x00")
    (site / "torch" / "lib" / "libc10_cuda.so").write_bytes(b"\x7fELF\x00expandable_segments\x00")
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)}


def test_probe_reads_the_keys_from_the_child_s_torch(tmp_path: Path) -> None:
    old = fake_torch(tmp_path / "old", b"pinned_use_background_threads")
    r = pf.probe(["torch"], python=sys.executable, env=old, alloc_keys=[PINNED, "expandable_segments"])
    assert r.failure is None and r.errors["torch"] is None
    assert r.allocator_keys == {PINNED: False, "expandable_segments": True}  # both c10 libraries are read
    new = fake_torch(tmp_path / "new", PINNED.encode())
    assert pf.probe(["torch"], python=sys.executable, env=new, alloc_keys=[PINNED]).allocator_keys == {PINNED: True}
    # no key asked: nothing read
    assert pf.probe(["torch"], python=sys.executable, env=old).allocator_keys == {}


def test_this_machine_s_torch_knows_the_pinned_key() -> None:
    """torch 2.13.0 (this machine's) names it; 2.11.0 refused it on a GPU host (baselines/evidence/2026-12-05-h200-heavy)."""
    r = pf.probe(["torch"], python=sys.executable, alloc_keys=[PINNED, "no_such_allocator_key_xyz"])
    assert r.allocator_keys == {PINNED: True, "no_such_allocator_key_xyz": False}


def test_allocator_findings_name_the_torch_the_key_and_the_fix() -> None:
    wanted = {PINNED: ("c1", "c2"), "expandable_segments": ("c1",), "odd": ("c2",)}
    probe = pf.Probe(
        "python3", {}, {"torch": "2.11.0"}, allocator_keys={PINNED: False, "expandable_segments": True, "odd": None}
    )
    bad, ok, unknown = pf.allocator_findings(wanted, probe)
    assert (bad.level, bad.module, bad.package, bad.cells) == (
        "error",
        f"PYTORCH_ALLOC_CONF:{PINNED}",
        "torch",
        ("c1", "c2"),
    )
    assert bad.detail == f"torch 2.11.0 does not know allocator key {PINNED!r}: every worker would fail as CUDA starts"
    assert "2.13.0" in bad.hint and "pinned_round_max_mb" in bad.hint
    assert (ok.level, ok.detail) == ("ok", "torch 2.11.0 knows it")
    assert unknown.level == "warning" and "not checked" in unknown.detail
    assert pf.errors([bad, ok, unknown]) == [bad]
    assert pf.allocator_findings(wanted, pf.Probe("python3", {}, failure="imports took over 1 s")) == []
    other = pf.allocator_findings({"odd": ("c1",)}, dataclasses.replace(probe, allocator_keys={"odd": False}))
    assert other[0].hint == "use a torch whose allocator has the key, or drop it from the cells' PYTORCH_ALLOC_CONF"


def test_check_cells_refuses_the_pinned_matrix_with_an_old_torch(tmp_path: Path) -> None:
    cells = cells_of("h200-1gpu-14b-pinned", tmp_path)
    env = fake_torch(tmp_path / "old", b"pinned_use_background_threads")
    runnable = [dataclasses.replace(c, command=[sys.executable, *c.command[1:]]) for c in cells]
    findings, python = pf.check_cells(runnable, env=env, timeout_s=60)
    assert python == sys.executable
    [bad] = [f for f in pf.errors(findings) if f.package == "torch"]
    assert bad.module == f"PYTORCH_ALLOC_CONF:{PINNED}" and len(bad.cells) == 8
    # the same cells with this machine's torch: the key is known
    findings, _ = pf.check_cells(runnable, timeout_s=600)
    assert [f.level for f in findings if f.module.startswith("PYTORCH_ALLOC_CONF")] == ["ok"]


def test_torch_gaps_name_a_key_a_measured_torch_lacks(tmp_path: Path) -> None:
    pinned = cells_of("h200-1gpu-14b-pinned", tmp_path)
    [gap] = pf.torch_gaps(pinned, "2.11.0", "h200")
    assert gap == (
        f"torch 2.11.0 (the h200 image) lacks allocator key {PINNED}, which 8 of 8 cells set; torch 2.13.0 has it"
    )
    assert pf.torch_gaps(pinned, "2.13.0", "h200") == []  # measured to have it
    assert pf.torch_gaps(pinned, "2.12.0", "h200") == []  # never measured: nothing claimed
    assert pf.torch_gaps(pinned, None, "h200") == []  # no image known here: nothing claimed
    assert pf.torch_gaps(cells_of("h200-1gpu-14b", tmp_path), "2.11.0", "h200") == []  # no key set
    # only runnable cells count, in both the numerator and the denominator
    some = [dataclasses.replace(c, status="invalid") if i < 3 else c for i, c in enumerate(pinned)]
    assert "which 5 of 5 cells set" in pf.torch_gaps(some, "2.11.0", "h200")[0]
    # a key whose table has no version with it says nothing of one
    table = {**pf.ALLOCATOR_KEYS_MEASURED, PINNED: {"2.11.0": False}}
    with mock.patch.dict(pf.ALLOCATOR_KEYS_MEASURED, table):
        assert pf.torch_gaps(pinned, "2.11.0", "h200")[0].endswith("which 8 of 8 cells set")


def test_the_measured_table_agrees_with_this_machine_s_torch() -> None:
    import torch

    version = torch.__version__.split("+", 1)[0]
    keys = list(pf.ALLOCATOR_KEYS_MEASURED)
    r = pf.probe(["torch"], python=sys.executable, alloc_keys=keys)
    for key, seen in pf.ALLOCATOR_KEYS_MEASURED.items():
        if version in seen:
            assert r.allocator_keys[key] is seen[version], key
