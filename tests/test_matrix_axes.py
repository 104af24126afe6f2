"""Any setting is an axis (issue 17): old ids stay as they were, extra axes add id parts and reach the verl
command, constraints and memory model; bad axes exit 2 naming the field; the reference cell; dataset subsets of
bench cells; the plan table's reference marker, ratio and host-memory column."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from suite.cli import main
from suite.errors import InputError
from suite.matrix import load_matrix, parse_matrix
from suite.matrix.ids import BOOL_WORDS, CODES, CodeClash, axis_code, axis_part, cell_id, check_codes
from suite.memory.predict import annotate_cells
from suite.plan.overrides import VAL_SUBSET_ROWS
from suite.plan.planner import plan_matrix
from suite.plan.render import table

REPO = Path(__file__).resolve().parent.parent
MATRICES = REPO / "suite" / "matrices"
H200_7B = MATRICES / "h200-1gpu-7b.toml"
H200_7B_REF = "lora32-off_param+optimizer-tp1-rb45-gmu0.3-mnbt1536-graphs-mb15-gc"

HEAD = """[matrix]
name = "t"
gpu = "h100"
gpus_per_node = 1
model = "synthetic:qwen2.5-0.5b"
backend = "fsdp"
"""
RS, UDB = "actor_rollout_ref.rollout", "actor_rollout_ref.actor.use_dynamic_bsz"


def _plan(m, tmp_path: Path, profile: str = "bench", **kw):
    return plan_matrix(m, profile, out_dir=tmp_path / "runs", validate_with_verl=False, **kw)


def _old_id(lora: int, offload: str, tp: int, rb: int) -> str:
    return f"{'full' if lora == 0 else f'lora{lora}'}-off_{offload}-tp{tp}-rb{rb}"


def _args(cell) -> dict[str, str]:
    """argv as key -> value (verl entry point dropped); a repeated key fails the test."""
    pairs = [a.split("=", 1) for a in cell.argv[3:]]
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), [k for k, n in Counter(keys).items() if n > 1]
    return dict(pairs)


def _bare(args: dict[str, str], key: str) -> list[tuple[str, str]]:
    """Every argv entry for `key`, with or without Hydra's +/++ prefix."""
    return [(k, v) for k, v in args.items() if k.lstrip("+~") == key]


# ---- 1. old ids unchanged ------------------------------------------------------------------------------------


def _baseline_ids() -> dict[str, set[str]]:
    """matrix name -> cell ids of the committed baselines (h100, h200)."""
    out: dict[str, set[str]] = {}
    for gen in ("h100", "h200"):
        for f in sorted((REPO / "baselines" / gen).rglob("*.json")):
            d = json.loads(f.read_text())
            matrix = f.relative_to(REPO / "baselines" / gen).parts[0]
            out.setdefault(matrix, set()).add(d["id"].rsplit("/", 1)[-1])
            for r in d["results"]:
                assert r["matrix"] == matrix, f
                out[matrix].add(r["id"].rsplit("/", 1)[-1])
    return out


def test_baseline_ids_are_planned_unchanged(tmp_path: Path) -> None:
    baselines = _baseline_ids()
    four_axis = {"h100-1gpu-graphs", "h100-1gpu-oom", "h100-1gpu-1.5b", "h100-1gpu-megatron", "smollm2-train"}
    assert set(baselines) == four_axis | {
        "h200-1gpu-7b-nokl",
        "h200-1gpu-7b-flex",
        "h100-1gpu-7b-fa",
        "h100-1gpu-7b-fa-kv",
        "h100-1gpu-7b-fa-mb5",
        "h100-1gpu-14b-bf16",  # the first 14B baseline, 2026-12-08
    }
    # the 7B recipe (2026-12-04) is the eleventh, 7B flex the twelfth, the H100 flash-attn cells (2026-12-06) on
    assert sum(map(len, baselines.values())) >= 14
    for name, ids in baselines.items():
        m = load_matrix(MATRICES / f"{name}.toml")
        # the four-axis matrices sweep only the named axes; the heavy one adds named and raw-key axes
        assert bool(m.axes.extra()) is (name not in four_axis), name
        planned = {c.id for c in _plan(m, tmp_path)}
        assert ids <= planned, (name, ids - planned)


