"""A cell's verl command as a child process tree we can always stop completely.

verl's `main_ppo` calls `ray.init()`, which starts raylet / GCS / workers, and vLLM starts engine
processes; some of them leave the child's process group or session. So the tree is recorded as it runs
(psutil, every `track_s`) and every process is also tagged with a unique environment variable
(`GRPO_SUITE_CELL_TOKEN`), which Ray workers and double-forked daemons inherit. Stopping ends exactly those
processes, by pid (checked against their start time, so a reused pid is never hit), never by name:
SIGINT to the group first (Python unwinds and `ray.shutdown()` runs), then SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import psutil

TOKEN_ENV = "GRPO_SUITE_CELL_TOKEN"


def new_token() -> str:
    return uuid.uuid4().hex


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def processes_with_token(token: str) -> list[psutil.Process]:
    """Processes whose environment carries `TOKEN_ENV=token` (only ours are readable anyway)."""
    needle = token
    found = []
    me = os.getpid()
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            if p.environ().get(TOKEN_ENV) == needle:
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


class ProcessTree:
    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        log: IO[bytes],
        *,
        cwd: str | Path | None = None,
        track_s: float = 0.2,
    ) -> None:
        self.token = env.get(TOKEN_ENV) or new_token()
        self._env = {**env, TOKEN_ENV: self.token}
        self._argv = list(argv)
        self._log = log
        self._cwd = cwd
        self._track_s = track_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_time: float | None = None
        self._seen: dict[int, psutil.Process] = {}
        self._lock = threading.Lock()
        self._stop_tracking = threading.Event()
        self._tracker: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> ProcessTree:
        self.start_time = time.time()
        self.proc = subprocess.Popen(
            self._argv,
            env=self._env,
            cwd=self._cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._remember([self.proc.pid])
        self._tracker = threading.Thread(target=self._track, name=f"track-{self.proc.pid}", daemon=True)
        self._tracker.start()
        return self

    def _remember(self, pids: Sequence[int]) -> None:
        for pid in pids:
            if pid in self._seen:
                continue
            with contextlib.suppress(psutil.Error):
                self._seen[pid] = psutil.Process(pid)  # keeps the create time: reused pids never match

    def _scan(self) -> None:
        assert self.proc is not None
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            children = []
        with self._lock:
            for c in children:
                self._seen.setdefault(c.pid, c)
            # descendants of recorded processes that were re-parented (daemonised Ray/vLLM helpers)
            for p in list(self._seen.values()):
                try:
                    for c in p.children(recursive=True):
                        self._seen.setdefault(c.pid, c)
                except psutil.Error:
                    continue

    def _track(self) -> None:
        while not self._stop_tracking.wait(self._track_s):
            self._scan()

    @property
    def recorded_pids(self) -> list[int]:
        with self._lock:
            return sorted(self._seen)

    def poll(self) -> int | None:
        assert self.proc is not None
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def survivors(self) -> list[psutil.Process]:
        """Every process of this cell still alive: recorded ones plus any carrying the cell's token."""
        self._scan()
        with self._lock:
            procs = {p.pid: p for p in self._seen.values() if _alive(p)}
        for p in processes_with_token(self.token):
            if _alive(p):
                procs.setdefault(p.pid, p)
        procs.pop(os.getpid(), None)
        return list(procs.values())

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)  # the child leads its own session, so its pgid is its pid

    @staticmethod
    def _signal_all(procs: Sequence[psutil.Process], sig: int) -> None:
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(sig)

    def _wait_gone(self, procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
        deadline = time.monotonic() + timeout
        left = [p for p in procs if _alive(p)]
        while left and time.monotonic() < deadline:
            if self.proc is not None:
                self.proc.poll()  # reap our direct child so it does not linger as a zombie
            time.sleep(0.05)
            left = [p for p in left if _alive(p)]
        return left

    def stop(self, grace_s: float = 10.0) -> list[int]:
        """End the whole tree. Returns the pids that had to be signalled. Safe to call more than once."""
        stopped: set[int] = set()
        root_alive = self.proc is not None and self.proc.poll() is None
        if root_alive:
            self._scan()
            self._signal_group(signal.SIGINT)
            assert self.proc is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace_s / 2)
        procs = self.survivors()
        stopped.update(p.pid for p in procs)
        if procs:
            self._signal_group(signal.SIGTERM)
            self._signal_all(procs, signal.SIGTERM)
            procs = self._wait_gone(procs, grace_s / 2)
        # Ray may still be spawning while we stop it: look again until nothing of this cell is left.
        for _ in range(5):
            procs = [p for p in {*procs, *self.survivors()} if _alive(p)]
            if not procs:
                break
            stopped.update(p.pid for p in procs)
            self._signal_group(signal.SIGKILL)
            self._signal_all(procs, signal.SIGKILL)
            self._wait_gone(procs, 2.0)
        self._stop_tracking.set()
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(1.0)
        return sorted(stopped)
