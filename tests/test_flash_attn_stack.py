"""`[matrix] flash_attn` holds where the cells run: `false` turns verl's Triton cross entropy off in the workers
(VERL_DISABLE_FLASH_ATTN_CE=1, so a host that has flash-attn measures the declared stack), `true` is checked by the
preflight (a cell without flash-attn would run on more memory than it was planned for)."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.matrix import load_matrix, parse_matrix
from suite.memory.settings import settings_from_argv, settings_from_cell
from suite.plan.cell import FLASH_CE_ENV, FLASH_CE_KEY
from suite.plan.planner import plan_matrix
from suite.run import preflight as pf

MATRICES = Path(__file__).resolve().parents[1] / "suite" / "matrices"
HEAD = """[matrix]
name = "stack"
gpu = "h100"
gpus_per_node = 1
model = "synthetic:qwen2.5-0.5b"
backend = "fsdp"
{line}
[base]
rollout_batch = 8
attn_implementation = "sdpa"
"""


def plan(line: str, tmp_path: Path) -> list:
    m = parse_matrix(HEAD.format(line=line), source="stack.toml")
    return plan_matrix(m, "bench", out_dir=tmp_path, validate_with_verl=False)


def ce_setting(cell) -> object:
    return cell.setting(FLASH_CE_KEY)


def test_flash_attn_false_disables_the_triton_cross_entropy_in_the_workers(tmp_path: Path) -> None:
    (cell,) = plan("flash_attn = false", tmp_path)
    assert cell.status == "ok", cell.reason
    assert cell.flash_attn is False
    assert ce_setting(cell) == "1"  # a string: Ray takes env_vars as str -> str
    assert f'+{FLASH_CE_KEY}="1"' in cell.argv  # quoted, or Hydra would hand Ray the int 1
    s = settings_from_cell(cell)
    assert s.flash_ce_disabled and not s.flash_attn_cross_entropy


@pytest.mark.parametrize("line", ["flash_attn = true", ""])
def test_flash_attn_true_or_unsaid_leaves_verl_to_choose(line: str, tmp_path: Path) -> None:
    (cell,) = plan(line, tmp_path)
    assert cell.status == "ok", cell.reason
    assert ce_setting(cell) is None
    assert not any(FLASH_CE_ENV in a for a in cell.argv)
    s = settings_from_cell(cell)
    assert not s.flash_ce_disabled
    # true: the Triton cross entropy; unsaid on sdpa: verl's torch log-softmax is assumed
    assert s.flash_attn_cross_entropy is (line == "flash_attn = true")


def test_a_recorded_command_with_the_switch_reads_back_as_torch_log_softmax(tmp_path: Path) -> None:
    """A result's stack is read from its recorded versions (flash-attn installed), but the command that turned the
    cross entropy off wins: the prediction validated against it is the one the cell ran."""
    (cell,) = plan("flash_attn = false", tmp_path)
    kw = dict(model=cell.model, gpu=cell.gpu, n_gpus=cell.n_gpus, backend=cell.backend)
    with_switch = settings_from_argv(list(cell.argv), **kw)
    assert with_switch.flash_ce_disabled and not with_switch.flash_attn_cross_entropy
    without = settings_from_argv([a for a in cell.argv if FLASH_CE_ENV not in a], **kw)
    assert not without.flash_ce_disabled
    # "0" (or anything but "1", as verl reads it) leaves the cross entropy on
    zero = [a if FLASH_CE_ENV not in a else a.replace('"1"', '"0"') for a in cell.argv]
    assert not settings_from_argv(zero, **kw).flash_ce_disabled


def test_the_switch_changes_the_update_prediction_only_where_flash_attn_is_present(tmp_path: Path) -> None:
    from suite.memory.model import predict

    (off,) = plan("flash_attn = false", tmp_path / "off")
    (on,) = plan("flash_attn = true", tmp_path / "on")
    p_off = predict(settings_from_cell(off)).phase_totals()
    p_on = predict(settings_from_cell(on)).phase_totals()
    assert p_off["actor_update"] > p_on["actor_update"]  # torch log-softmax holds more copies of the logits
    assert {k: v for k, v in p_off.items() if k != "actor_update"} == {
        k: v for k, v in p_on.items() if k != "actor_update"
    }


def test_preflight_needs_the_cross_entropy_module_for_declared_cells(tmp_path: Path) -> None:
    cells = plan_matrix(
        load_matrix(MATRICES / "h100-1gpu-7b-fa-mb5.toml"), "bench", out_dir=tmp_path, validate_with_verl=False
    )
    runnable = {c.id for c in cells if c.status in pf.RUNNABLE}
    assert runnable and all(c.flash_attn is True for c in cells)
    need = {n.module: n for n in pf.needs(cells)}[pf.FLASH_CE_MODULE]
    assert need.package == "flash-attn" and set(need.cells) == runnable
    assert "flash_attn = true" in need.why


@pytest.mark.parametrize("line", ["flash_attn = false", ""])
def test_preflight_does_not_ask_for_flash_attn_where_the_matrix_does_not_declare_it(line: str, tmp_path: Path) -> None:
    assert pf.FLASH_CE_MODULE not in {n.module for n in pf.needs(plan(line, tmp_path))}


def test_a_missing_cross_entropy_is_an_error_with_the_fix(tmp_path: Path) -> None:
    (cell,) = plan("flash_attn = true", tmp_path)
    wanted = [n for n in pf.needs([cell]) if n.module == pf.FLASH_CE_MODULE]
    probe = pf.Probe("python3", {pf.FLASH_CE_MODULE: "ModuleNotFoundError: No module named 'flash_attn'"})
    (finding,) = pf.diagnose(wanted, probe)
    assert finding.level == "error" and finding.cells == (cell.id,)
    assert "flash_attn = false" in (finding.hint or "") and "plan again" in (finding.hint or "")
    ok = pf.diagnose(wanted, pf.Probe("python3", {pf.FLASH_CE_MODULE: None}, {"flash-attn": "2.8.3"}))
    assert [(f.level, f.detail) for f in ok] == [("ok", "2.8.3")]


def test_preflight_probes_the_real_import_in_a_child(tmp_path: Path) -> None:
    """This machine has no flash-attn: the probe's child interpreter fails the import, and the cell is refused."""
    pytest.importorskip("verl")
    try:
        import flash_attn  # noqa: F401

        pytest.skip("flash-attn is installed here")
    except ImportError:
        pass
    (cell,) = plan("flash_attn = true", tmp_path)
    result = pf.probe([pf.FLASH_CE_MODULE], python="python3")
    assert result.failure is None
    assert "flash_attn" in (result.errors[pf.FLASH_CE_MODULE] or "")
    wanted = [n for n in pf.needs([cell]) if n.module == pf.FLASH_CE_MODULE]
    assert [f.level for f in pf.errors(pf.diagnose(wanted, result))] == ["error"]
