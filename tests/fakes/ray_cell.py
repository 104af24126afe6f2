"""A cell that does what verl's main_ppo does to processes: a local `ray.init()` (GCS, raylet, workers) and
an actor, then it logs a step and hangs. It writes the pids of Ray's processes for the test to check."""

from __future__ import annotations

import json
import os
import sys
import time

import ray


@ray.remote(num_cpus=0)
class Worker:
    def pid(self) -> int:
        return os.getpid()


def main() -> int:
    ray.init(include_dashboard=False, num_cpus=1, log_to_driver=False)
    actor = Worker.remote()
    pids = {"driver": os.getpid(), "actor": ray.get(actor.pid.remote())}
    node = getattr(ray._private.worker, "_global_node", None)
    for name, infos in (getattr(node, "all_processes", None) or {}).items():
        for i, info in enumerate(infos):
            pids[f"{name}.{i}"] = info.process.pid
    with open(sys.argv[1], "w") as f:
        json.dump({"pids": pids, "temp_dir": node.get_temp_dir_path() if node else None}, f)
    with open(os.environ["VERL_FILE_LOGGER_PATH"], "wb", buffering=0) as fh:
        fh.write(
            json.dumps(
                {"step": 1, "data": {"perf/throughput": 1.0, "perf/time_per_step": 1.0, "response_length/mean": 1.0}}
            ).encode()
            + b"\n"
        )
        while True:
            time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
