"""The shipped 2-node example matrix plans and validates on CPU, multi-node cells use the world size
(nnodes x gpus_per_node) in the divisibility rules, and the distributed runtimes accept its cells as planned."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from suite.matrix.schema import Axes
from suite.plan import load_matrix, plan_matrix
from suite.plan.constraints import check_cell
from suite.run import ray_job as rj
from suite.run import slurm as sl
from suite.run.options import parse_options
from suite.run.runtime import topology_problem

MATRIX = Path(__file__).resolve().parents[1] / "suite" / "matrices" / "h100-2node-72b.toml"


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("verl")
    return plan_matrix(load_matrix(MATRIX), "bench", out_dir=tmp_path_factory.mktemp("runs"))


def test_two_node_matrix_plans_and_validates_with_verl(cells) -> None:
    assert len(cells) == 8
    ok = [c for c in cells if c.status == "ok"]
    assert ok == cells, [(c.id, c.reason) for c in cells if c.status != "ok"]
    for c in ok:
        assert c.setting("trainer.nnodes") == 2
        assert c.setting("trainer.n_gpus_per_node") == 8
        assert c.nnodes == 2 and c.gpus_per_node == 8 and c.n_gpus == 16
        assert c.full_id.startswith("qwen2.5-72b-instruct/h100x16/fsdp/lora")
        assert topology_problem(c) is None


def test_world_size_is_nodes_times_gpus_in_the_batch_rules() -> None:
    # 32 prompts x 5 = 160 responses: on one node of 8 GPUs (ulysses 2 -> DP 4) 40 per rank split into
    # micro batches of 8; on 2 nodes (DP 8) 20 per rank do not. The rule must see 16 GPUs.
    m = load_matrix(MATRIX)
    point = {"lora_rank": 32, "offload": "param+optimizer", "tp": 4, "rollout_batch": 32}
    one_node = m.model_copy(update={"matrix": m.matrix.model_copy(update={"nnodes": 1})})
    assert check_cell(one_node, point) is None
    reason = check_cell(m, point)
    assert reason is not None and reason.startswith("mini-vs-micro-batch") and "DP 8" in reason
    axes = Axes(lora_rank=[32], offload=["param+optimizer"], tp=[4], rollout_batch=[32, 128])
    planned = plan_matrix(m.model_copy(update={"axes": axes}), "bench", out_dir="/tmp/unused", validate_with_verl=False)
    assert [(c.axes["rollout_batch"], c.status) for c in planned] == [(32, "invalid"), (128, "ok")]


def test_planned_two_node_cell_renders_for_slurm_and_ray(
    cells, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cell = cells[0]
    cell_dir = Path(cell.env["VERL_FILE_LOGGER_PATH"]).parent  # where the planner pointed the cell
    script = sl.render_script(cell, cell_dir, parse_options(sl.SlurmOptions, {"partition": "gpu"}, "slurm"), 7200)
    assert "#SBATCH --nodes=2" in script and "#SBATCH --gpus-per-node=8" in script
    assert "wait-nodes --nodes 2" in script and "--num-gpus=8" in script
    (tmp_path / "job.sbatch").write_text(script)
    assert subprocess.run(["bash", "-n", str(tmp_path / "job.sbatch")]).returncode == 0
    r = rj.RayJobRuntime(address="http://127.0.0.1:9", dry_run=True).run_cell(cell, cell_dir, timeout_s=7200)
    out = capsys.readouterr().out
    assert r.status == "skipped" and "trainer.nnodes" not in out  # argv travels in cell.json, not the spec
    assert '"VERL_FILE_LOGGER_PATH": "/tmp/grpo-suite-ray/grpo-suite-qwen2-5-72b-instruct-h100x16-' in out
