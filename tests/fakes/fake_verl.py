"""A stand-in for `python -m verl.trainer.main_ppo` in CPU tests: same file-logger format, same validation
dump format, same failure messages; behaviour chosen by flags. Hydra-style `key=value` arguments are
accepted (and `trainer.validation_data_dir=` honoured) so planned argv can be reused as is."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

OOM_MESSAGES = {
    "cuda": "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total "
    "capacity of 79.19 GiB of which 1.06 GiB is free.",
    "kv": "(WorkerDict pid=4242) ValueError: No available memory for the cache blocks. Try increasing "
    "`gpu_memory_utilization` when initializing the engine.",
    "kv2": "ValueError: To serve at least one request with the models's max seq len (40960), (5.62 GiB KV "
    "cache is needed, which is larger than the available KV cache memory (4.50 GiB).",
    "ray": "ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on memory.",
}


def log_line(fh, step: int, data: dict) -> None:
    fh.write(json.dumps({"step": step, "data": data}).encode() + b"\n")


def step_data(step: int, rng_len: float) -> dict:
    return {
        "perf/throughput": 1000.0 + 10 * step,
        "perf/time_per_step": 0.05,
        "perf/total_num_tokens": 4096,
        "response_length/mean": rng_len,
        "timing_s/gen": 0.03,
        "timing_s/update_actor": 0.01,
        "timing_s/step": 0.05,
        "actor/perf/max_memory_allocated_gb": 3.5 + step * 0.1,
        "actor/perf/max_memory_reserved_gb": 4.0 + step * 0.1,
        "perf/mfu/actor": 0.01,
        "actor/pg_loss": 0.0,
        "training/global_step": step,
    }


def dump_validation(directory: str, step: int, correct: int, total: int) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{step}.jsonl"), "w") as f:
        for i in range(total):
            ok = i < correct
            out = f"so the answer is #### {i}" if ok else f"I think it is {i}"
            f.write(
                json.dumps(
                    {
                        "input": f"q{i}",
                        "output": out,
                        "gts": str(i),
                        "score": 1.0 if ok else 0.0,
                        "step": step,
                        "reward": 1.0 if ok else 0.0,
                    }
                )
                + "\n"
            )


def spawn_grandchild(pidfile: str) -> None:
    # Double fork + setsid: the sleeper leaves our process group and session, as Ray daemons do.
    code = (
        "import os,sys,time\n"
        "if os.fork(): sys.exit(0)\n"
        "os.setsid()\n"
        f"open({pidfile!r},'w').write(str(os.getpid()))\n"
        "time.sleep(600)\n"
    )
    subprocess.Popen([sys.executable, "-c", code], start_new_session=True).wait()
    for _ in range(100):
        if os.path.exists(pidfile) and Path(pidfile).read_text().strip():
            return
        time.sleep(0.02)


# verl names it after the Ray job id, which is 01000000 in every fresh Ray cluster, so in every cell
COLOCATE_SOCKET = "/tmp/rl-colocate-zmq-01000000-replica-0-rank-0.sock"


def colocate_bind():
    """Like verl's weight sender: remove whatever is at the path, bind, listen."""
    import socket

    with contextlib.suppress(OSError):
        os.remove(COLOCATE_SOCKET)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(COLOCATE_SOCKET)
    server.listen(4)
    server.settimeout(2.0)
    return server


def colocate_roundtrip(server, token: str) -> None:
    """Like verl's receiver: connect to the path and expect this process's own sender on the other end."""
    import socket

    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(COLOCATE_SOCKET)
    client.sendall(token.encode())
    client.close()
    try:
        conn, _ = server.accept()
    except TimeoutError:
        raise RuntimeError("TypeError: 'str' object is not callable (weight message went to another job)") from None
    got = conn.recv(256).decode()
    conn.close()
    if got != token:
        raise RuntimeError(f"TypeError: 'str' object is not callable (got {got!r})")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--step-s", type=float, default=0.05)
    p.add_argument("--startup-s", type=float, default=0.0)
    p.add_argument("--val", action="store_true", help="validate before and after training")
    p.add_argument("--exit", type=int, default=0)
    p.add_argument("--oom", choices=sorted(OOM_MESSAGES))
    p.add_argument("--crash", default=None, help="raise this error message after the steps")
    p.add_argument("--hang", action="store_true")
    p.add_argument("--ignore-sigint", action="store_true")
    p.add_argument("--grandchild", default=None, help="spawn a detached grandchild, write its pid here")
    p.add_argument("--record-env", default=None, help="write the environment as JSON here")
    p.add_argument(
        "--colocate-socket",
        action="store_true",
        help="bind verl 0.9.1's weight-transfer socket path the way it does, and check that a "
        "message sent to that path reaches this process",
    )
    args, overrides = p.parse_known_args()
    hydra = dict(o.lstrip("+").split("=", 1) for o in overrides if "=" in o)
    val_dir = hydra.get("trainer.validation_data_dir")

    if args.ignore_sigint:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if args.record_env:
        with open(args.record_env, "w") as f:
            json.dump(dict(os.environ), f)
    print("ray init kwargs: {'num_cpus': None, 'runtime_env': {...}}", flush=True)
    if args.grandchild:
        spawn_grandchild(args.grandchild)
    server = colocate_bind() if args.colocate_socket else None
    time.sleep(args.startup_s)
    path = os.environ["VERL_FILE_LOGGER_PATH"]
    print(f"Creating file logger at {os.path.abspath(path)}", flush=True)
    with open(path, "wb", buffering=0) as fh:
        if args.val:
            log_line(fh, 0, {"val-core/openai/gsm8k/acc/mean@1": 0.25})
            if val_dir:
                dump_validation(val_dir, 0, 2, 8)
        for step in range(1, args.steps + 1):
            time.sleep(args.step_s)
            if server is not None:
                colocate_roundtrip(server, f"{os.getpid()}-{step}")
            data = step_data(step, 100.0 + step)
            if args.val and step == args.steps:
                data["val-core/openai/gsm8k/acc/mean@1"] = 0.5
                if val_dir:
                    dump_validation(val_dir, step, 4, 8)
            log_line(fh, step, data)
            print(f"step:{step} - perf/throughput:{data['perf/throughput']}", flush=True)
        while args.hang:
            time.sleep(0.1)
    if args.oom:
        print("Traceback (most recent call last):", flush=True)
        print('  File "verl/workers/fsdp_workers.py", line 123, in update_actor', flush=True)
        print(OOM_MESSAGES[args.oom], flush=True)
        print("[repeated 3x across cluster]", flush=True)
        return 1
    if args.crash:
        raise RuntimeError(args.crash)
    return args.exit


if __name__ == "__main__":
    sys.exit(main())
