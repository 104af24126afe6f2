"""Benchmark (not a test): plan and validate a 500-cell matrix against the installed verl.

    python3 benchmarks/plan_500.py

The matrix is the h100 seed recipe swept wider: lora_rank x offload x tp x rollout_batch = 5 x 4 x 5 x 5.
Prints the wall time of each phase. `total` (load + plan + verl check, in one fresh process) is the number
to compare with the 30 s target; `import` is Python importing verl/Hydra, paid once per process."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MATRIX = """
[matrix]
name = "bench-500"
gpu = "h100"
gpus_per_node = 8
model = "Qwen/Qwen2.5-32B-Instruct"
backend = "fsdp"

[axes]
lora_rank = [0, 8, 16, 32, 64]
offload = ["none", "param", "optimizer", "param+optimizer"]
tp = [1, 2, 4, 8, 3]
rollout_batch = [40, 80, 120, 160, 200]

[base]
prompt_length = 512
response_length = 1024
rollout_n = 5
gpu_memory_utilization = 0.3
lr = 3e-5
ppo_mini_batch_size = "rollout_batch"
ppo_micro_batch_size_per_gpu = 5
log_prob_micro_batch_size_per_gpu = 5
ulysses_sp = 2
layered_summon = true
max_model_len = 1536
max_num_batched_tokens = 1536
"""


def main() -> None:
    t0 = time.perf_counter()
    import verl.utils.config  # noqa: F401  (import cost measured on its own)
    from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: F401

    from suite.matrix import parse_matrix
    from suite.plan.planner import plan_matrix

    t1 = time.perf_counter()
    m = parse_matrix(MATRIX, source="plan_500")
    with tempfile.TemporaryDirectory() as out:
        cells = plan_matrix(m, out_dir=out, validate_with_verl=False)
        t2 = time.perf_counter()
        cells = plan_matrix(m, out_dir=out, validate_with_verl=True)
        t3 = time.perf_counter()
    ok = sum(c.status == "ok" for c in cells)
    reasons: dict[str, int] = {}
    for c in cells:
        if c.reason:
            rule = c.reason.split(":", 1)[0]
            reasons[rule] = reasons.get(rule, 0) + 1
    print(f"cells {len(cells)}: {ok} ok, invalid by rule {reasons}")
    print(f"import verl+hydra {t1 - t0:6.2f} s")
    print(f"plan (no verl)    {t2 - t1:6.2f} s")
    print(f"plan + verl check {t3 - t2:6.2f} s")
    print(f"total             {t3 - t0:6.2f} s")


if __name__ == "__main__":
    main()
