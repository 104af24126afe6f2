"""Which axes change a step's objective (suite.gate.objective), and how the report reads a cell that does other
work than its reference: its ratios marked, never the "fastest" of a best-cells line that has a reference."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from md_tables import table_lines
from synthetic_results import make_result

from suite.gate.objective import (
    MARK,
    NAMED,
    changes_objective,
    command_objective,
    note,
    objective_differences,
    objective_views,
)
from suite.matrix.load import load_matrix
from suite.plan.planner import plan_matrix
from suite.report.build import write_report
from suite.report.model import build
from suite.report.table import flatten_all, with_reference
from suite.results.schema import Result

ROOT = Path(__file__).resolve().parents[1]
MATRICES = ROOT / "suite" / "matrices"
BYPASS = "algorithm.rollout_correction.bypass_mode"
REF = "lora32-off_none-tp1-rb16-klloss"


@pytest.mark.parametrize(
    "axis",
    [
        *sorted(NAMED),
        BYPASS,
        f"+{BYPASS}",
        f"++{BYPASS}",
        "algorithm.rollout_correction.rollout_is",
        "algorithm.adv_estimator",
        "algorithm.use_kl_in_reward",
        "algorithm.kl_ctrl.kl_coef",
        "actor_rollout_ref.actor.use_kl_loss",
        "actor_rollout_ref.actor.kl_loss_type",
        "actor_rollout_ref.actor.loss_agg_mode",
        "actor_rollout_ref.actor.ppo_epochs",
        "actor_rollout_ref.actor.clip_ratio",
        "actor_rollout_ref.actor.clip_ratio_low",
        "actor_rollout_ref.actor.clip_ratio_c",
        "actor_rollout_ref.actor.policy_loss.loss_mode",
        "actor_rollout_ref.actor.optim.lr",
        "actor_rollout_ref.rollout.n",
        "actor_rollout_ref.rollout.temperature",
        "actor_rollout_ref.model.lora_rank",
        "data.max_response_length",
        "+reward_model.reward_manager",
    ],
)
def test_objective_axes(axis: str) -> None:
    assert changes_objective(axis)


@pytest.mark.parametrize(
    "axis",
    [
        "offload",
        "tp",
        "rollout_batch",
        "pp",
        "gpu_memory_utilization",
        "max_num_batched_tokens",
        "max_num_seqs",
        "max_model_len",
        "enforce_eager",
        "enable_gradient_checkpointing",
        "ppo_micro_batch_size_per_gpu",
        "log_prob_micro_batch_size_per_gpu",
        "use_remove_padding",
        "use_dynamic_bsz",
        "layered_summon",
        "load_format",
        "attn_implementation",
        "strategy",
        "seed",
        "actor_rollout_ref.rollout.name",  # shares a prefix with rollout.n, is not it
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
        "actor_rollout_ref.actor.fsdp_config.param_offload",
        "+actor_rollout_ref.rollout.engine_kwargs.vllm.compilation_config",
        "algorithm.rollout_correction",  # the group itself is not one of its keys
        "data.train_batch_size",
    ],
)
def test_how_axes(axis: str) -> None:
    assert not changes_objective(axis)


def test_differences_are_sorted_normalised_and_count_a_missing_side() -> None:
    ref = {"offload": "po", "use_kl_loss": True, BYPASS: False, "lora_rank": 32}
    assert objective_differences({**ref, "offload": "none"}, ref) == ()
    cell = {"offload": "none", "use_kl_loss": False, f"+{BYPASS}": True, "lora_rank": 32}
    assert objective_differences(cell, ref) == (BYPASS, "use_kl_loss")
    assert objective_differences(ref, ref) == ()
    # an objective axis one side lacks: its value there is unknown, so the cells are not the same work
    assert objective_differences({"lora_rank": 32}, {"lora_rank": 32, "kl_loss_coef": 0.001}) == ("kl_loss_coef",)
    assert objective_differences({"lora_rank": 32, "offload": "po"}, {"lora_rank": 32}) == ()
    assert note(cell, ref, (BYPASS, "use_kl_loss")) == (
        f"has another objective than its reference ({BYPASS} True (reference False), use_kl_loss False "
        "(reference True)): its ratios compare other work"
    )
    assert note({}, {"kl_loss_coef": 0.001}, ("kl_loss_coef",)) == (
        "has another objective than its reference (kl_loss_coef unset (reference 0.001)): its ratios compare other work"
    )
    assert MARK == "(other objective)"


def _plan(name: str, tmp_path: Path) -> list:
    return plan_matrix(load_matrix(MATRICES / f"{name}.toml"), "bench", out_dir=tmp_path, validate_with_verl=False)


@pytest.mark.parametrize(
    "name",
    [
        "h200-1gpu-7b",
        "h200-1gpu-14b",
        "h100-1gpu-7b",
        "h100-1gpu-14b",
        "h200-1gpu-7b-rmpad",
        "h200-1gpu-7b-flex",
        "h200-1gpu-14b-pinned",
        "h200-1gpu-14b-merge",
    ],
)
def test_heavy_sweeps_only_change_how_the_recipe_runs(name: str, tmp_path: Path) -> None:
    # the heavy matrices sweep offload, vLLM's pool, prefill chunks, graphs, micro batches and checkpointing
    # around the recipe: every planned cell does the reference's work, so every ratio is a speedup
    cells = _plan(name, tmp_path)
    mx = load_matrix(MATRICES / f"{name}.toml").matrix
    assert len(cells) > 4
    if mx.reference_matrix is None:
        ref = next(c for c in cells if c.id == mx.reference)
        for c in cells:
            assert objective_differences(c.axes, ref.axes) == (), c.id
    # a matrix read against a reference elsewhere is compared by the verl settings its commands run with
    other = _plan(mx.reference_matrix or name, tmp_path / "ref")
    ref = next(c for c in other if c.id == mx.reference)
    for c in cells:
        assert objective_differences(command_objective(c.argv), command_objective(ref.argv)) == (), c.id


def test_the_no_kl_matrix_separates_its_objectives(tmp_path: Path) -> None:
    cells = _plan("h200-1gpu-7b-nokl", tmp_path)
    ref = next(c for c in cells if c.id == load_matrix(MATRICES / "h200-1gpu-7b-nokl.toml").matrix.reference)
    diffs = {c.id: objective_differences(c.axes, ref.axes) for c in cells}
    for cid, d in diffs.items():
        expected = tuple(sorted(([BYPASS] if "-bm-" in cid else []) + (["use_kl_loss"] if "noklloss" in cid else [])))
        assert d == expected, cid
    # the measured baseline (no KL, bypass) is other work; the fastest same-objective candidate is not
    assert diffs["lora32-off_none-tp1-rb45-mnbt8192-mb5-nogc-bm-noklloss"] == (BYPASS, "use_kl_loss")
    assert diffs["lora32-off_none-tp1-rb45-mnbt8192-mb5-nogc-nobm-klloss"] == ()


def _variant(speed: float, *, kl: bool, bypass: bool, offload: str = "none") -> Result:
    r = make_result(lora_rank=32, offload=offload, reference=REF, steps=8)
    cell = f"lora32-off_{offload}-tp1-rb16" + ("-bm" if bypass else "") + ("-klloss" if kl else "-noklloss")
    steps = [s.model_copy(update={"throughput": s.throughput * speed}) for s in r.steps]
    return r.model_copy(
        update={
            "id": r.id.rsplit("/", 1)[0] + "/" + cell,
            "axes": {**r.axes, BYPASS: bypass, "use_kl_loss": kl},
            "steps": steps,
        }
    )


@pytest.fixture
def results() -> list[Result]:
    return [
        _variant(1.0, kl=True, bypass=False),  # the reference
        _variant(1.2, kl=True, bypass=False, offload="po"),  # same work, faster
        _variant(1.6, kl=False, bypass=True),  # fastest, but no KL loss and the rollout's policy as the old one
        _variant(0.8, kl=False, bypass=False, offload="po"),  # other work and slower
    ]


def test_rows_carry_their_objective_differences(results: list[Result]) -> None:
    rows = {r.cell: r for r in with_reference(flatten_all((f"r{i}", r) for i, r in enumerate(results)))}
    assert rows[REF].is_reference and rows[REF].objective_differences == ()
    assert rows["lora32-off_po-tp1-rb16-klloss"].objective_differences == ()
    assert rows["lora32-off_none-tp1-rb16-bm-noklloss"].objective_differences == (BYPASS, "use_kl_loss")
    assert rows["lora32-off_po-tp1-rb16-noklloss"].objective_differences == ("use_kl_loss",)
    # the ratio is still computed: it is marked, not hidden
    assert rows["lora32-off_none-tp1-rb16-bm-noklloss"].throughput_vs_reference == pytest.approx(1.6, rel=0.05)


def test_best_cells_rank_only_the_reference_objective(results: list[Result]) -> None:
    report = build(with_reference(flatten_all((f"r{i}", r) for i, r in enumerate(results))))
    (best,) = report.bests
    assert best.reference is not None and best.reference.cell == REF
    assert best.fastest is not None and best.fastest.cell == "lora32-off_po-tp1-rb16-klloss"
    assert best.speedup == pytest.approx(best.fastest.throughput / best.reference.throughput) and best.speedup > 1
    other = best.fastest_other_objective
    assert other is not None and other.cell == "lora32-off_none-tp1-rb16-bm-noklloss"
    assert best.other_objective_speedup == pytest.approx(1.6, rel=0.05)
    # when the fastest cell does the reference's work there is nothing to show apart
    same = build(with_reference(flatten_all((f"r{i}", r) for i, r in enumerate(results[:2] + results[3:]))))
    assert same.bests[0].fastest_other_objective is None and same.bests[0].other_objective_speedup is None
    # without the reference in the report nothing is compared: the fastest is the fastest
    alone = build(with_reference(flatten_all((f"r{i}", r) for i, r in enumerate(results[1:]))))
    assert alone.bests[0].fastest.cell == "lora32-off_none-tp1-rb16-bm-noklloss"
    assert alone.bests[0].fastest_other_objective is None


def test_report_files_mark_other_objectives(results: list[Result], tmp_path: Path) -> None:
    write_report(with_reference(flatten_all((f"r{i}", r) for i, r in enumerate(results))), tmp_path)
    text = (tmp_path / "index.md").read_text()
    cells = table_lines(text, "### h100")
    head = cells[0]
    vs = {r[head.index("cell")]: r[head.index("tokens/s/GPU vs ref")] for r in cells[1:]}
    assert vs[REF] == "x1.00 (ref)"
    assert vs["lora32-off_po-tp1-rb16-klloss"].startswith("x1.") and "other" not in vs["lora32-off_po-tp1-rb16-klloss"]
    assert vs["lora32-off_none-tp1-rb16-bm-noklloss"].endswith(" (other objective)")
    assert vs["lora32-off_po-tp1-rb16-noklloss"].startswith("x0.") and vs["lora32-off_po-tp1-rb16-noklloss"].endswith(
        " (other objective)"
    )
    assert (
        "lora32-off_none-tp1-rb16-bm-noklloss has another objective than its reference "
        f"({BYPASS} True (reference False), use_kl_loss False (reference True))" in text
    )
    best = table_lines(text, "## Best cells")
    line = dict(zip(best[0], best[1], strict=True))
    assert line["fastest cell that fits"] == "lora32-off_po-tp1-rb16-klloss"
    assert line["faster cell, other objective"] == f"lora32-off_none-tp1-rb16-bm-noklloss ({BYPASS}, use_kl_loss)"
    assert line["other-objective vs ref"].startswith("x1.")
    assert float(line["other-objective vs ref"][1:]) > float(line["vs ref"][1:])
    html = (tmp_path / "index.html").read_text()
    assert "faster cell, other objective" in html and "(other objective)" in html
    recs = {r["cell"]: r for r in json.loads((tmp_path / "results.json").read_text())}
    assert recs["lora32-off_none-tp1-rb16-bm-noklloss"]["objective_differences"] == [BYPASS, "use_kl_loss"]
    assert recs[REF]["objective_differences"] == []
    rows = {r["cell"]: r for r in csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text()))}
    assert json.loads(rows["lora32-off_po-tp1-rb16-noklloss"]["objective_differences"]) == ["use_kl_loss"]
    # mappings are JSON in the CSV too, not Python reprs
    assert all(r["startup"] == "" or isinstance(json.loads(r["startup"]), dict) for r in rows.values())


def test_objective_views_read_axes_within_a_matrix_and_settings_across_two() -> None:
    def never() -> dict:
        raise AssertionError("verl settings read within one matrix")

    a, b = {"offload": "none"}, {"offload": "param+optimizer"}
    assert objective_views(("m", a, never), ("m", b, never)) == (a, b)
    s, t = {"actor_rollout_ref.actor.use_kl_loss": True}, {"actor_rollout_ref.actor.use_kl_loss": False}
    assert objective_views(("m", a, lambda: s), ("other", b, lambda: t)) == (s, t)


def test_a_bf16_actor_changes_the_objective() -> None:
    """verl 0.9.1 casts LoRA adapters to the base model's dtype: a bf16 actor (half the frozen base's memory) trains
    bf16 adapters, other numerics than the recipe's fp32 ones."""
    from suite.gate.objective import VERL_DEFAULTS, changes_objective, command_objective, objective_differences

    key = "actor_rollout_ref.actor.fsdp_config.model_dtype"
    assert changes_objective(key) and changes_objective(f"+{key}")
    assert not changes_objective("actor_rollout_ref.ref.fsdp_config.model_dtype")  # the frozen reference
    assert VERL_DEFAULTS[key] == "fp32"
    assert objective_differences({key: "bf16"}, {key: "fp32"}) == (key,)
    assert command_objective(["python3", "-m", "verl.trainer.main_ppo", f"{key}=bf16"])[key] == "bf16"
    assert command_objective(["python3", "-m", "verl.trainer.main_ppo", "trainer.n_gpus_per_node=1"])[key] == "fp32"
