"""`[base] registered_host_copies`: verl's FSDP2 parameter and optimizer offload and vLLM's sleep backup into host
buffers of their own size, registered once (cudaHostRegister) and reused every step (suite/run/pageable_copies.py's
HostBuffers and BackupPool). Here the registration is recorded instead of made (no CUDA on this machine);
tools/gpu/copy-probe.py runs the real one."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from test_pageable_copies import FAKE_CUMEM, HEAD, ROOT, _check, import_error

from suite.errors import InputError
from suite.matrix import parse_matrix
from suite.memory.calibration import default_calibration
from suite.memory.host import host_states, predict_host
from suite.memory.predict import annotate_cells
from suite.memory.settings import settings_from_argv, settings_from_cell
from suite.plan.cell import (
    EXTERNAL_MODULES_KEY,
    FSDP_COPIES_ENV,
    FSDP_COPIES_KEY,
    PAGEABLE_COPIES_MODULE,
    VLLM_COPIES_ENV,
    VLLM_COPIES_KEY,
)
from suite.plan.planner import plan_matrix

torch = pytest.importorskip("torch")
pc = pytest.importorskip("suite.run.pageable_copies")
GIB = 2**30


class Recorder:
    def __init__(self) -> None:
        self.registered: list[tuple[int, int]] = []
        self.unregistered: list[int] = []

    def register(self, ptr: int, nbytes: int) -> None:
        self.registered.append((ptr, nbytes))

    def unregister(self, ptr: int) -> None:
        self.unregistered.append(ptr)

    def buffers(self, min_registered_bytes: int = 0) -> pc.HostBuffers:
        return pc.HostBuffers(self.register, self.unregister, min_registered_bytes=min_registered_bytes)


# -- HostBuffers ---------------------------------------------------------------------------------------------


def test_a_key_gets_one_buffer_of_its_own_size_registered_once_and_reused() -> None:
    rec = Recorder()
    hb = rec.buffers()
    first = hb.to_host("w", torch.arange(6.0).reshape(2, 3))
    second = hb.to_host("w", torch.full((2, 3), 7.0))
    assert first.data_ptr() == second.data_ptr() == hb.buffers["w"].data_ptr()
    assert second.tolist() == [[7.0] * 3] * 2  # the later copy lands in the same buffer
    assert rec.registered == [(first.data_ptr(), pc.PAGE)] and rec.unregistered == []
    assert hb.nbytes == 6 * 4  # its own size: no rounding but to the page it registers


def test_registered_regions_are_whole_pages_no_other_buffer_shares() -> None:
    rec = Recorder()
    hb = rec.buffers()
    for i, n in enumerate((1, 1000, 1025, 4096, 70000)):
        hb.to_host(i, torch.ones(n))
    regions = sorted(rec.registered)
    assert all(ptr % pc.PAGE == 0 and size % pc.PAGE == 0 for ptr, size in regions)
    assert [size for _, size in rec.registered] == [4096, 4096, 8192, 16384, 282624]
    assert all(a + sa <= b for (a, sa), (b, _) in itertools.pairwise(regions))  # no two overlap
    for key, (ptr, _) in zip(range(5), rec.registered, strict=True):
        assert hb.buffers[key].data_ptr() == ptr == hb.registered[key]


def test_small_copies_are_reused_but_not_registered() -> None:
    rec = Recorder()
    hb = rec.buffers(min_registered_bytes=pc.MIN_REGISTERED_BYTES)
    small = hb.to_host("step", torch.tensor(3.0))
    big = hb.to_host("w", torch.ones(pc.MIN_REGISTERED_BYTES // 2, dtype=torch.bfloat16))
    assert hb.to_host("step", torch.tensor(4.0)).data_ptr() == small.data_ptr()
    assert rec.registered == [(big.data_ptr(), pc.MIN_REGISTERED_BYTES)] and set(hb.registered) == {"w"}


def test_each_key_has_its_own_buffer_and_the_bytes_add_up_exactly() -> None:
    rec = Recorder()
    hb = rec.buffers()
    sizes = {"a": 270, "b": 135, "c": 1}
    for key, n in sizes.items():
        hb.to_host(key, torch.ones(n, dtype=torch.bfloat16))
    assert hb.nbytes == 2 * sum(sizes.values())
    assert len({ptr for ptr, _ in rec.registered}) == 3


def test_a_tensor_already_in_its_buffer_is_not_copied_onto_itself() -> None:
    hb = Recorder().buffers()
    host = hb.to_host("w", torch.ones(4))
    host.add_(1)
    again = hb.to_host("w", host)
    assert again.data_ptr() == host.data_ptr() and again.tolist() == [2.0] * 4


def test_a_changed_shape_or_dtype_replaces_the_buffer_and_unregisters_the_old_one() -> None:
    rec = Recorder()
    hb = rec.buffers()
    old = hb.to_host("w", torch.ones(4)).data_ptr()
    hb.to_host("w", torch.ones(8))
    hb.to_host("w", torch.ones(8, dtype=torch.float16))
    assert rec.unregistered[0] == old and len(rec.unregistered) == 2 and len(rec.registered) == 3
    assert rec.unregistered[1] == rec.registered[1][0]
    assert hb.nbytes == 8 * 2


def test_non_contiguous_tensors_keep_their_strides() -> None:
    hb = Recorder().buffers()
    t = torch.arange(12.0).reshape(3, 4).t()
    host = hb.to_host("w", t)
    assert host.stride() == t.stride() and torch.equal(host, t)


def test_a_failed_registration_is_an_error_that_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeCudart:
        def cudaHostRegister(self, ptr: int, size: int, flags: int) -> int:
            return 2  # cudaErrorMemoryAllocation

    monkeypatch.setattr(torch.cuda, "cudart", lambda: FakeCudart())
    with pytest.raises(RuntimeError, match=r"registered_host_copies: cudaHostRegister of 1048576 bytes failed \(2\)"):
        pc.HostBuffers().to_host("w", torch.ones(1 << 18))


DTENSOR = """
import json, os, torch, torch.distributed as dist
from torch.distributed.tensor import DTensor, Shard
from torch.distributed.device_mesh import init_device_mesh
os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(29500 + os.getpid() % 1000)
dist.init_process_group("gloo", rank=0, world_size=1)
mesh = init_device_mesh("cpu", (1,))
from suite.run.pageable_copies import HostBuffers
registered = []
hb = HostBuffers(lambda ptr, n: registered.append(ptr), lambda ptr: None, min_registered_bytes=0)
p = torch.nn.Parameter(DTensor.from_local(torch.arange(12.0).reshape(3, 4), mesh, [Shard(0)], run_check=False))
one = hb.to_host("k", p)
two = hb.to_host("k", p * 2)
print(json.dumps({
    "type": type(two).__name__, "placements": str(two.placements), "shape": list(two.shape),
    "aliases": one._local_tensor.data_ptr() == two._local_tensor.data_ptr() == hb.buffers["k"].data_ptr(),
    "values": two.to_local()[0].tolist(), "registered": len(registered),
}))
dist.destroy_process_group()
"""


def test_a_dtensor_comes_back_a_dtensor_of_its_spec_over_the_buffer() -> None:
    # FSDP2 holds parameters and their Adam states as DTensors: the host copy must be one of the same spec
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", DTENSOR], env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {
        "type": "DTensor",
        "placements": "(Shard(dim=0),)",
        "shape": [3, 4],
        "aliases": True,
        "values": [0.0, 2.0, 4.0, 6.0],
        "registered": 1,
    }


# -- the patch on verl's functions ---------------------------------------------------------------------------


def _fake_fsdp_utils() -> ModuleType:
    m = ModuleType("fake_fsdp_utils")
    m.emptied = 0  # type: ignore[attr-defined]

    class Device:
        def empty_cache(self) -> None:
            m.emptied += 1  # type: ignore[attr-defined]

    m.get_torch_device = lambda: Device()  # type: ignore[attr-defined]
    m.offload_fsdp2_model_to_cpu = m.offload_fsdp_optimizer = None  # type: ignore[attr-defined]
    return m


def test_the_model_offload_keeps_each_parameter_in_its_buffer_step_after_step() -> None:
    rec = Recorder()
    hb = rec.buffers()  # every size registered here: the small model's tensors stand for the 14B's
    fu = _fake_fsdp_utils()
    pc.patch_fsdp_utils_registered(fu, hb)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    model.register_buffer("steps", torch.zeros(1))
    params = list(model.parameters())
    opt = torch.optim.AdamW(params)
    for step in range(3):
        model(torch.ones(2, 4)).sum().backward()
        opt.step()
        fu.offload_fsdp2_model_to_cpu(model)
        fu.offload_fsdp_optimizer(opt)
        # the Parameter objects survive (the optimizer still holds them); their data is the buffers'
        assert list(model.parameters()) == params
        assert [p.data_ptr() for p in params] == [hb.buffers[("param", id(p))].data_ptr() for p in params]
        assert step >= 0
    assert fu.emptied == 3
    n_params = len(params)
    n_states = sum(isinstance(v, torch.Tensor) for s in opt.state.values() for v in s.values())
    assert len(rec.registered) == n_params + n_states  # registered once each, in three steps
    for p in params:
        for key, v in opt.state[p].items():
            if isinstance(v, torch.Tensor):
                assert v.data_ptr() == hb.buffers[("optim", id(p), key)].data_ptr()
    # gradients and module buffers are new objects each time: copied, never registered
    assert all(k[0] in ("param", "optim") for k in hb.buffers)
    expected = sum(p.numel() * 4 for p in params) + sum(
        v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)
    )
    assert hb.nbytes == expected


# the stand-in of test_pageable_copies with what the registered patch needs of vLLM's cumem module
CUMEM_STANDIN = FAKE_CUMEM + "import torch\nclass CuMemAllocator:\n    pass\n"
LACKING = import_error("verl.utils.fsdp_utils", "vllm.device_allocator.cumem")


def test_registered_mode_through_verls_hook(tmp_path: Path) -> None:
    pytest.importorskip("verl")
    code = """
