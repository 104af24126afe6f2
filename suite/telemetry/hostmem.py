"""Host memory beside NVML: the peak resident memory of a cell's process tree and of the whole host.

Why: with LoRA served as an adapter verl 0.9.1 puts vLLM to sleep at level 1, so the base weights move to host
memory; offloaded params and optimizer states live there too, and Ray's memory monitor kills workers at 95 % of
host memory. A cell can therefore fail for host RAM while its GPUs look fine: count host memory like GPU memory.

Two numbers per sample (psutil):
- tree: RSS summed over the root process and all its descendants. Shared pages (CUDA libraries, Ray's
  object store, /dev/shm) count once per process mapping them, so this can exceed what the tree really holds;
  it is the number Linux itself reports per process, and cheap (PSS would need /proc/<pid>/smaps per read).
- system: total - available (`psutil.virtual_memory`), what the OOM killer and Ray's monitor look at; it
  includes other tenants of the host and the page cache that cannot be dropped.

At the tree's peak the sampler also keeps RSS by process role (`process_label`: Ray's `ray::Class` titles,
vLLM's `VLLM::...`, a Python entry point), the numbers the host model's per-process constants are fitted to.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import psutil

from suite.telemetry.nvml import DEFAULT_HZ, GIB
from suite.telemetry.sampler import PeriodicSampler, WindowMax

# Listing a tree means reading /proc/<pid>/stat of EVERY process on the host (psutil's ppid map): ~20 us each,
# so on a GPU host with a thousand processes a listing at 20 Hz would cost ~40 % of a core. The members' RSS is
# read at the full rate; the member list is refreshed this often (Ray/vLLM workers live for the whole run).
DEFAULT_LIST_S = 1.0


@dataclass(frozen=True)
class HostMemorySamples:
    peak_tree_gib: float | None  # max RSS sum over the tree; None: the tree does not hold the run (see host.py)
    peak_system_gib: float  # max of total - available
    total_gib: float
    samples: int
    duration_s: float
    errors: int = 0  # reads that failed for a reason other than a process having ended
    cpu_s: float = 0.0  # CPU time of the sampler thread: its cost to the host
    # RSS GiB by process role at the tree's peak sample, and how many processes each role had then
    peak_processes_gib: dict[str, float] = field(default_factory=dict)
    peak_process_counts: dict[str, int] = field(default_factory=dict)
    # per window of `timeline_interval_s` from `started_at` (time.monotonic()): the max [tree RSS, system used] GiB
    timeline_gib: list[list[float | None]] = field(default_factory=list)
    timeline_interval_s: float = 1.0
    started_at: float | None = None

    @property
    def rate_hz(self) -> float | None:
        return self.samples / self.duration_s if self.duration_s > 0 and self.samples else None


def process_label(cmdline: list[str], name: str) -> str:
    """A process's role from its command line: Ray workers and vLLM processes retitle themselves
    (`ray::WorkerDict.actor_rollout_compute_log_prob` -> `ray::WorkerDict`, `VLLM::EngineCore`); a Python process
    by its `-m` module or script; anything else by its name."""
    head = cmdline[0] if cmdline else ""
    if head.startswith(("ray::", "VLLM::")):
        return head.split()[0].split(".")[0]
    if "python" in os.path.basename(head):
        # the interpreter's own options end at -c, -m or the script: later arguments are the program's
        args = iter(cmdline[1:])
        for a in args:
            if a == "-c":
                return "python -c"
            if a == "-m":
                return f"python -m {next(args, '')}".rstrip()
            if not a.startswith("-"):
                return f"python {os.path.basename(a)}"
        return "python"
    return os.path.basename(head.split()[0]) if head else name


def _label_of(p: psutil.Process) -> str:
    try:
        return process_label(p.cmdline(), p.name())
    except psutil.Error:
        return "?"


def tree_rss(members: list[psutil.Process]) -> tuple[int, list[psutil.Process], int, list[int]]:
    """(RSS bytes summed over the members still alive, those members, errors, each alive member's RSS). A member
    that ended between the listing and the read is dropped silently: processes come and go all the time in a
    Ray cluster."""
    total, alive, errors, each = 0, [], 0, []
    for p in members:
        try:
            rss = p.memory_info().rss
        except psutil.NoSuchProcess:  # ZombieProcess too: an ended process holds no memory
            continue
        except psutil.Error:  # AccessDenied: a descendant that changed user; it may still be running
            errors += 1
            rss = 0
        total += rss
        alive.append(p)
        each.append(rss)
    return total, alive, errors, each


class HostMemorySampler(PeriodicSampler[HostMemorySamples]):
    """Background thread sampling the host's used memory and the RSS of `pid`'s process tree at `hz`,
    keeping the peaks. Same lifecycle as `nvml.MemorySampler`: start / stop (idempotent, one final sample)
    or a context manager. Disabled (stop returns None) when `pid` is None or that process is already gone."""

    thread_name = "hostmem-sampler"

    def __init__(
        self,
        pid: int | None,
        hz: float = DEFAULT_HZ,
        *,
        list_s: float = DEFAULT_LIST_S,
        timeline_interval_s: float = 1.0,
    ) -> None:
        super().__init__(hz)
        self._timeline = WindowMax(2, timeline_interval_s)  # [tree RSS, system used]
        self.pid = pid
        self._list_s = list_s
        self._root: psutil.Process | None = None
        self._members: list[psutil.Process] = []
        self._labels: dict[int, str] = {}  # pid -> role, refreshed with each listing (Ray workers retitle)
        self._peak_by_label: dict[str, int] = {}
        self._peak_counts: dict[str, int] = {}
        self._listed_at = -float("inf")
        self._peak_tree = 0
        self._peak_system = 0
        self._last_system = 0  # the latest sample's total - available: what a memory guard acts on
        self._total = 0
        self._samples = 0
        self._errors = 0
        self._lock = threading.Lock()  # the final sample (caller's thread) must not race a late loop round

    @property
    def enabled(self) -> bool:
        return self.pid is not None

    def _begin(self) -> bool:
        if self.pid is None:
            return False
        try:
            # psutil.Process keeps the create time: a pid reused after the root ended never matches
            self._root = psutil.Process(self.pid)
            if self._root.status() == psutil.STATUS_ZOMBIE:
                raise psutil.ZombieProcess(self.pid)
            self._total = psutil.virtual_memory().total
            self._members = [self._root]
            self._timeline.start()
        except psutil.Error:
            self.pid, self._root = None, None  # nothing to measure: record nothing rather than a host-only peak
            return False
        return True

    def _list(self) -> None:
        assert self._root is not None
        try:
            children = self._root.children(recursive=True)
        except psutil.Error:  # the root ended: its descendants still read (until they end) from the last list
            return
        known = {p.pid for p in self._members}
        # the known objects stay (their create time guards against reused pids); the new ones join
        self._members += [c for c in children if c.pid not in known]
        self._labels = {p.pid: _label_of(p) for p in self._members}

    def sample_once(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._listed_at >= self._list_s:
                self._list()
                self._listed_at = now
            rss, self._members, errors, each = tree_rss(self._members)
            self._errors += errors
            if rss > self._peak_tree:
                by: Counter[str] = Counter()
                counts: Counter[str] = Counter()
                for p, b in zip(self._members, each, strict=True):
                    label = self._labels.get(p.pid, "?")
                    by[label] += b
                    counts[label] += 1
                self._peak_by_label, self._peak_counts = dict(by), dict(counts)
            self._peak_tree = max(self._peak_tree, rss)
            self._timeline.add(0, rss / GIB, now)
            try:
                vm = psutil.virtual_memory()
                self._last_system = vm.total - vm.available
                self._peak_system = max(self._peak_system, self._last_system)
                self._timeline.add(1, self._last_system / GIB, now)
            except (psutil.Error, OSError):
                self._errors += 1
            self._samples += 1

    def latest_system(self) -> tuple[float, float] | None:
        """(used, total) GiB of the host at the latest sample; None before the first one."""
        with self._lock:
            if not self._samples or not self._total:
                return None
            return self._last_system / GIB, self._total / GIB

    def _summary(self, duration_s: float) -> HostMemorySamples:
        return HostMemorySamples(
            peak_tree_gib=round(self._peak_tree / GIB, 3),
            peak_system_gib=round(self._peak_system / GIB, 3),
            total_gib=round(self._total / GIB, 3),
            samples=self._samples,
            duration_s=duration_s,
            errors=self._errors,
            cpu_s=self._cpu_s,
            peak_processes_gib={k: round(v / GIB, 3) for k, v in sorted(self._peak_by_label.items())},
            peak_process_counts=dict(sorted(self._peak_counts.items())),
            timeline_gib=self._timeline.rows(),
            timeline_interval_s=self._timeline.interval_s,
            started_at=self._timeline.started_at,
        )


def over_guard(used_gib: float, total_gib: float, fraction: float) -> bool:
    """Whether the host's used memory has reached `fraction` of its total (0: no guard)."""
    return fraction > 0 and total_gib > 0 and used_gib >= fraction * total_gib
