"""`[matrix] reference_matrix`: a matrix of new levers read against a recipe measured in another matrix. The
planner checks the reference exists there on the same hardware and model; the report and the gate find it
there and compare objectives by the verl settings both commands run with (their axes name other things).

The report and gate tests use the committed 7B recipe baseline and copies of it that stand for cells of the
flex matrix (fixtures for the ratio logic, not measurements)."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.errors import InputError
from suite.gate.compare import compare
from suite.gate.config import load_config
from suite.gate.objective import VERL_DEFAULTS, command_objective
from suite.gate.reference import cell_ratios, find_reference
from suite.matrix.load import load_matrix
from suite.plan.planner import plan_matrix
from suite.report.columns import reference_notes
from suite.report.model import build
from suite.report.table import flatten_all, with_reference
from suite.results.baseline import read_baseline
from suite.results.schema import Result

ROOT = Path(__file__).resolve().parents[1]
MATRICES = ROOT / "suite" / "matrices"
RECIPE = "lora32-off_param+optimizer-tp1-rb45-mnbt1536-mb15-gc-nobm-klloss"
FULL = f"qwen2.5-7b/h200x1/fsdp/{RECIPE}"
STORE = ROOT / "baselines"
BASELINE = STORE / "h200" / "h200-1gpu-7b-nokl" / "qwen2.5-7b" / "h200x1" / "fsdp" / f"{RECIPE}.json"
FLEX_ID = "lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb5-nogc"
ATTN = "+actor_rollout_ref.model.override_config.attn_implementation"


def recipe() -> Result:
    return read_baseline(BASELINE).results[0]


def as_flex_cell(r: Result, cell: str, factor: float, *, argv_edit: dict[str, str] | None = None) -> Result:
    """The recipe's result relabelled as a cell of the flex matrix, throughput scaled (a fixture)."""
    edits = {ATTN: "flex_attention", "actor_rollout_ref.model.use_remove_padding": "True", **(argv_edit or {})}
    argv = []
    for a in r.provenance.argv:
        key = a.split("=", 1)[0].strip("'")
        argv.append(f"{key}={edits[key]}" if key in edits else a)
    steps = [s.model_copy(update={"throughput": s.throughput * factor}) for s in r.steps]
    return r.model_copy(
        update={
            "id": f"qwen2.5-7b/h200x1/fsdp/{cell}",
            "matrix": "h200-1gpu-7b-flex",
            "axes": {"offload": "none", "attn_implementation": "flex_attention", "use_remove_padding": True},
            "reference": RECIPE,
            "reference_matrix": "h200-1gpu-7b-nokl",
            "steps": steps,
            "provenance": r.provenance.model_copy(update={"argv": argv}),
        }
    )


# --- the planner ---------------------------------------------------------------------------------------------


HEAD = """[matrix]
name = "t"
gpu = "h200"
gpus_per_node = 1
model = "{model}"
backend = "fsdp"
reference = "{ref}"
reference_matrix = "{other}"

[axes]
offload = ["none"]
rollout_batch = [45]
"""


def _write(tmp_path: Path, **kw: str) -> Path:
    p = tmp_path / "t.toml"
    p.write_text(HEAD.format(**{"model": "synthetic:qwen2.5-7b", "ref": RECIPE, "other": "h200-1gpu-7b-nokl", **kw}))
    return p


def test_a_reference_in_a_shipped_matrix_plans(tmp_path: Path) -> None:
    (c,) = plan_matrix(load_matrix(_write(tmp_path)), "bench", out_dir=tmp_path / "o", validate_with_verl=False)
    assert (c.reference, c.reference_matrix) == (RECIPE, "h200-1gpu-7b-nokl")


def test_the_matrix_beside_wins_over_the_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "h200-1gpu-7b-nokl.toml").write_text((MATRICES / "h200-1gpu-7b-nokl.toml").read_text())
    with pytest.raises(InputError, match="not a cell of 'h200-1gpu-7b-nokl'"):
        plan_matrix(load_matrix(_write(tmp_path, ref="lora32-off_none-tp1-rb45-nope")), "bench", out_dir=tmp_path)