import json, torch, verl
from verl.utils import fsdp_utils
from verl.utils.fsdp_utils import offload_fsdp_model_to_cpu, offload_fsdp_optimizer
import vllm.device_allocator.cumem as cumem
hb = fsdp_utils._grpo_suite_host_buffers
hb.register, hb.unregister = (lambda ptr, n: None), (lambda ptr: None)  # no CUDA here
model = torch.nn.Linear(4, 3)
opt = torch.optim.AdamW(model.parameters())
model(torch.ones(2, 4)).sum().backward()
opt.step()
offload_fsdp_model_to_cpu(model)  # verl's FSDP2 branch for a plain module
offload_fsdp_optimizer(opt)
print(json.dumps({"pin_memory": cumem.backup_pinned(), "buffers": len(hb.buffers),
                  "pool": hasattr(cumem, "_grpo_suite_backup_pool"),
                  "in_buffers": model.weight.data_ptr() == hb.buffers[("param", id(model.weight))].data_ptr()}))
"""
    env = {FSDP_COPIES_ENV: "registered", VLLM_COPIES_ENV: "registered"}
    got = _check(tmp_path, PAGEABLE_COPIES_MODULE, code, cumem=CUMEM_STANDIN, extra_env=env)
    # weight, bias, and AdamW's step, exp_avg and exp_avg_sq of each; vLLM's sleep takes its backups from the pool
    assert got == {
        "pin_memory": True,
        "buffers": 8,
        "pool": True,
        "in_buffers": True,
        "announced": [],
        "registered": ["verl.utils.fsdp_utils", "vllm.device_allocator.cumem"],
    }
    pinned = _check(
        tmp_path, PAGEABLE_COPIES_MODULE, code, cumem=CUMEM_STANDIN, extra_env={**env, VLLM_COPIES_ENV: "pinned"}
    )
    lacking = _check(tmp_path, PAGEABLE_COPIES_MODULE, LACKING, extra_env=env)  # FAKE_CUMEM has no CuMemAllocator
    assert lacking["error"].startswith(
        "registered_host_copies: vllm.device_allocator.cumem has no torch, CuMemAllocator"
    )
    assert (pinned["pool"], pinned["registered"]) == (False, ["verl.utils.fsdp_utils"])


# A stand-in for vLLM 0.25.1's CuMemAllocator: its sleep backs each allocation up into
# torch.empty(n, dtype=uint8, device="cpu", pin_memory=PIN_MEMORY) and its wake-up drops the backup.
ALLOCATOR = """import torch
PIN_MEMORY = True
class CuMemAllocator:
    def __init__(self, sizes):
        self.gpu = {i: torch.full((n,), i + 1, dtype=torch.uint8) for i, n in enumerate(sizes)}
        self.backup = {}
    def sleep(self):
        for i, t in self.gpu.items():
            b = torch.empty(t.numel(), dtype=torch.uint8, device="cpu", pin_memory=PIN_MEMORY)
            b.copy_(t)
            self.backup[i] = b
    def wake_up(self):
        for i, b in list(self.backup.items()):
            self.gpu[i].copy_(b)
            self.backup[i] = None
