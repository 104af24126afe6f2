"""The GPU run scripts (tools/gpu): they run only on a GPU host held for a limited time, where a typo costs that
time, so their syntax and every (plan, cell) they name are checked here against what `plans.sh` plans."""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

import pytest

from suite.matrix import load_matrix
from suite.plan.planner import plan_matrix

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "tools" / "gpu"
SCRIPTS = sorted(GPU.glob("*.sh"))
SESSIONS = sorted(GPU.glob("session*.sh"))
# `plan <matrix> <profile> <runs folder> <plan name>` lines of plans.sh
PLAN_LINE = re.compile(r"^plan (\S+) (\w+) (\S+) (\S+)$", re.M)
# `$P/<plan>.json "$runs/<folder>" <cell>` (the cell possibly as "${Cn:-<default>}")
CELL_REF = re.compile(r'\$P/([\w.-]+)\.json\s+"\$runs/([\w.-]+)"\s+"?(?:\$\{C\d:-)?([^"}\s]+)')


# session-heavy.sh: `$P/${HEAVY_PLAN:-<plan>}.json` and `${HEAVY_CELLS:-<cell> <cell>...}`
HEAVY_PLAN = re.compile(r"\$\{HEAVY_PLAN:-([\w.-]+)\}")
HEAVY_CELLS = re.compile(r"\$\{HEAVY_CELLS:-([^}]+)\}")
# plans.sh's loop over the heavy matrices: `plan $m bench $m ${m#*-1gpu-}-${m%%-*}` -> plan 7b-h200 etc.
HEAVY_LOOP = re.compile(r"^for m in ([\w .-]+); do plan \$m (bench|train) \$m", re.M)


def plans() -> dict[str, tuple[str, str, str]]:
    text = (GPU / "plans.sh").read_text()
    out = {name: (matrix, profile, folder) for matrix, profile, folder, name in PLAN_LINE.findall(text)}
    for names, profile in HEAVY_LOOP.findall(text):
        for m in names.split():
            out[f"{m.split('-1gpu-', 1)[1]}-{m.split('-', 1)[0]}"] = (m, profile, m)
    return out


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_scripts_parse(script: Path) -> None:
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_plans_sh_plans_shipped_matrices() -> None:
    p = plans()
    assert {"graphs", "bench-1.5b", "2gpu", "oom", "train"} <= set(p)
    for matrix, _profile, _folder in p.values():
        assert (ROOT / "suite" / "matrices" / f"{matrix}.toml").is_file(), matrix


@pytest.mark.parametrize("script", SESSIONS, ids=[p.name for p in SESSIONS])
def test_every_cell_a_session_names_is_planned_and_ok(script: Path, tmp_path: Path) -> None:
    text = script.read_text()
    refs = CELL_REF.findall(text)
    if (plan := HEAVY_PLAN.search(text)) and (cells := HEAVY_CELLS.search(text)):
        folder = plans()[plan.group(1)][2]
        refs += [(plan.group(1), folder, cell) for cell in cells.group(1).split()]
    assert refs, f"{script.name} names no cell"
    p = plans()
    for plan_name, folder, pattern in refs:
        assert plan_name in p, f"{script.name}: no plan {plan_name!r} in plans.sh"
        matrix, profile, planned_folder = p[plan_name]
        assert folder == planned_folder, f"{script.name}: {plan_name} cells go to $runs/{planned_folder}"
        cells = plan_matrix(
            load_matrix(ROOT / "suite" / "matrices" / f"{matrix}.toml"),
            profile,
            out_dir=tmp_path,
            validate_with_verl=False,
        )
        hits = [c for c in cells if fnmatch.fnmatchcase(c.id, pattern)]
        assert hits, f"{script.name}: {pattern!r} matches no cell of {matrix} ({', '.join(c.id for c in cells)})"
        assert all(c.status == "ok" for c in hits), [(c.id, c.reason) for c in hits]


def test_host_megatron_pins_equal_the_image_locks() -> None:
    """The host procedure (tools/gpu/megatron-parts.sh) and the images install the same Megatron stack: the
    one that ran. A bump in one place only would benchmark two different stacks under one name."""
    from suite.containers.lock import normalize, pinned_versions
    from suite.containers.settings import generations, load_settings

    text = (ROOT / "tools" / "gpu" / "megatron-parts.sh").read_text()
    te = re.search(r"TE=\$\{TE_VERSION:-([0-9.]+)\}", text)
    assert te, "megatron-parts.sh no longer sets TE"
    host = {normalize(n): v for n, v in re.findall(r"([A-Za-z0-9_.-]+)==([0-9][0-9A-Za-z.]*)", text)}
    host.update({k: te.group(1) for k in ("transformer-engine", "transformer-engine-cu13", "transformer-engine-torch")})
    shared = (
        "megatron-core",
        "megatron-bridge",
        "nvidia-modelopt",
        "pulp",
        "transformer-engine",
        "transformer-engine-cu13",
        "transformer-engine-torch",
        "onnx",
        "onnxscript",
        "nvdlfw-inspect",
    )
    for gen in generations():
        pins = pinned_versions(load_settings(gen))
        assert {p: pins[p] for p in shared} == {p: host[p] for p in shared}, gen


def test_session_heavy_takes_a_cell_of_another_plan(tmp_path: Path) -> None:
    """HEAVY_CELLS="ID PLAN:ID": a cell of HEAVY_PLAN, then a cell of another plan (a candidate matrix read against
    HEAVY_PLAN's reference); the two lines of session-heavy.sh that split an entry, run on both forms."""
    text = (GPU / "session-heavy.sh").read_text()
    split = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(("cell=${cells[$i]", '[ "$cell" !='))]
    assert len(split) == 2
    script = "\n".join(
        [
            "P=/plans; HEAVY_PLAN=7b-fa-h100",
            'cells=(lora32-a 7b-fa-kv-h100:lora32-off_none-tp1-rb45-gmu0.5-x "")',
            "for i in 0 1; do",
            *split,
            'echo "$plan $cell"; done',
        ]
    )
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert r.stdout.splitlines() == [
        "/plans/7b-fa-h100.json lora32-a",
        "/plans/7b-fa-kv-h100.json lora32-off_none-tp1-rb45-gmu0.5-x",
    ]


# tools/gpu/README.md's launch lines: `HEAVY_PLAN=<plan> HEAVY_CELLS="<cell> ..."` (a cell may be `PLAN:ID`; ids
# written with `...` are abbreviations, not commands)
README_RUN = re.compile(r'HEAVY_PLAN=([\w.-]+)\s+HEAVY_CELLS="([^"]+)"')


def test_every_launch_line_of_the_gpu_readme_names_planned_cells(tmp_path: Path) -> None:
    p = plans()
    runs = README_RUN.findall((GPU / "README.md").read_text())
    checked = 0
    planned: dict[str, dict[str, str]] = {}
    for plan_name, cells in runs:
        for entry in cells.split():
            if "..." in entry:
                continue
            where, _, cell_id = entry.rpartition(":")
            where = where or plan_name
            assert where in p, f"tools/gpu/README.md: no plan {where!r} in plans.sh"
            if where not in planned:
                matrix, profile, _ = p[where]
                m = load_matrix(ROOT / "suite" / "matrices" / f"{matrix}.toml")
                out = tmp_path / where
                planned[where] = {
                    c.id: c.status for c in plan_matrix(m, profile, out_dir=out, validate_with_verl=False)
                }
            assert planned[where].get(cell_id) == "ok", f"{where}: {cell_id} is {planned[where].get(cell_id)}"
            checked += 1
    assert checked >= 8  # the README's runs, the registered copies' included
