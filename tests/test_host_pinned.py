"""Pinned host memory without power-of-two rounding (`pinned_round_max_mb`, PYTORCH_ALLOC_CONF): how a cell
asks for it, how the host model counts it, the planner's refusal of thresholds that hit torch's free-list bug,
and the 14B matrix it makes fit the host."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from evidence_helpers import assert_plan_committed

from suite.matrix.ids import axis_code
from suite.matrix.load import load_matrix
from suite.matrix.verl_keys import names, readable_name
from suite.memory.calibration import default_calibration
from suite.memory.host import MIB, pinned, pinned_clashes, predict_host, size_class
from suite.memory.predict import annotate_cells
from suite.memory.settings import pinned_limits, settings_from_cell, settings_from_overrides
from suite.plan.cell import ALLOC_CONF_KEY
from suite.plan.planner import plan_matrix

ROOT = Path(__file__).resolve().parents[1]
MATRICES = ROOT / "suite" / "matrices"
PINNED = MATRICES / "h200-1gpu-14b-pinned.toml"
PREDICTIONS = ROOT / "baselines" / "evidence" / "predictions" / "h200-1gpu-14b-pinned.txt"
REF = "lora32-off_param+optimizer-tp1-rb45-mnbt1536-mb15"


@pytest.mark.parametrize(
    ("conf", "limits"),
    [
        ("pinned_max_round_threshold_mb:1", (1.0, None)),
        ("pinned_max_cached_size_mb:64", (None, 64.0)),
        ("expandable_segments:True,pinned_max_round_threshold_mb:32,pinned_max_cached_size_mb:16", (32.0, 16.0)),
        ("roundup_power2_divisions:[64:8,256:4,>:1], pinned_max_round_threshold_mb : 8", (8.0, None)),
        ("max_split_size_mb:100", (None, None)),
        ("pinned_max_round_threshold_mb:x", (None, None)),
        ("", (None, None)),
        (None, (None, None)),
    ],
)
def test_pinned_limits_are_read_from_torchs_config_string(conf: str | None, limits: tuple) -> None:
    assert pinned_limits(conf) == limits


def _settings(**kw: object):
    base = settings_from_overrides({}, model="synthetic:qwen2.5-7b", gpu="h200", n_gpus=1)
    return replace(base, **kw)


def test_pinned_counts_blocks_by_torchs_rules() -> None:
    c = default_calibration()
    sizes = [0.5 * MIB, 270 * MIB, 100 * MIB, 3000 * MIB]
    default = pinned(sizes, c)
    assert default.raw == sum(sizes)
    assert default.held == 0.5 * MIB + 512 * MIB + 128 * MIB + 4096 * MIB and default.exact == frozenset()
    # above the round threshold: its own size, cached
    exact = pinned(sizes, c, _settings(pinned_round_max_mib=1.0))
    assert exact.held == exact.raw and exact.rounding == 0
    assert exact.exact == {270 * MIB, 100 * MIB, 3000 * MIB}
    # only blocks above the threshold keep their size
    some = pinned(sizes, c, _settings(pinned_round_max_mib=200.0))
    assert some.held == 0.5 * MIB + 270 * MIB + 128 * MIB + 3000 * MIB and some.exact == {270 * MIB, 3000 * MIB}
    # above the cache limit: own size and never cached, so never in a shared size class
    uncached = pinned(sizes, c, _settings(pinned_cache_max_mib=64.0))
    assert uncached.held == uncached.raw and uncached.exact == frozenset()
    both = pinned(sizes, c, _settings(pinned_round_max_mib=1.0, pinned_cache_max_mib=1.0))
    assert both.rounding == 0 and both.exact == frozenset()
    # adding keeps the sizes; scaling by GPUs per node does not multiply sizes
    total = exact + some
    assert total.exact == exact.exact and total.times(8).exact == exact.exact and total.times(8).raw == 8 * total.raw


def test_size_classes_and_clashes() -> None:
    assert [size_class(n) for n in (1, 2, 3, 4, 5, 1024, 1025)] == [0, 1, 2, 2, 3, 10, 11]
    assert size_class(int(24.5 * MIB)) == size_class(int(31.5 * MIB)) == size_class(32 * MIB) == 25
    assert size_class(32 * MIB + 1) == 26
    assert pinned_clashes(frozenset({int(24.5 * MIB), int(31.5 * MIB), 100 * MIB})) == (
        (int(24.5 * MIB), int(31.5 * MIB)),
    )
    assert pinned_clashes(frozenset({100 * MIB, 270 * MIB, 3000 * MIB})) == ()
    assert pinned_clashes(frozenset()) == ()


def test_the_cell_asks_every_ray_worker_for_it() -> None:
    m = load_matrix(PINNED)
    assert m.base.pinned_round_max_mb == 1 and axis_code("pinned_round_max_mb") == "pinround"
    # the key's value is derived ("pinned_max_round_threshold_mb:N"), so it is not the setting itself: a raw
    # PYTORCH_ALLOC_CONF override or axis keeps its own string values and replaces the generated one
    assert "pinned_round_max_mb" not in names() and readable_name(f"+{ALLOC_CONF_KEY}", "fsdp") is None


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> list:
    out = tmp_path_factory.mktemp("pinned")
    return annotate_cells(plan_matrix(load_matrix(PINNED), "bench", out_dir=out, validate_with_verl=False))


def test_the_14b_recipe_fits_the_host_with_exact_blocks(cells: list) -> None:
    assert len(cells) == 8 and all(c.status == "ok" for c in cells)
    ref = next(c for c in cells if c.id == REF)
    assert f"+{ALLOC_CONF_KEY}=pinned_max_round_threshold_mb:1" in ref.argv
    assert ref.setting(ALLOC_CONF_KEY) == "pinned_max_round_threshold_mb:1"
    s = settings_from_cell(ref)
    assert (s.pinned_round_max_mib, s.pinned_cache_max_mib) == (1.0, None)
    assert ref.predicted_host_memory_gb == pytest.approx(109.8, abs=0.05) and "pinned_rounding" not in (
        ref.host_memory_breakdown or {}
    )
    # the same command without the setting: the 14B matrix's recipe, 61.6 GiB of rounding, over the host
    rounded = predict_host(replace(s, pinned_round_max_mib=None))
    assert rounded.peak_gib == pytest.approx(171.4, abs=0.05)
    assert rounded.breakdown["pinned_rounding"] == pytest.approx(61.6, abs=0.05)
    assert not rounded.fits(125) and predict_host(s).fits(125)
    # GPU memory is not the host allocator's business
    assert ref.predicted_memory_gb == pytest.approx(101.0, abs=0.05)


def test_a_threshold_that_hits_the_free_list_bug_is_refused(tmp_path: Path) -> None:
    text = (MATRICES / "h200-1gpu-7b-nokl.toml").read_text().replace("seed = 42", "seed = 42\npinned_round_max_mb = 1")
    (tmp_path / "m.toml").write_text(text)
    cells = annotate_cells(
        plan_matrix(load_matrix(tmp_path / "m.toml"), "bench", out_dir=tmp_path / "out", validate_with_verl=False)
    )
    assert cells and all(c.status == "invalid" for c in cells if "bm-klloss" not in c.id)
    reason = next(c.reason for c in cells if c.status == "invalid" and "bypass" not in (c.reason or ""))
    # vLLM's 7B sleep copy: o_proj 24.5 MiB and the fused qkv 31.5 MiB share the 32 MiB class
    assert "pinned_max_round_threshold_mb:1" in reason and "24.5 and 31.5 MiB" in reason
    assert "pinned_max_cached_size_mb" in reason and "#192722" in reason
    # above those sizes the 7B recipe is accepted, with a third less host memory predicted
    (tmp_path / "m.toml").write_text(text.replace("pinned_round_max_mb = 1", "pinned_round_max_mb = 32"))
    ok = annotate_cells(
        plan_matrix(load_matrix(tmp_path / "m.toml"), "bench", out_dir=tmp_path / "out2", validate_with_verl=False)
    )
    ref = next(c for c in ok if c.id == c.reference)
    assert ref.status == "ok" and ref.predicted_host_memory_gb == pytest.approx(69.8, abs=0.05)


def test_committed_predictions_match_the_planner(cells: list) -> None:
    assert_plan_committed(cells, PREDICTIONS, "h200-1gpu-14b-pinned", "8 ok / 8 cells")


def test_a_raw_allocator_override_is_read_and_replaces_the_generated_one(tmp_path: Path) -> None:
    text = PINNED.read_text().replace(
        "[profiles.bench]",
        f'[overrides]\n"+{ALLOC_CONF_KEY}" = "pinned_max_round_threshold_mb:64,pinned_max_cached_size_mb:32"\n\n'
        "[profiles.bench]",
    )
    (tmp_path / "m.toml").write_text(text)
    cells = plan_matrix(load_matrix(tmp_path / "m.toml"), "bench", out_dir=tmp_path / "out", validate_with_verl=False)
    ref = next(c for c in cells if c.id == REF)
    assert [a for a in ref.argv if "PYTORCH_ALLOC_CONF" in a] == [
        f'+{ALLOC_CONF_KEY}="pinned_max_round_threshold_mb:64,pinned_max_cached_size_mb:32"'  # quoted: a comma
    ]
    s = settings_from_cell(ref)
    assert (s.pinned_round_max_mib, s.pinned_cache_max_mib) == (64.0, 32.0)
    # blocks over 32 MiB are neither rounded nor cached, so no size class is shared; those up to 32 MiB are still
    # rounded (the fp32 k/v projections, 20 MiB, in 32 MiB blocks): 1.3 GiB over the threshold-1 prediction
    (annotated,) = annotate_cells([ref])
    assert annotated.status == "ok" and annotated.predicted_host_memory_gb == pytest.approx(111.1, abs=0.05)
    assert annotated.host_memory_breakdown["pinned_rounding"] == pytest.approx(1.26, abs=0.05)