"""


def _allocator_module(tmp_path: Path) -> ModuleType:
    import importlib.util

    path = tmp_path / "fake_cumem.py"
    path.write_text(ALLOCATOR)
    spec = importlib.util.spec_from_file_location("fake_cumem", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vllms_sleeps_reuse_their_registered_backups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cumem = _allocator_module(tmp_path)
    rec = Recorder()
    pool = pc.BackupPool(rec.buffers(min_registered_bytes=0))
    pc.patch_cumem_registered(cumem, pool)
    a = cumem.CuMemAllocator([4096, 4096, 10000])  # two of one size: each its own buffer
    seen = []
    for _ in range(3):
        a.sleep()
        seen.append([b.data_ptr() for b in a.backup.values()])
        assert [int(b[0]) for b in a.backup.values()] == [1, 2, 3]  # each backup holds its own allocation
        a.gpu = {i: torch.zeros_like(t) for i, t in a.gpu.items()}
        a.wake_up()
        assert [int(t[0]) for t in a.gpu.values()] == [1, 2, 3]  # restored from the buffers
    assert seen[0] == seen[1] == seen[2] and len(set(seen[0])) == 3
    served = [ln for ln in capsys.readouterr().err.splitlines() if "first sleep backup served" in ln]
    assert len(served) == 1 and served[0].startswith("[grpo-suite] registered host copies: ")
    assert len(rec.registered) == 3  # registered at the first sleep only
    assert pool.host.nbytes == 4096 + 4096 + 10000
    # anything else the module asks of torch is torch's: a GPU-sized or typed empty() is untouched
    assert cumem.torch.uint8 is torch.uint8
    assert cumem.torch.empty(3, dtype=torch.float32).dtype == torch.float32 and len(pool.held) == 3


def test_a_backup_still_held_is_never_handed_out_again(tmp_path: Path) -> None:
    pool = pc.BackupPool(Recorder().buffers(min_registered_bytes=0))
    first = pool.empty(4096, dtype=torch.uint8, device="cpu", pin_memory=True)
    second = pool.empty(4096, dtype=torch.uint8, device="cpu", pin_memory=True)
    assert first.data_ptr() != second.data_ptr()
    ptr = first.data_ptr()
    del first
    assert pool.empty(4096, dtype=torch.uint8, device="cpu").data_ptr() == ptr


def test_an_unknown_mode_fails_the_import_with_the_allowed_values(tmp_path: Path) -> None:
    code = import_error("suite.run.pageable_copies")
    got = _check(tmp_path, None, code, extra_env={FSDP_COPIES_ENV: "locked"})
    assert (
        got["error"]
        == f"{FSDP_COPIES_ENV}='locked': expected one of pageable, registered (suite/run/pageable_copies.py)"
    )
    got = _check(tmp_path, None, code, extra_env={VLLM_COPIES_ENV: "locked"})
    assert got["error"].startswith(f"{VLLM_COPIES_ENV}='locked': expected one of pageable, registered, pinned")


# -- the plan and the planner ----------------------------------------------------------------------------------

BOTH = HEAD.replace(
    "pageable_host_copies = [true, false]",
    "pageable_host_copies = [true, false]\nregistered_host_copies = [true, false]",
)


def _cells(tmp_path: Path) -> dict:
    m = parse_matrix(BOTH.format(strategy="fsdp2"), source="pg.toml")
    cells = annotate_cells(plan_matrix(m, "bench", out_dir=tmp_path, validate_with_verl=False))
    return {"-".join(c.id.rsplit("-", 2)[1:]): c for c in cells}


def test_the_plan_sets_the_modes_each_combination_asks_for(tmp_path: Path) -> None:
    cells = _cells(tmp_path)
    assert set(cells) == {"pageable-registered", "pageable-unregistered", "pinned-registered", "pinned-unregistered"}
    got = {
        k: (c.status, c.setting(EXTERNAL_MODULES_KEY), c.setting(FSDP_COPIES_KEY), c.setting(VLLM_COPIES_KEY))
        for k, c in cells.items()
    }
    assert got == {
        "pageable-registered": ("invalid", PAGEABLE_COPIES_MODULE, "registered", "registered"),
        "pageable-unregistered": ("ok", PAGEABLE_COPIES_MODULE, None, None),
        "pinned-registered": ("ok", PAGEABLE_COPIES_MODULE, "registered", "registered"),
        "pinned-unregistered": ("predicted-host-oom", None, None, None),
    }
    assert cells["pageable-registered"].reason is not None
    assert cells["pageable-registered"].reason.startswith(
        "pageable_host_copies and registered_host_copies are both true: set one"
    )
    flags = {}
    for k, c in cells.items():
        s = settings_from_cell(c)
        again = settings_from_argv(list(c.argv), model=c.model, gpu=c.gpu, n_gpus=c.n_gpus, backend=c.backend)
        flags[k] = (s.pageable_copies, s.registered_copies, s.vllm_registered)
        assert (again.pageable_copies, again.registered_copies, again.vllm_registered) == flags[k]
    assert flags["pinned-registered"] == (False, True, True)
    assert flags["pageable-unregistered"] == (True, False, False)
    assert flags["pinned-unregistered"] == (False, False, False)


def test_the_planner_counts_registered_copies_at_their_own_size(tmp_path: Path) -> None:
    cells = _cells(tmp_path)
    st = {k: host_states(settings_from_cell(c), default_calibration()) for k, c in cells.items()}
    pinned, reg, pg = st["pinned-unregistered"], st["pinned-registered"], st["pageable-unregistered"]
    for part in ("offloaded_params", "vllm_sleep_copy", "optimizer_states"):
        assert getattr(reg, part).raw == getattr(pinned, part).raw, part  # the same bytes
        assert getattr(reg, part).rounding == 0.0 < getattr(pinned, part).rounding or part == "optimizer_states"
        assert getattr(reg, part) == getattr(pg, part), part  # as pageable copies count
    peak = {k: round(predict_host(settings_from_cell(c)).peak_gib, 1) for k, c in cells.items()}
    # the 14B recipe on a 125 GiB host: 171.4 pinned, 109.8 either way of their own size
    assert (peak["pinned-unregistered"], peak["pinned-registered"], peak["pageable-unregistered"]) == (
        171.4,
        109.8,
        109.8,
    )


def test_a_vllm_left_pinned_keeps_its_rounding(tmp_path: Path) -> None:
    # GRPO_SUITE_VLLM_HOST_COPIES=pinned (the module honours it; no plan sets it): FSDP exact, vLLM rounded
    cell = _cells(tmp_path)["pinned-registered"]
    argv = [a.replace(f"{VLLM_COPIES_KEY}=registered", f"{VLLM_COPIES_KEY}=pinned") for a in cell.argv]
    assert argv != list(cell.argv)
    s = settings_from_argv(argv, model=cell.model, gpu=cell.gpu, n_gpus=cell.n_gpus, backend=cell.backend)
    assert (s.pageable_copies, s.registered_copies, s.vllm_registered) == (False, True, False)
    st = host_states(s, default_calibration())
    assert st.offloaded_params.rounding == 0.0 and st.vllm_sleep_copy.rounding / GIB == pytest.approx(21.5, abs=0.1)
    assert round(predict_host(s).peak_gib, 1) == pytest.approx(109.8 + 21.5, abs=0.1)


def test_the_setting_is_a_strict_bool() -> None:
    bad = HEAD.replace("[base]", '[base]\nregistered_host_copies = "yes"')
    with pytest.raises(InputError, match="registered_host_copies"):
        parse_matrix(bad.format(strategy="fsdp2"), source="pg.toml")


def test_the_shipped_matrices_load_it_and_match_their_committed_predictions(tmp_path: Path) -> None:
    from suite.matrix import load_matrix

    root = ROOT / "suite" / "matrices"
    want = {
        "h100-1gpu-7b-registered": (69.1, "h100-1gpu-7b-fa"),
        "h200-1gpu-14b-registered": (107.5, "h200-1gpu-14b-pageable"),  # 109.8 with verl's 8 TQ units
    }
    for name, (host_gib, reference_matrix) in want.items():
        m = load_matrix(root / f"{name}.toml")
        [cell] = annotate_cells(plan_matrix(m, "bench", out_dir=tmp_path / name, validate_with_verl=False))
        assert cell.id.endswith("-registered") and cell.status == "ok"
        assert (cell.setting(FSDP_COPIES_KEY), cell.setting(VLLM_COPIES_KEY)) == ("registered", "registered")
        assert cell.predicted_host_memory_gb == pytest.approx(host_gib, abs=0.05)
        assert m.matrix.reference_matrix == reference_matrix
        # the reference is the same recipe held another way: the id without the copies word (pinned at 7B, or
        # pageable at 14B, where pinned does not fit the host)
        assert cell.id.removesuffix("-registered") == m.matrix.reference.removesuffix("-pageable")
        committed = (ROOT / "baselines" / "evidence" / "predictions" / f"{name}.txt").read_text()
        assert cell.id in committed and f"{host_gib}  ok" in committed
