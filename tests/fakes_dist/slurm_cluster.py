"""A real single-node Slurm for tests: munged + slurmctld + slurmd from Debian's `slurm-wlm`, with a minimal
slurm.conf in a temp dir, private ports and sockets, and no accounting (so `sacct` is off, as on many small
clusters). Clients find it through SLURM_CONF. Teardown stops the three daemons by the pids they wrote."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unavailable() -> str | None:
    """Why a local Slurm cannot be started here (None: it can be tried)."""
    missing = [d for d in (*DAEMONS, "sbatch") if not shutil.which(d)]
    if missing:
        return f"not installed: {', '.join(missing)} (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "slurmd must run as root to launch jobs"
    if not Path("/etc/munge/munge.key").exists():
        return "no /etc/munge/munge.key (the munge package creates it)"
    return None


@dataclass
class LocalSlurm:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gss-", dir="/tmp")))
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_conf(self) -> None:
        host = socket.gethostname().split(".")[0]
        r = self.root
        for d in ("state", "spool", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        cpus = os.cpu_count() or 1
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=gstest",
                    f"SlurmctldHost={host}(127.0.0.1)",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={r}/munge.sock",
                    "CredType=cred/munge",
                    f"StateSaveLocation={r}/state",
                    f"SlurmdSpoolDir={r}/spool",
                    f"SlurmctldPidFile={r}/slurmctld.pid",
                    f"SlurmdPidFile={r}/slurmd.pid",
                    f"SlurmctldPort={free_port()}",
                    f"SlurmdPort={free_port()}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "SchedulerType=sched/builtin",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    f"SlurmctldLogFile={r}/log/slurmctld.log",
                    f"SlurmdLogFile={r}/log/slurmd.log",
                    "MinJobAge=600",
                    "KillWait=10",
                    f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=4000 State=UNKNOWN",
                    f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES",
                    "",
                ]
            )
        )

    def start(self) -> LocalSlurm:
        self.write_conf()
        r = self.root
        key = r / "munge.key"
        shutil.copy("/etc/munge/munge.key", key)
        key.chmod(0o600)
        subprocess.run(
            [
                "munged",
                "--force",
                f"--key-file={key}",
                f"--socket={r}/munge.sock",
                f"--pid-file={r}/munged.pid",
                f"--log-file={r}/log/munged.log",
                f"--seed-file={r}/munge.seed",
            ],
            check=True,
            timeout=30,
        )
        self.pids["munged"] = self._pid("munged")
        subprocess.run(["slurmctld", "-i"], env=self.env(), check=True, timeout=30)
        self.pids["slurmctld"] = self._pid("slurmctld")
        subprocess.run(["slurmd"], env=self.env(), check=True, timeout=30)
        self.pids["slurmd"] = self._pid("slurmd")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env(), capture_output=True, text=True)
            if out.stdout.strip() in ("idle", "mix", "alloc"):
                return self
            time.sleep(0.5)
        raise RuntimeError(f"slurmd did not register: {(r / 'log' / 'slurmctld.log').read_text()[-2000:]}")

    def _pid(self, name: str, timeout_s: float = 20) -> int:
        f = self.root / f"{name}.pid"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if f.exists() and f.read_text().strip().isdigit():
                return int(f.read_text().strip())
            time.sleep(0.1)
        raise RuntimeError(f"{name} wrote no pid file")

    def stop(self) -> None:
        for name in reversed(DAEMONS):
            pid = self.pids.get(name)
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        time.sleep(1)
        shutil.rmtree(self.root, ignore_errors=True)
