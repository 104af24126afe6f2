"""A CPU stand-in for `python -m verl.trainer.main_ppo` on a Ray cluster, for the distributed-runtime tests.

It behaves like verl where the runtimes care: it joins the cluster that `RAY_ADDRESS` names (as verl's
`ray.init()` does inside a Ray job or a Slurm allocation), passes `+ray_kwargs.ray_init.runtime_env` from its
Hydra-style overrides to `ray.init` (so a conflict with the job's runtime env fails as it would for verl),
writes the verl file-logger lines (`{"step": N, "data": {...}}`) from a Ray actor — verl's TaskRunner writes
them there too, so the path must reach the actor through the runtime env — and can sleep or hang.

Without `--ray` it runs in-process (for the Slurm tests on machines where Ray is not wanted).
Flags come before the overrides; unknown `key=value` arguments are accepted and ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time


def step_data(step: int, world: int) -> dict[str, float]:
    return {
        "perf/throughput": 500.0 + step,
        "perf/time_per_step": 0.1,
        "perf/total_num_tokens": 1024.0 * world,
        "response_length/mean": 64.0 + step,
        "timing_s/gen": 0.05,
        "timing_s/update_actor": 0.03,
        "timing_s/step": 0.1,
    }


def train(path: str | None, steps: int, step_s: float, world: int, hang: bool) -> dict[str, object]:
    """The part verl runs inside its TaskRunner actor: truncate the metrics file, log one line per step."""
    path = path or os.environ["VERL_FILE_LOGGER_PATH"]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", buffering=1) as fh:  # verl truncates the file when a run starts
        for step in range(1, steps + 1):
            time.sleep(step_s)
            fh.write(json.dumps({"step": step, "data": step_data(step, world)}) + "\n")
            print(f"step:{step} - perf/throughput:{500.0 + step}", flush=True)
        while hang:
            time.sleep(0.1)
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "logger_path": path,
        "probe": os.environ.get("GRPO_SUITE_PROBE"),
    }


def read_rows(files: list[str]) -> tuple[str, tuple[int | str, ...]]:
    """(node id, rows of each file or the error reading it), in a Ray worker."""
    import pyarrow.parquet as pq
    import ray

    out: list[int | str] = []
    for f in files:
        try:
            out.append(pq.read_metadata(f).num_rows)
        except OSError as exc:
            out.append(f"{type(exc).__name__}: {f}")
    return ray.get_runtime_context().get_node_id(), tuple(out)


def hydra_overrides(args: list[str]) -> dict[str, str]:
    return dict(a.lstrip("+").split("=", 1) for a in args if "=" in a)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--step-s", type=float, default=0.2)
    p.add_argument("--hang", action="store_true", help="keep running after the last step")
    p.add_argument("--ray", action="store_true", help="join the Ray cluster and train in an actor")
    p.add_argument("--exit", type=int, default=0)
    p.add_argument("--record-env", default=None, help="write the driver's environment as JSON here")
    p.add_argument("--read-data", action="store_true", help="every node's workers read data.train_files/val_files")
    args, rest = p.parse_known_args()
    o = hydra_overrides(rest)
    nnodes = int(o.get("trainer.nnodes", "1"))
    per_node = int(o.get("trainer.n_gpus_per_node", "1"))
    if args.record_env:
        with open(args.record_env, "w") as f:
            json.dump(dict(os.environ), f)
    print(
        f"fake verl: trainer.nnodes={nnodes} trainer.n_gpus_per_node={per_node} "
        f"RAY_ADDRESS={os.environ.get('RAY_ADDRESS')}",
        flush=True,
    )
    if not args.ray:
        train(None, args.steps, args.step_s, nnodes * per_node, args.hang)
        return args.exit

    import ray

    prefix = "ray_kwargs.ray_init.runtime_env.env_vars."
    env_vars = {k[len(prefix) :]: v for k, v in o.items() if k.startswith(prefix)}
    ray.init(runtime_env={"env_vars": env_vars} if env_vars else None)
    reader = ray.remote(num_cpus=0)(read_rows)
    alive = [n for n in ray.nodes() if n["Alive"]]
    print(f"fake verl: joined a Ray cluster of {len(alive)} node(s)", flush=True)
    if len(alive) < nnodes:
        # verl's ResourcePoolManager refuses the same way when the cluster is smaller than the plan.
        print(f"ValueError: Total available nodes {len(alive)} is less than total desired nodes {nnodes}", flush=True)
        return 1
    # One probe per node, as verl places one worker group per node: every node must see the runtime env.
    probe = ray.remote(num_cpus=0)(
        lambda: (socket.gethostname(), ray.get_runtime_context().get_node_id(), os.environ.get("VERL_FILE_LOGGER_PATH"))
    )
    seen = ray.get([probe.options(scheduling_strategy="SPREAD").remote() for _ in range(2 * len(alive))])
    print(
        f"fake verl: workers on {len({s[1] for s in seen})} node(s); logger path on workers: "
        f"{sorted({str(s[2]) for s in seen})}",
        flush=True,
    )
    if args.read_data:
        # verl's TaskRunner loads the dataset wherever Ray places it: every node must see the files the overrides name.
        files = [o[k] for k in ("data.train_files", "data.val_files") if k in o]
        rows = ray.get([reader.options(scheduling_strategy="SPREAD").remote(files) for _ in range(2 * len(alive))])
        print(
            f"fake verl: data rows on {len({r[0] for r in rows})} node(s): {sorted({r[1] for r in rows})}", flush=True
        )
    runner = ray.remote(num_cpus=0)(train)
    # Pin the trainer to the driver's node so the metrics file lands where the in-cell runner follows it.
    here = ray.get_runtime_context().get_node_id()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    out = ray.get(
        runner.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote(
            None, args.steps, args.step_s, nnodes * per_node, args.hang
        )
    )
    print(f"fake verl: trainer ran on {out['host']} pid {out['pid']}", flush=True)
    ray.shutdown()
    return args.exit


if __name__ == "__main__":
    sys.exit(main())
