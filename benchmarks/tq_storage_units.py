"""What TransferQueue's storage units cost a verl 0.9.1 cell: start-up, host memory and a step's data traffic, by
`transfer_queue.backend.SimpleStorage.num_data_storage_units` (verl's default 8; the suite's 2 per node).

verl's TaskRunnerV1 calls `tq.init` before its trainer exists (main_ppo.py), which starts the controller and one
Ray actor per storage unit and waits for them. Each unit is a Python process with its own RSS (GPU hosts: 8
`ray::SimpleStorageUnit` at 5.64 GiB together in every committed 7B/14B result's `host_peak_processes_gb`). This
starts a local Ray, times `tq.init` with each count, sums the RSS of the `ray::` processes it started, then
moves one GRPO step's worth of samples through the queue the way the v1 trainer does (put the rollout, get it
whole, put the log-probs, get them back, clear), a few times, and reports the median.

    python benchmarks/tq_storage_units.py                  # 8 and 2 units, the seed's shape (45 x 5 x 1536)
    python benchmarks/tq_storage_units.py --units 8 2 1 --repeat 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def one_count(units: int, samples: int, prompt: int, response: int, repeat: int) -> dict[str, float]:
    """Run in a fresh interpreter per count: Ray and TransferQueue keep state per process."""
    import glob

    import psutil
    import ray
    import torch
    import transfer_queue as tq
    import verl
    from omegaconf import OmegaConf
    from tensordict import TensorDict

    cfg_file = glob.glob(str(Path(verl.__file__).parent / "trainer/config/transfer_queue/*.yaml"))[0]
    cfg = OmegaConf.load(cfg_file)
    cfg.enable = True
    cfg.backend.SimpleStorage.num_data_storage_units = units
    # enough logical CPUs for every actor whatever this machine has: the units are idle processes, not load
    ray.init(include_dashboard=False, num_cpus=32, log_to_driver=False)
    t0 = time.perf_counter()
    tq.init(cfg)
    init_s = time.perf_counter() - t0
    time.sleep(1.0)
    rss = sum(
        p.info["memory_info"].rss
        for p in psutil.process_iter(["cmdline", "memory_info"])
        if any(role in " ".join(p.info["cmdline"] or []) for role in ("SimpleStorageUnit", "TransferQueueController"))
    )
    seq = prompt + response
    step_s = []
    for r in range(repeat):
        keys = [f"s{r}-{i}" for i in range(samples)]
        rollout = TensorDict(
            {
                "input_ids": torch.randint(0, 150000, (samples, seq)),
                "attention_mask": torch.ones(samples, seq, dtype=torch.int64),
                "position_ids": torch.arange(seq).repeat(samples, 1),
                "responses": torch.randint(0, 150000, (samples, response)),
                "response_mask": torch.ones(samples, response, dtype=torch.int64),
                "rollout_log_probs": torch.randn(samples, response),
            },
            batch_size=[samples],
        )
        logprobs = TensorDict(
            {"old_log_probs": torch.randn(samples, response), "ref_log_prob": torch.randn(samples, response)},
            batch_size=[samples],
        )
        t = time.perf_counter()
        tq.kv_batch_put(keys=keys, partition_id="train", fields=rollout)
        got = tq.kv_batch_get(keys=keys, partition_id="train")
        assert got["input_ids"].shape[0] == samples  # TransferQueue hands fields back as nested (jagged) tensors
        tq.kv_batch_put(keys=keys, partition_id="train", fields=logprobs)
        back = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["old_log_probs", "ref_log_prob"])
        assert torch.equal(back["old_log_probs"][samples - 1], logprobs["old_log_probs"][samples - 1])
        tq.kv_clear(keys=keys, partition_id="train")
        step_s.append(time.perf_counter() - t)
    tq.close()
    ray.shutdown()
    return {
        "units": units,
        "init_s": round(init_s, 2),
        "rss_gib": round(rss / 2**30, 2),
        "step_data_s": round(statistics.median(step_s), 3),
        "step_data_s_all": [round(x, 3) for x in step_s],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--units", type=int, nargs="+", default=[8, 2])
    p.add_argument("--samples", type=int, default=225, help="responses per step (45 prompts x 5)")
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--response", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child's count
    a = p.parse_args(argv)
    if a.one is not None:
        print(json.dumps(one_count(a.one, a.samples, a.prompt, a.response, a.repeat)))
        return 0
    rows = []
    for units in a.units:
        cmd = [sys.executable, __file__, "--one", str(units), "--samples", str(a.samples), "--prompt", str(a.prompt)]
        cmd += ["--response", str(a.response), "--repeat", str(a.repeat)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, check=False)
        subprocess.run(["ray", "stop", "--force"], capture_output=True, check=False)
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            return 1
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(
            f"units {r['units']}: tq.init {r['init_s']} s, controller + units RSS {r['rss_gib']} GiB, "
            f"one step's data {r['step_data_s']} s (median of {a.repeat})"
        )
    if a.json:
        Path(a.json).write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