@pytest.mark.parametrize(
    "path", [p for p in sorted(MATRICES.glob("*.toml")) if not load_matrix(p).axes.extra()], ids=lambda p: p.name
)
def test_four_axis_matrices_keep_the_old_id_format(path: Path, tmp_path: Path) -> None:
    m = load_matrix(path)
    cells = _plan(m, tmp_path)
    assert cells
    for c in cells:
        assert list(c.axes) == ["lora_rank", "offload", "tp", "rollout_batch"]
        assert c.id == _old_id(c.axes["lora_rank"], c.axes["offload"], c.axes["tp"], c.axes["rollout_batch"])
    if m.matrix.reference:  # the seed recipes keep their names
        assert m.matrix.reference in {c.id for c in cells}


def test_seed_reference_ids() -> None:
    assert load_matrix(MATRICES / "h100.toml").matrix.reference == "lora32-off_param+optimizer-tp4-rb180"
    assert load_matrix(MATRICES / "h20.toml").matrix.reference == "full-off_param+optimizer-tp8-rb512"


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        (
            {"lora_rank": 32, "offload": "param+optimizer", "tp": 4, "rollout_batch": 180},
            "lora32-off_param+optimizer-tp4-rb180",
        ),
        ({"lora_rank": 0, "offload": "none", "tp": 1, "rollout_batch": 16}, "full-off_none-tp1-rb16"),
        (
            {"lora_rank": 8, "offload": "param+optimizer+activation", "tp": 8, "rollout_batch": 512},
            "lora8-off_param+optimizer+activation-tp8-rb512",
        ),
    ],
)
def test_cell_id_four_axes_is_the_old_format(point: dict, expected: str) -> None:
    assert cell_id(point) == expected
    assert cell_id(point, ()) == _old_id(*point.values())


# ---- 2. extra axes -------------------------------------------------------------------------------------------

EXTRA = (
    HEAD
    + f"""
[axes]
lora_rank = [0, 8]
rollout_batch = [16]
gpu_memory_utilization = [0.3, 0.5]
max_num_batched_tokens = [4096, 8192]
enforce_eager = [true, false]
ppo_micro_batch_size_per_gpu = [4, 7]
enable_gradient_checkpointing = [true, false]
"{RS}.max_num_seqs" = [64, 256]
"{UDB}" = [true, false]

[overrides]
"++{RS}.max_num_seqs" = 32
"+{UDB}" = true
"{RS}.top_p" = 0.9
"""
)
EXTRA_AXES = [
    "gpu_memory_utilization",
    "max_num_batched_tokens",
    "enforce_eager",
    "ppo_micro_batch_size_per_gpu",
    "enable_gradient_checkpointing",
    f"{RS}.max_num_seqs",
    UDB,
]


def _part(axis: str, v) -> str:
    words = {
        "enforce_eager": ("eager", "graphs"),
        "enable_gradient_checkpointing": ("gc", "nogc"),
        UDB: ("dynbsz", "fixbsz"),
    }
    if axis in words:
        return words[axis][0] if v else words[axis][1]
    code = {
        "gpu_memory_utilization": "gmu",
        "max_num_batched_tokens": "mnbt",
        "ppo_micro_batch_size_per_gpu": "mb",
        f"{RS}.max_num_seqs": "mns",
    }[axis]
    return f"{code}{v}"


def test_extra_axes_expand_to_the_full_product(tmp_path: Path) -> None:
    m = parse_matrix(EXTRA)
    values = m.axis_values()
    assert list(values) == ["lora_rank", "offload", "tp", "rollout_batch", *EXTRA_AXES]
    cells = _plan(m, tmp_path)
    assert len(cells) == 2**8 == len({c.id for c in cells})
    assert [tuple(c.axes.values()) for c in cells] == list(itertools.product(*values.values()))
    for c in cells:
        parts = c.id.split("-")
        assert "-".join(parts[:4]) == _old_id(c.axes["lora_rank"], "none", 1, 16)
        assert parts[4:] == [_part(a, c.axes[a]) for a in EXTRA_AXES]  # one part per axis, in [axes] order
    assert cells[0].id == "full-off_none-tp1-rb16-gmu0.3-mnbt4096-eager-mb4-gc-mns64-dynbsz"
    assert cells[-1].id == "lora8-off_none-tp1-rb16-gmu0.5-mnbt8192-graphs-mb7-nogc-mns256-fixbsz"