@pytest.mark.parametrize(
    ("kw", "match", "field"),
    [
        ({"other": "no-such-matrix"}, "no such matrix", "matrix.reference_matrix"),
        ({"other": "t"}, "this matrix itself", "matrix.reference_matrix"),
        (
            {"model": "synthetic:qwen2.5-14b"},
            "model 'synthetic:qwen2.5-14b' vs 'synthetic:qwen2.5-7b'",
            "matrix.reference_matrix",
        ),
        (
            {"ref": "lora32-off_none-tp1-rb45-x"},
            "is not a cell of 'h200-1gpu-7b-nokl'.*include: lora32-",
            "matrix.reference",
        ),
    ],
)
def test_bad_references_elsewhere_are_refused_before_any_gpu_time(
    tmp_path: Path, kw: dict[str, str], match: str, field: str
) -> None:
    with pytest.raises(InputError, match=match) as exc:
        plan_matrix(load_matrix(_write(tmp_path, **kw)), "bench", out_dir=tmp_path / "o", validate_with_verl=False)
    assert exc.value.field == field


def test_a_reference_matrix_needs_a_reference(tmp_path: Path) -> None:
    p = tmp_path / "t.toml"
    p.write_text(_write(tmp_path).read_text().replace(f'reference = "{RECIPE}"\n', ""))
    with pytest.raises(InputError, match="names no cell: set reference too"):
        plan_matrix(load_matrix(p), "bench", out_dir=tmp_path / "o", validate_with_verl=False)


# --- objective settings from commands ------------------------------------------------------------------------


def test_verl_defaults_are_verls() -> None:
    omegaconf = pytest.importorskip("omegaconf")
    verl = pytest.importorskip("verl")
    yaml = Path(verl.__file__).parent / "trainer" / "config" / "_generated_ppo_trainer.yaml"
    config = omegaconf.OmegaConf.load(yaml)
    for key, value in VERL_DEFAULTS.items():
        assert omegaconf.OmegaConf.select(config, key) == value, key


def test_command_objective_fills_verls_defaults() -> None:
    got = command_objective(
        [
            "python3",
            "-m",
            "verl.trainer.main_ppo",
            "+actor_rollout_ref.actor.use_kl_loss=True",
            "actor_rollout_ref.rollout.gpu_memory_utilization=0.3",
            "algorithm.kl_ctrl.kl_coef=0.1",
        ]
    )
    assert got["actor_rollout_ref.actor.use_kl_loss"] is True  # prefix stripped, value typed
    assert got["algorithm.kl_ctrl.kl_coef"] == 0.1  # a prefix family: kept as given
    assert "actor_rollout_ref.rollout.gpu_memory_utilization" not in got  # how, not what
    assert got["algorithm.rollout_correction.bypass_mode"] is False and got["actor_rollout_ref.rollout.n"] == 1
    assert command_objective([]) == {}
    # the recipe's recorded command: what it sets explicitly wins over the defaults
    rec = command_objective(recipe().provenance.argv)
    assert rec["actor_rollout_ref.rollout.n"] == 5 and rec["algorithm.adv_estimator"] == "grpo"


# --- report and gate -----------------------------------------------------------------------------------------


def test_report_reads_the_flex_matrix_against_the_nokl_recipe() -> None:
    base = recipe()
    same = as_flex_cell(base, FLEX_ID, 1.3)
    nokl = as_flex_cell(
        base,
        "lora32-off_none-tp1-rb45-attnflex-rmpad-mnbt8192-mb5-nogc-noklloss",
        1.8,
        argv_edit={"actor_rollout_ref.actor.use_kl_loss": "False"},
    )
    rows = with_reference(flatten_all([("recipe", base), ("flex", same), ("flexnokl", nokl)]))
    by_cell = {r.cell: r for r in rows}
    assert by_cell[FLEX_ID].reference_id == FULL and by_cell[FLEX_ID].objective_differences == ()
    assert by_cell[FLEX_ID].throughput_vs_reference == pytest.approx(1.3, rel=1e-6)
    assert by_cell[nokl.id.rsplit("/", 1)[1]].objective_differences == ("actor_rollout_ref.actor.use_kl_loss",)
    assert not by_cell[FLEX_ID].is_reference and by_cell[RECIPE].is_reference
    report = build(rows)
    flex = next(b for b in report.bests if b.matrix == "h200-1gpu-7b-flex")
    assert flex.reference is not None and flex.reference.cell == RECIPE
    assert flex.fastest is not None and flex.fastest.cell == FLEX_ID and flex.speedup == pytest.approx(1.3, rel=1e-6)
    assert flex.fastest_other_objective is not None and flex.other_objective_speedup == pytest.approx(1.8, rel=1e-6)
    # the recipe's own matrix is unchanged by it
    own = next(b for b in report.bests if b.matrix == "h200-1gpu-7b-nokl")
    assert own.reference is not None and own.fastest is not None and own.fastest.cell == RECIPE


