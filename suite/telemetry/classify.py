"""Failure classification from the real log text of a cell.

Only failed runs are classified (a run that exits 0 is ok even if vLLM logged a recoverable warning).
Out-of-memory wins over a generic crash: the matched line becomes the reason. A crash with a known cause
(`KNOWN_CRASHES`, e.g. two verl jobs on one host meeting at the same weight-transfer socket) keeps the status
`crash` but its reason says in plain words what happened, then quotes the error. Otherwise the reason is the
last meaningful error line: traceback frames, Ray/hydra boilerplate and blank lines are skipped, and Ray's
`(Actor pid=N)` prefixes (nested ones too) and vLLM's `ERROR MM-DD hh:mm:ss [file.py:N]` prefix are stripped.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# (class, pattern); case-insensitive. Sources: torch / CUDA, vLLM V0 + V1 KV-cache checks, Ray memory monitor.
OOM_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(p, re.IGNORECASE))
    for kind, p in (
        ("cuda", r"CUDA out of memory"),
        ("cuda", r"CUDA error: out of memory"),
        ("cuda", r"torch\.(cuda\.)?OutOfMemoryError"),
        ("kv-cache", r"No available memory for the cache blocks"),
        ("kv-cache", r"larger than the available KV cache memory"),
        ("kv-cache", r"maximum number of tokens that can be stored in KV cache"),
        ("kv-cache", r"not enough KV cache"),
        ("kv-cache", r"insufficient KV cache"),
        ("ray", r"ray\.exceptions\.OutOfMemoryError"),
        ("ray", r"Task was killed due to the node running low on memory"),
        ("ray", r"killed due to memory pressure \(OOM\)"),
        ("cuda", r"\bOutOfMemoryError\b"),
    )
)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_RAY_PREFIX = re.compile(r"^(?:\((?:[\w.:\-]+ )?pid=\d+(?:, ip=[\w.:\-]+)?\)\s*)+")
# vLLM's logger on error lines: `ERROR 11-28 05:26:51 [multiproc_executor.py:1004] TypeError: ...`. Only ERROR and
# CRITICAL are stripped: INFO/WARNING lines must keep their level so that they stay noise.
_VLLM_ERROR_PREFIX = re.compile(r"^(?:ERROR|CRITICAL) \d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \[[^\]]*\]\s*")
_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception|Exit|Interrupt|Failure)\b(?:\([^)]*\))?:?")
_NOISE = (
    re.compile(r"^Traceback \(most recent call last\)"),
    re.compile(r"^File \".*\", line \d+"),
    re.compile(r"^\^+$|^[~^\s]+$"),
    re.compile(r"^During handling of the above exception"),
    re.compile(r"^The above exception was the direct cause"),
    re.compile(r"^Set the environment variable HYDRA_FULL_ERROR"),
    re.compile(r"^\[repeated \d+x across cluster\]"),
    re.compile(r"^\*\*\* SIG\w+ received"),
    re.compile(r"^(?:INFO|DEBUG|WARNING|WARN)\b"),
    re.compile(r"^\d{4}-\d{2}-\d{2}[ T][\d:,.]+\s+(?:INFO|DEBUG|WARNING)\b"),
    re.compile(r"^\[\d{4}-\d{2}-\d{2} [\d:,.]+\]"),  # raylet / glog-style timestamps
)
MAX_REASON = 400


@dataclass(frozen=True)
class Failure:
    status: str  # "oom" | "crash"
    reason: str
    kind: str | None = None  # for oom: cuda | kv-cache | ray


@dataclass(frozen=True)
class KnownCrash:
    """A crash whose cause is known from its log: `error` on a line, `context` within `window` lines before it
    (the traceback that raised it)."""

    name: str
    error: re.Pattern[str]
    context: re.Pattern[str]
    explanation: str
    where: str
    window: int = 40


KNOWN_CRASHES: tuple[KnownCrash, ...] = (
    # verl 0.9.1 binds its colocated weight-transfer ZMQ socket at
    # /tmp/rl-colocate-zmq-{ray_job_id}-replica-{r}-rank-{k}.sock (vllm_rollout.py, utils.py `_get_zmq_handle`),
    # deleting any file already there. Every fresh Ray cluster's first job id is 01000000, so two cells on one
    # host with a shared /tmp meet at the same socket: the receiver unpacks the other job's message (a dict) as
    # a CUDA IPC handle `(func, args)` and `func(*args)` calls a string. Seen on 4x H100, 2026-11-28.
    KnownCrash(
        name="verl-zmq-socket-collision",
        error=re.compile(r"'str' object is not callable"),
        context=re.compile(r"\brebuild_ipc\b|bucketed_weight_transfer"),
        explanation="verl weight-transfer socket collision: another verl job on this host used "
        "/tmp/rl-colocate-zmq-<ray job id>-replica-*-rank-*.sock; run cells with a private /tmp "
        "(grpo-suite run does this by default)",
        where="rebuild_ipc",
    ),
)


def clean(line: str) -> str:
    line = _ANSI.sub("", line).strip()
    line = _RAY_PREFIX.sub("", line).strip()
    return _VLLM_ERROR_PREFIX.sub("", line).strip()


def _short(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def find_oom(lines: Iterable[str]) -> tuple[str, str] | None:
    """(kind, line) of the out-of-memory line that says most: the first line of the most specific pattern.
    Ray prints its wrapper (`RayTaskError(OutOfMemoryError): ray::TaskRunnerV1.run() (pid=...)`) before the
    torch line that holds the sizes (seen on H100: `CUDA out of memory. Tried to allocate 78.82 GiB ...`)."""
    best: tuple[int, str, str] | None = None
    for raw in lines:
        for rank, (kind, pattern) in enumerate(OOM_PATTERNS):
            if best is not None and rank >= best[0]:
                break
            if pattern.search(raw):
                best = (rank, kind, raw)
                break
        if best is not None and best[0] == 0:
            break
    return (best[1], _short(clean(best[2]))) if best else None


def _is_noise(line: str) -> bool:
    return any(p.search(line) for p in _NOISE)


def last_error_line(lines: list[str]) -> str | None:
    """The last line that names an error; failing that, the last line that is not noise."""
    cleaned = [clean(x) for x in lines]
    fallback = None
    for line in reversed(cleaned):
        if not line or _is_noise(line):
            continue
        if _ERROR_LINE.match(line) or "Error:" in line:
            return _short(line)
        if fallback is None and not line.startswith(("at ", "from ")):
            fallback = line
    return _short(fallback) if fallback else None


def known_crash(lines: list[str]) -> tuple[KnownCrash, str] | None:
    """(cause, its cleaned error line) of the first known crash in the log, else None."""
    for cause in KNOWN_CRASHES:
        for i, raw in enumerate(lines):
            if cause.error.search(raw) and any(cause.context.search(x) for x in lines[max(0, i - cause.window) : i]):
                return cause, clean(raw)
    return None


def crash_reason(lines: list[str]) -> str | None:
    """The reason of a crash (not an OOM): a known cause in plain words with its error line, else the last
    error line, else None."""
    known = known_crash(lines)
    if known is not None:
        cause, error = known
        return _short(f"{cause.explanation} — {error} in {cause.where}")
    return last_error_line(lines)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exit code {returncode}"


def classify(returncode: int | None, log_lines: list[str]) -> Failure | None:
    """None when the run succeeded (exit 0); else oom or crash with a reason taken from the log."""
    if returncode == 0:
        return None
    oom = find_oom(log_lines)
    if oom is not None:
        return Failure("oom", oom[1], oom[0])
    exit_text = describe_exit(returncode) if returncode is not None else "no exit code"
    line = crash_reason(log_lines)
    return Failure("crash", f"{line} ({exit_text})" if line else exit_text)


def read_log_lines(path: str | Path, *, max_bytes: int = 4 << 20) -> list[str]:
    """The tail of a log (the error is at the end; logs of long runs can be large)."""
    p = Path(path)
    if not p.exists():
        return []
    size = p.stat().st_size
    with p.open("rb") as fh:
        if size > max_bytes:
            fh.seek(size - max_bytes)
            fh.readline()  # drop the partial first line
        return fh.read().decode("utf-8", errors="replace").splitlines()