def test_extra_axes_reach_the_verl_command(tmp_path: Path) -> None:
    cells = _plan(parse_matrix(EXTRA), tmp_path)
    for c in cells:
        a = _args(c)
        ax = c.axes
        assert a[f"{RS}.gpu_memory_utilization"] == str(ax["gpu_memory_utilization"])
        assert a[f"{RS}.max_num_batched_tokens"] == str(ax["max_num_batched_tokens"])
        assert a[f"{RS}.enforce_eager"] == str(ax["enforce_eager"])
        assert a["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"] == str(ax["ppo_micro_batch_size_per_gpu"])
        assert a["actor_rollout_ref.model.enable_gradient_checkpointing"] == str(ax["enable_gradient_checkpointing"])
        # a raw-key axis wins over [overrides] (++ / + prefixed there) and over the generated max_num_seqs of
        # CUDA-graph cells, and appears once, under the axis's own spelling
        assert _bare(a, f"{RS}.max_num_seqs") == [(f"{RS}.max_num_seqs", str(ax[f"{RS}.max_num_seqs"]))]
        assert _bare(a, UDB) == [(UDB, str(ax[UDB]))]
        assert a[f"{RS}.top_p"] == "0.9"  # other raw overrides stay
        # the readable axes fix nothing else: the log-prob micro batch stays the [base] default
        assert a[f"{RS}.log_prob_micro_batch_size_per_gpu"] == "4"
    assert {c.axes["gpu_memory_utilization"] for c in cells} == {0.3, 0.5}


@pytest.mark.parametrize(
    ("axis", "override"),
    [
        (f"+{RS}.max_num_seqs", f"{RS}.max_num_seqs"),
        (f"++{RS}.max_num_seqs", f"+{RS}.max_num_seqs"),
        (f"{RS}.max_num_seqs", f"++{RS}.max_num_seqs"),
        (f"{RS}.max_num_seqs", f"{RS}.max_num_seqs"),
    ],
)
def test_raw_axis_replaces_override_whatever_the_prefix(axis: str, override: str, tmp_path: Path) -> None:
    # enforce_eager = false: the bench profile also generates rollout.max_num_seqs for CUDA-graph cells
    m = parse_matrix(
        HEAD + f'[axes]\n"{axis}" = [64, 256]\n[base]\nenforce_eager = false\n[overrides]\n"{override}" = 32\n'
    )
    cells = _plan(m, tmp_path)
    assert [c.id for c in cells] == ["full-off_none-tp1-rb16-mns64", "full-off_none-tp1-rb16-mns256"]
    assert [_bare(_args(c), f"{RS}.max_num_seqs") for c in cells] == [[(axis, "64")], [(axis, "256")]]


def test_constraints_see_extra_axis_values(tmp_path: Path) -> None:
    cells = _plan(parse_matrix(EXTRA), tmp_path)
    for c in cells:
        if c.axes["ppo_micro_batch_size_per_gpu"] == 7:  # 16 x n 5 = 80 responses per GPU: 7 does not divide it
            assert c.status == "invalid"
            assert c.reason == (
                "mini-vs-micro-batch: 80 responses/GPU per mini batch (16 x n 5 / DP 1) not "
                "divisible by ppo_micro_batch_size_per_gpu 7"
            )
        else:
            assert (c.status, c.reason) == ("ok", None)
    assert Counter(c.status for c in cells) == {"ok": 128, "invalid": 128}


def test_readable_axis_rule_on_other_values(tmp_path: Path) -> None:
    # batched-tokens-vs-seqs: vLLM needs max_num_batched_tokens >= max_num_seqs (both readable axes here)
    m = parse_matrix(
        HEAD + "[axes]\nmax_num_batched_tokens = [128, 8192]\nmax_num_seqs = [256]\n"
        "[base]\nprompt_length = 64\nresponse_length = 64\n"
    )
    cells = _plan(m, tmp_path)
    assert [c.id for c in cells] == ["full-off_none-tp1-rb16-mnbt128-mns256", "full-off_none-tp1-rb16-mnbt8192-mns256"]
    assert cells[0].status == "invalid" and cells[0].reason.startswith("batched-tokens-vs-seqs")
    assert "128" in cells[0].reason and "256" in cells[0].reason
    assert cells[1].status == "ok"


def test_memory_prediction_follows_extra_axes(tmp_path: Path) -> None:
    # short rollouts: the vLLM pool sets the peak, so gpu_memory_utilization moves it
    m = parse_matrix(HEAD + "[axes]\ngpu_memory_utilization = [0.3, 0.5]\n")
    low, high = annotate_cells(_plan(m, tmp_path))
    assert (low.axes["gpu_memory_utilization"], high.axes["gpu_memory_utilization"]) == (0.3, 0.5)
    assert 0 < low.predicted_memory_gb < high.predicted_memory_gb
    assert low.memory_breakdown != high.memory_breakdown
    # long responses, large micro batch: activations set the peak, so gradient checkpointing moves it (on verl's
    # torch log-softmax, whose logits keep the update the peak phase with checkpointing too)
    m = parse_matrix(
        HEAD
        + "flash_attn = false\n[axes]\nenable_gradient_checkpointing = [true, false]\n[base]\nresponse_length = 2048\n"
        "rollout_n = 8\nppo_micro_batch_size_per_gpu = 16\n"
    )
    gc, nogc = annotate_cells(_plan(m, tmp_path))
    assert (gc.id, nogc.id) == ("full-off_none-tp1-rb16-gc", "full-off_none-tp1-rb16-nogc")
    assert nogc.predicted_memory_gb > gc.predicted_memory_gb
    assert nogc.memory_breakdown["activations"] > 10 * gc.memory_breakdown["activations"]


