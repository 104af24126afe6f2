"""Multi-node planning: a rollout TP group must fit inside one node."""

from suite.matrix.load import parse_matrix
from suite.plan.planner import plan_matrix

MATRIX = """
[matrix]
name = "two-nodes"
gpu = "h100"
gpus_per_node = 4
nnodes = 2
model = "synthetic:qwen2.5-7b"
backend = "fsdp"
[axes]
lora_rank = [32]
offload = ["none"]
tp = [2, 4, 8]
rollout_batch = [64]
[base]
ppo_mini_batch_size = "rollout_batch"
ppo_micro_batch_size_per_gpu = 4
log_prob_micro_batch_size_per_gpu = 4
"""


def test_tp_larger_than_a_node_is_invalid_with_the_rule_named(tmp_path):
    cells = {
        c.axes["tp"]: c
        for c in plan_matrix(
            parse_matrix(MATRIX, source="two-nodes.toml"), "bench", out_dir=tmp_path, validate_with_verl=False
        )
    }
    assert cells[2].status == "ok" and cells[4].status == "ok"
    assert cells[8].status == "invalid"
    assert cells[8].reason.startswith("tp-within-node")
    assert "gpus_per_node 4" in cells[8].reason