def test_report_notes_say_where_the_reference_is() -> None:
    base = recipe()
    rows = with_reference(flatten_all([("recipe", base), ("flex", as_flex_cell(base, FLEX_ID, 1.3))]))
    report = build(rows)
    (group,) = report.groups
    text = "\n".join(reference_notes(group))
    assert f"matrix h200-1gpu-7b-flex is read against {RECIPE} of matrix h200-1gpu-7b-nokl" in text
    alone = build(with_reference(flatten_all([("flex", as_flex_cell(base, FLEX_ID, 1.3))])))
    assert f"names the reference cell {RECIPE} of matrix h200-1gpu-7b-nokl, which is not among these results" in (
        "\n".join(reference_notes(alone.groups[0]))
    )


def test_gate_finds_the_reference_in_the_store_of_the_other_matrix() -> None:
    base = recipe()
    flex = as_flex_cell(base, FLEX_ID, 1.3)
    key = ("h200", "h200-1gpu-7b-nokl", FULL)
    ref = find_reference([flex], {}, {key: (BASELINE, read_baseline(BASELINE))})
    assert ref is not None and ref.source == "baseline" and ref.matrix == "h200-1gpu-7b-nokl"
    ratios = cell_ratios([flex], ref)
    assert ratios.throughput == pytest.approx(1.3, rel=1e-6) and ratios.objective_differences == ()
    off = as_flex_cell(base, FLEX_ID, 1.8, argv_edit={"actor_rollout_ref.actor.use_kl_loss": "False"})
    assert cell_ratios([off], ref).objective_differences == ("actor_rollout_ref.actor.use_kl_loss",)
    # among the same run's results too
    current = find_reference([flex], {key: [base]}, {})
    assert current is not None and current.source == "current"


def test_gate_report_over_the_store() -> None:
    flex = as_flex_cell(recipe(), FLEX_ID, 1.3)
    gate = compare([(Path("flex.json"), flex)], STORE, load_config(None))
    rows = [r for r in gate.rows if r.matrix == "h200-1gpu-7b-flex"]
    assert rows and all(r.reference == FULL and r.reference_source == "baseline" for r in rows)
    assert all(r.throughput_vs_reference == pytest.approx(1.3, rel=1e-6) for r in rows)
    assert all(r.reference_objective_differences == () for r in rows)
    assert any("matrix h200-1gpu-7b-nokl" in n for n in gate.reference_notes)


def test_plan_shows_predicted_memory_against_the_reference_elsewhere(capsys: pytest.CaptureFixture[str]) -> None:
    from suite.cli import main

    assert main(["plan", str(MATRICES / "h200-1gpu-7b-flex.toml"), "--no-verl-check", "--predict-memory"]) == 0
    out = capsys.readouterr().out
    assert f"reference {RECIPE} of h200-1gpu-7b-nokl" in out.splitlines()[0]
    assert "vs ref" in out.splitlines()[1] and "(ref)" not in out  # the reference is not a cell here
    row = next(line for line in out.splitlines() if line.startswith(FLEX_ID + " "))
    # 78.8 GiB predicted against the recipe's 70.1
    assert " 78.8 " in row and " x1.12 " in row
    # without --predict-memory there is nothing to divide, and the other matrix is not planned
    assert main(["plan", str(MATRICES / "h200-1gpu-7b-flex.toml"), "--no-verl-check"]) == 0
    assert "vs ref" not in capsys.readouterr().out