def test_shipped_7b_memory_differs_by_gmu(tmp_path: Path) -> None:
    cells = {c.id: c for c in annotate_cells(_plan(load_matrix(H200_7B), tmp_path))}
    a = cells["lora32-off_none-tp1-rb45-gmu0.3-mnbt1536-graphs-mb15-gc"]
    b = cells["lora32-off_none-tp1-rb45-gmu0.5-mnbt1536-graphs-mb15-gc"]
    assert a.predicted_memory_gb < b.predicted_memory_gb


# ---- 3. bad input --------------------------------------------------------------------------------------------

BAD = [
    (
        "unknown-axis",
        "[axes]\nfoo = [1, 2]\n",
        "axes.foo",
        [
            "unknown axis 'foo'",
            "lora_rank, offload, tp, rollout_batch",
            "gpu_memory_utilization",
            "max_num_batched_tokens",
            "quoted raw verl key",
        ],
    ),
    ("unknown-axis-one-word-key", "[axes]\nmax_num_seq = [1]\n", "axes.max_num_seq", ["unknown axis 'max_num_seq'"]),
    (
        "gmu-out-of-range",
        "[axes]\ngpu_memory_utilization = [0.3, 1.5]\n",
        "axes.gpu_memory_utilization",
        ["bad value 1.5", "less than or equal to 1"],
    ),
    (
        "gmu-zero",
        "[axes]\ngpu_memory_utilization = [0]\n",
        "axes.gpu_memory_utilization",
        ["bad value 0", "greater than 0"],
    ),
    ("bool-axis-int", "[axes]\nenforce_eager = [true, 1]\n", "axes.enforce_eager", ["bad value 1", "boolean"]),
    ("literal-axis", "[axes]\nstrategy = ['fsdp', 'ddp']\n", "axes.strategy", ["bad value 'ddp'", "'fsdp2'"]),
    (
        "mini-batch-axis",
        "[axes]\nppo_mini_batch_size = ['rollout_batch/2', 'half']\n",
        "axes.ppo_mini_batch_size",
        ["bad value 'half'", "rollout_batch/K"],
    ),
    (
        "not-a-list",
        "[axes]\ngpu_memory_utilization = 0.5\n",
        "axes.gpu_memory_utilization",
        ["non-empty list", "got 0.5"],
    ),
    ("not-a-list-str", "[axes]\nload_format = 'aab'\n", "axes.load_format", ["non-empty list", "got 'aab'"]),
    ("raw-not-a-list", f'[axes]\n"{RS}.max_num_seqs" = 64\n', f"axes.{RS}.max_num_seqs", ["non-empty list", "64"]),
    ("empty", "[axes]\nmax_num_batched_tokens = []\n", "axes.max_num_batched_tokens", ["non-empty list", "[]"]),
    ("raw-empty", f'[axes]\n"{RS}.max_num_seqs" = []\n', f"axes.{RS}.max_num_seqs", ["non-empty list"]),
    (
        "repeated",
        "[axes]\ngpu_memory_utilization = [0.3, 0.3]\n",
        "axes",
        ["'gpu_memory_utilization' repeats a value", "[0.3, 0.3]"],
    ),
    ("raw-repeated", f'[axes]\n"{RS}.max_num_seqs" = [64, 64]\n', "axes", ["repeats a value"]),
    (
        "raw-list-value",
        f'[axes]\n"{RS}.max_num_seqs" = [[64], [128]]\n',
        f"axes.{RS}.max_num_seqs",
        ["values must be scalars", "[64]"],
    ),
    (
        "raw-table-value",
        f'[axes]\n"{RS}.max_num_seqs" = [{{a = 1}}]\n',
        f"axes.{RS}.max_num_seqs",
        ["values must be scalars", "{'a': 1}"],
    ),
    (
        "same-code-raw-and-readable",
        f'[axes]\n"{RS}.max_num_seqs" = [64, 256]\nmax_num_seqs = [128]\n',
        "axes.max_num_seqs",
        [f"'{RS}.max_num_seqs' and 'max_num_seqs'", "'mns'"],
    ),
    (
        "same-code-prefixes",
        f'[axes]\n"{RS}.max_num_seqs" = [64]\n"+{RS}.max_num_seqs" = [128]\n',
        f"axes.+{RS}.max_num_seqs",
        ["'mns'", "sweep one of them"],
    ),
    (
        "same-code-two-names",
        '[axes]\nulysses_sp = [1, 2]\n"actor_rollout_ref.actor.ulysses_sequence_parallel_size" = [1]\n',
        "axes.actor_rollout_ref.actor.ulysses_sequence_parallel_size",
        ["'sp'"],
    ),
    (
        "same-bool-word",
        '[axes]\nenforce_eager = [true]\n"actor_rollout_ref.rollout.enforce_eager" = [false]\n',
        "axes.actor_rollout_ref.rollout.enforce_eager",
        ["'eager'"],
    ),
    (
        "exclude-value-off-extra-axis",
        "[axes]\ngpu_memory_utilization = [0.3, 0.5]\n[[exclude]]\ngpu_memory_utilization = 0.7\n",
        None,
        ["exclude[0].gpu_memory_utilization", "0.7", "[0.3, 0.5]"],
    ),
    (
        "exclude-value-off-raw-axis",
        f'[axes]\n"{RS}.max_num_seqs" = [64]\n[[exclude]]\n"{RS}.max_num_seqs" = [64, 128]\n',
        None,
        [f"exclude[0].{RS}.max_num_seqs", "128", "[64]"],
    ),
    (
        "exclude-unswept-setting",
        "[axes]\ntp = [1]\n[[exclude]]\ngpu_memory_utilization = 0.5\n",
        None,
        ["unknown axis 'gpu_memory_utilization'", "allowed: lora_rank, offload, tp, rollout_batch"],
    ),
    (
        "reference-not-a-cell",
        'reference = "lora8-off_none-tp1-rb16-gmu0.9"\n[axes]\nlora_rank = [0, 8]\n'
        "gpu_memory_utilization = [0.3, 0.5]\n",
        "matrix.reference",
        [
            "'lora8-off_none-tp1-rb16-gmu0.9' is not a cell",
            "lora8-off_none-tp1-rb16-gmu0.3",
            "lora8-off_none-tp1-rb16-gmu0.5",
        ],
    ),
    (
        "reference-excluded",
        'reference = "full-off_none-tp1-rb16-gmu0.5"\n[axes]\ngpu_memory_utilization = [0.3, 0.5]\n'
        "[[exclude]]\ngpu_memory_utilization = 0.5\n",
        "matrix.reference",
        ["after [[exclude]]", "full-off_none-tp1-rb16-gmu0.3"],
    ),
    (
        "reference-old-id",
        'reference = "full-off_none-tp1-rb16"\n[axes]\ngpu_memory_utilization = [0.3, 0.5]\n',
        "matrix.reference",
        ["'full-off_none-tp1-rb16' is not a cell"],
    ),
    (
        "ids-sanitize-alike",
        "[axes]\nload_format = ['a b', 'a_b']\n",
        "axes",
        ["share the id 'full-off_none-tp1-rb16-loada_b'"],
    ),
    (
        "raw-ids-sanitize-alike",
        '[axes]\n"a.b.kind" = ["x/y", "x-y"]\n',
        "axes",
        ["share the id 'full-off_none-tp1-rb16-kindx_y'"],
    ),
]


