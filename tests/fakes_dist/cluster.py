"""A real local Ray cluster on loopback for tests: a head (with the dashboard, which serves the Jobs API) and
one worker node, each started with `ray start`. Every process of it carries a unique environment token, so
teardown stops exactly those processes by pid (never `ray stop`, which would hit every Ray on the machine)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import psutil

TOKEN_ENV = "GRPO_SUITE_TEST_CLUSTER"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_with(env_key: str, value: str) -> list[psutil.Process]:
    me = os.getpid()
    found = []
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            if p.environ().get(env_key) == value:
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


class _Cluster(Protocol):
    def start(self) -> object: ...
    def stop(self) -> object: ...


C = TypeVar("C", bound=_Cluster)


@contextlib.contextmanager
def running(cluster: C) -> Iterator[C]:
    """A started cluster (LocalRayCluster, LocalSlurm) for the block; stopped after it, and also when starting it
    failed half-way (some of its processes may already be up)."""
    try:
        cluster.start()
    except Exception:
        cluster.stop()
        raise
    try:
        yield cluster
    finally:
        cluster.stop()


def stop_tagged(env_key: str, value: str, grace_s: float = 5.0) -> int:
    procs = processes_with(env_key, value)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    return len(procs)


@dataclass
class LocalRayCluster:
    num_cpus_head: int = 2
    num_cpus_worker: int = 1
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    temp_dir: str = ""
    gcs_port: int = 0
    dashboard_port: int = 0
    log: list[str] = field(default_factory=list)
    extra_dirs: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env[TOKEN_ENV] = self.token
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        # Ray 2.5x turns token auth on for a head when ~/.ray/auth_token exists (any local ray.init() on this
        # machine may have written one) but not for a worker joining by address: say it once for all.
        env["RAY_AUTH_MODE"] = "disabled"
        return env

    def _ray(self, *args: str) -> None:
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", *args]
        proc = subprocess.run(cmd, env=self._env(), capture_output=True, text=True, timeout=180)
        self.log.append(proc.stdout + proc.stderr)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")

    def start(self) -> LocalRayCluster:
        # Short temp root: Ray's unix socket paths must fit in 107 bytes.
        self.temp_dir = tempfile.mkdtemp(prefix="gsr-", dir="/tmp")
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats", f"--temp-dir={self.temp_dir}"]
        self._ray(
            "--head",
            f"--port={self.gcs_port}",
            f"--num-cpus={self.num_cpus_head}",
            "--num-gpus=0",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            *common,
        )
        # Its own temp root: two nodes sharing one would each stream the other's worker logs (duplicates).
        worker_tmp = tempfile.mkdtemp(prefix="gsw-", dir="/tmp")
        self.extra_dirs.append(worker_tmp)
        self._ray(
            f"--address={self.gcs_address}",
            f"--num-cpus={self.num_cpus_worker}",
            "--num-gpus=0",
            f"--dashboard-agent-listen-port={free_port()}",
            "--node-ip-address=127.0.0.1",
            "--disable-usage-stats",
            f"--temp-dir={worker_tmp}",
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Both nodes alive and the Jobs API answering (the dashboard comes up after `ray start` returns)."""
        from ray.job_submission import JobSubmissionClient

        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                client = JobSubmissionClient(self.address)
                client.list_jobs()
                probe = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        f"import ray; ray.init(address={self.gcs_address!r}); "
                        "print(sum(n['Alive'] for n in ray.nodes()))",
                    ],
                    env=self._env(),
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                if probe.stdout.strip().splitlines()[-1:] == ["2"]:
                    return
                last = RuntimeError(probe.stdout + probe.stderr)
            except Exception as exc:
                last = exc
            time.sleep(1)
        raise RuntimeError(f"local Ray cluster not ready after {timeout_s:.0f} s: {last}")

    def stop(self) -> int:
        n = stop_tagged(TOKEN_ENV, self.token)
        for d in [self.temp_dir, *self.extra_dirs]:
            if d:
                subprocess.run(["rm", "-rf", d], check=False)
        return n

    def job_processes(self, submission_id: str) -> list[psutil.Process]:
        """Live processes of the cluster running for one job's entrypoint (matched on its out dir)."""
        out = []
        for p in processes_with(TOKEN_ENV, self.token):
            try:
                if submission_id in " ".join(p.cmdline()):
                    out.append(p)
            except psutil.Error:
                continue
        return out


def cluster_log_dir(cluster: LocalRayCluster) -> Path:
    return Path(cluster.temp_dir) / "session_latest" / "logs"