@pytest.mark.parametrize(("name", "text", "field", "fragments"), BAD, ids=[b[0] for b in BAD])
def test_bad_axes_exit_2(
    name: str, text: str, field: str | None, fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / f"{name}.toml"
    # [matrix] keys (reference) go right after the head, before [axes]
    path.write_text(HEAD + text)
    rc = main(["plan", str(path), "--no-verl-check"])
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    msg = lines[0]
    assert msg.startswith(f"grpo-suite: error: {path}: "), msg
    if field:
        assert f": {field}: " in msg, msg
    for frag in fragments:
        assert frag in msg, (frag, msg)


def test_python_m_suite_plan_reference_not_a_cell(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "ref.toml"
    path.write_text(HEAD + 'reference = "full-off_none-tp1-rb16-gmu0.9"\n[axes]\ngpu_memory_utilization = [0.3]\n')
    p = subprocess.run(
        [sys.executable, "-m", "suite", "plan", str(path), "--no-verl-check"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert p.returncode == 2 and p.stdout == ""
    assert f"{path}: matrix.reference: reference 'full-off_none-tp1-rb16-gmu0.9' is not a cell" in p.stderr


def test_exclude_on_extra_axes(tmp_path: Path) -> None:
    m = parse_matrix(
        HEAD + f"[axes]\ngpu_memory_utilization = [0.3, 0.5]\nenforce_eager = [true, false]\n"
        f'"{RS}.max_num_seqs" = [64, 256]\n'
        "[[exclude]]\nenforce_eager = true\ngpu_memory_utilization = 0.5\n"
        f'[[exclude]]\n"{RS}.max_num_seqs" = [256]\nenforce_eager = false\n'
    )
    ids = [c.id for c in _plan(m, tmp_path)]
    assert ids == [
        "full-off_none-tp1-rb16-gmu0.3-eager-mns64",
        "full-off_none-tp1-rb16-gmu0.3-eager-mns256",
        "full-off_none-tp1-rb16-gmu0.3-graphs-mns64",
        "full-off_none-tp1-rb16-gmu0.5-graphs-mns64",
    ]


def test_reference_is_carried_on_every_cell(tmp_path: Path) -> None:
    cells = _plan(load_matrix(H200_7B), tmp_path)
    assert {c.reference for c in cells} == {H200_7B_REF}
    assert [c.id for c in cells].count(H200_7B_REF) == 1
    assert {c.host_memory_gb for c in cells} == {125}


def test_check_codes_direct() -> None:
    check_codes(["gpu_memory_utilization", "max_num_batched_tokens", "enforce_eager", "max_num_seqs"])
    sp = "actor_rollout_ref.actor.ulysses_sequence_parallel_size"
    with pytest.raises(CodeClash, match=r"'ulysses_sp' and 'actor_rollout_ref\.actor\.ulysses_sequence_parallel_size'"):
        check_codes(["ulysses_sp", sp])
    with pytest.raises(CodeClash) as exc:
        check_codes(["gpu_memory_utilization", "ulysses_sp", sp])
    assert exc.value.axis == sp
    with pytest.raises(ValueError, match="'mns'"):
        check_codes(["max_num_seqs", f"++{RS}.max_num_seqs"])


@pytest.mark.parametrize(
    ("axis", "value", "part"),
    [
        ("gpu_memory_utilization", 0.5, "gmu0.5"),
        ("max_num_batched_tokens", 8192, "mnbt8192"),
        ("enforce_eager", False, "graphs"),
        ("enforce_eager", True, "eager"),
        ("ppo_micro_batch_size_per_gpu", 25, "mb25"),
        ("enable_gradient_checkpointing", True, "gc"),
        ("enable_gradient_checkpointing", False, "nogc"),
        ("strategy", "fsdp2", "fsdp2"),
        ("lr", 3e-05, "lr3e-05"),
        ("lr", 1e20, "lr1e20"),
        ("kl_loss_type", "low_var_kl", "kltlow_var_kl"),
        ("seed", 7, "seed7"),
        (f"{RS}.max_num_seqs", 64, "mns64"),
        (f"++{RS}.free_cache_engine", False, "keepcache"),
        ("actor_rollout_ref.actor.clip_ratio_high", 0.28, "crh0.28"),
        ("x.y.use_foo", True, "uf"),
        ("x.y.use_foo", False, "nouf"),
        ("target_modules", ["q_proj", "v_proj"], "tmq_proj+v_proj"),
        ("load_format", "a b/c", "loada_b_c"),
    ],
)
def test_axis_parts(axis: str, value, part: str) -> None:
    assert axis_part(axis, value) == part


def test_codes_tables() -> None:
    assert axis_code("gpu_memory_utilization") == CODES["gpu_memory_utilization"] == "gmu"
    assert axis_code("actor_rollout_ref.rollout.max_num_batched_tokens") == "mnbt"
    assert axis_code("actor_rollout_ref.actor.kl_loss_type") == "klt"  # initials of a name not in CODES
    assert BOOL_WORDS["enforce_eager"] == ("eager", "graphs")


# ---- 4. verl validation of extra axes ------------------------------------------------------------------------


def test_h200_7b_passes_the_real_verl_check(tmp_path: Path, verl_validator) -> None:
    cells = annotate_cells(
        plan_matrix(
            load_matrix(H200_7B), "bench", out_dir=tmp_path / "runs", validate_with_verl=True, validator=verl_validator
        )
    )
    status = Counter(c.status for c in cells)
    assert len(cells) == 60 and status == {"ok": 40, "predicted-oom": 20}, status
    assert not [c for c in cells if c.status == "invalid"]
    for c in cells:
        # without checkpointing only the small micro batches (5, 9) fit; with it, every cell
        small = c.axes["ppo_micro_batch_size_per_gpu"] in (5, 9)
        fits = c.axes["enable_gradient_checkpointing"] or small
        assert c.status == ("ok" if fits else "predicted-oom"), c.id
        assert not (small and c.axes["enable_gradient_checkpointing"]), c.id  # [[exclude]]
    ref = next(c for c in cells if c.id == H200_7B_REF)
    assert ref.status == "ok" and ref.predicted_memory_gb is not None and ref.predicted_host_memory_gb is not None
    # the eager cells exist only at the reference's offload and gmu ([[exclude]])
    eager = [c for c in cells if c.axes["enforce_eager"]]
    assert len(eager) == 12  # 2 mnbt x (mb 15, 25 with and without gc; mb 5, 9 without)
    assert {(c.axes["offload"], c.axes["gpu_memory_utilization"]) for c in eager} == {("param+optimizer", 0.3)}


# ---- 5. data subsets -----------------------------------------------------------------------------------------

BENCH = """[matrix]
name = "sub"
gpu = "h100"
gpus_per_node = 1
model = "Qwen/Qwen2.5-0.5B-Instruct"
backend = "fsdp"
[axes]
rollout_batch = [8, 16, 40]
gpu_memory_utilization = [0.3, 0.5]
[profiles.bench]
steps = 2
warmup_steps = 1
"""


def _write_parquet(path: Path, n: int, tag: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"idx": list(range(n)), "prompt": [f"{tag} question {i}" for i in range(n)]}), path)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    _write_parquet(root / "train.parquet", 100, "train")
    _write_parquet(root / "test.parquet", 50, "test")
    return root


def _rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def test_bench_cells_read_subsets(tmp_path: Path, data_root: Path) -> None:
    from suite.run.prepare import ensure_inputs

    m = parse_matrix(BENCH)
    cells = _plan(m, tmp_path, data_root=str(data_root))
    assert len(cells) == 6 and all(c.status == "ok" for c in cells)
    for c in cells:
        cell_dir = tmp_path / "runs" / c.full_id
        train, val = cell_dir / "inputs" / "train.parquet", cell_dir / "inputs" / "val.parquet"
        rb = c.axes["rollout_batch"]
        assert c.inputs == {
            str(train): {"source": str(data_root / "train.parquet"), "rows": (3 + 1) * rb},
            str(val): {"source": str(data_root / "test.parquet"), "rows": VAL_SUBSET_ROWS},
        }
        a = _args(c)
        assert (a["data.train_files"], a["data.val_files"]) == (str(train), str(val))
        assert not train.exists()  # the plan writes nothing
    ensure_inputs(m, cells, data_root=str(data_root))
    src_train, src_val = _rows(data_root / "train.parquet"), _rows(data_root / "test.parquet")
    for c in cells:
        cell_dir = tmp_path / "runs" / c.full_id
        train, val = _rows(cell_dir / "inputs" / "train.parquet"), _rows(cell_dir / "inputs" / "val.parquet")
        want = min(4 * c.axes["rollout_batch"], 100)  # rb 40: 160 rows asked, the source holds 100
        assert len(train) == want and train == src_train[:want]
        assert len(val) == 16 and val == src_val[:16]
        assert not list((cell_dir / "inputs").glob("*.tmp"))
    assert {len(_rows(tmp_path / "runs" / c.full_id / "inputs" / "train.parquet")) for c in cells} == {32, 64, 100}


def test_train_profile_reads_the_full_files(tmp_path: Path, data_root: Path) -> None:
    m = parse_matrix(BENCH)
    cells = _plan(m, tmp_path, profile="train", data_root=str(data_root))
    for c in cells:
        assert c.inputs == {}
        a = _args(c)
        assert a["data.train_files"] == str(data_root / "train.parquet")
        assert a["data.val_files"] == str(data_root / "test.parquet")
    assert m.profile("train").subset_data is False and m.profile("bench").subset_data is True


def test_bench_that_validates_subsets_train_only(tmp_path: Path, data_root: Path) -> None:
    from suite.run.prepare import ensure_inputs

    m = parse_matrix(BENCH + "test_freq = 2\n")
    assert m.profile("bench").validates
    cells = _plan(m, tmp_path, data_root=str(data_root))
    for c in cells:
        cell_dir = tmp_path / "runs" / c.full_id
        assert list(c.inputs) == [str(cell_dir / "inputs" / "train.parquet")]
        a = _args(c)
        assert a["data.train_files"] == str(cell_dir / "inputs" / "train.parquet")
        assert a["data.val_files"] == str(data_root / "test.parquet")
    ensure_inputs(None, cells, data_root=str(data_root))
    for c in cells:
        inputs = tmp_path / "runs" / c.full_id / "inputs"
        assert sorted(p.name for p in inputs.iterdir()) == ["train.parquet"]


def test_subset_profile_switch_off(tmp_path: Path, data_root: Path) -> None:
    cells = _plan(parse_matrix(BENCH + "subset_data = false\n"), tmp_path, data_root=str(data_root))
    assert all(c.inputs == {} for c in cells)
    assert _args(cells[0])["data.train_files"] == str(data_root / "train.parquet")


def test_invalid_cells_get_no_subset(tmp_path: Path, data_root: Path) -> None:
    from suite.run.prepare import ensure_inputs

    m = parse_matrix(
        BENCH.replace("rollout_batch = [8, 16, 40]", "rollout_batch = [8]\nppo_micro_batch_size_per_gpu = [4, 7]")
    )
    cells = _plan(m, tmp_path, data_root=str(data_root))
    # [axes] order: the micro batch comes before gpu_memory_utilization
    assert [(c.axes["ppo_micro_batch_size_per_gpu"], c.status) for c in cells] == [
        (4, "ok"),
        (4, "ok"),
        (7, "invalid"),
        (7, "invalid"),
    ]
    ensure_inputs(None, cells, data_root=str(data_root))
    made = [(tmp_path / "runs" / c.full_id / "inputs" / "train.parquet").exists() for c in cells]
    assert made == [True, True, False, False]


def test_missing_source_names_train_files(tmp_path: Path) -> None:
    from suite.run.prepare import ensure_inputs

    empty = tmp_path / "nodata"
    cells = _plan(parse_matrix(BENCH), tmp_path, data_root=str(empty))
    with pytest.raises(InputError) as exc:
        ensure_inputs(None, cells, data_root=str(empty))
    assert exc.value.field == "data.train_files"
    assert str(empty / "train.parquet") in str(exc.value)


# ---- 6. render -----------------------------------------------------------------------------------------------


def test_plan_table_for_h200_7b(tmp_path: Path) -> None:
    cells = annotate_cells(_plan(load_matrix(H200_7B), tmp_path))
    text = table(cells)
    lines = text.splitlines()
    assert lines[0] == (f"h200-1gpu-7b: synthetic:qwen2.5-7b on 1x h200, fsdp, profile bench, reference {H200_7B_REF}")
    head = lines[1].split()
    assert head[:10] == ["id", "lora", "offload", "tp", "rb", "gmu", "mnbt", "eager", "mb", "gc"]
    # "pred GiB/140", "vs ref", "host GiB/125" are two words each
    assert " ".join(head[10:]) == "pred GiB/140 vs ref host GiB/125 status reason"
    rows = lines[3:-1]
    assert len(rows) == 60
    ref_rows = [r for r in rows if "(ref)" in r]
    assert len(ref_rows) == 1 and ref_rows[0].startswith(f"{H200_7B_REF} (ref) ")
    ref_cols = ref_rows[0].split()
    assert "x1.00" in ref_cols and ref_cols[-1] == "ok"
    ref = next(c for c in cells if c.id == H200_7B_REF)
    shown = [f"{v:.1f}".removesuffix(".0") for v in (ref.predicted_memory_gb, ref.predicted_host_memory_gb)]
    assert all(v in ref_cols for v in shown), (shown, ref_cols)
    # every other row carries its own predicted-memory ratio to the reference
    for r, c in zip(rows, cells, strict=True):
        assert f"x{c.predicted_memory_gb / ref.predicted_memory_gb:.2f}" in r.split(), r
    assert lines[-1] == "40 ok / 60 cells"


def test_plan_table_without_reference_has_no_ratio(tmp_path: Path) -> None:
    text = table(annotate_cells(_plan(parse_matrix(HEAD + "[axes]\nlora_rank = [0, 8]\n"), tmp_path)))
    assert "(ref)" not in text and "vs ref" not in text and "x1.00" not in text
    assert "host GiB/" in text.splitlines()[1]


def test_cli_plan_predict_memory_output(capsys: pytest.CaptureFixture) -> None:
    assert main(["plan", str(H200_7B), "--predict-memory", "--no-verl-check"]) == 0
    out = capsys.readouterr().out
    assert f"{H200_7B_REF} (ref)" in out and "host GiB/125" in out and out.strip().endswith("40 ok / 60 cells")
