"""Follow a file a run is writing: a thread polls it (no inotify: it may sit on NFS or a bind mount) and hands the
complete lines written since the last poll to `on_lines`; `stop()` ends the thread and reads what is left.

One mechanism for every such follower (verl's metrics file, a cell's log for its start-up milestones, the log a
Ray job echoes), so each gets the same care: polls hold a lock, because `stop()` polls from the caller's thread
and a thread whose join timed out (a loaded host) may still be inside its own poll, and two unlocked polls would
read an offset twice or drop the unfinished line."""

from __future__ import annotations

import threading
from pathlib import Path


class LineTail:
    name = "tail"  # the thread's name
    read_max: int | None = None  # bytes one poll reads at most (None: to the end)
    partial_max: int | None = None  # bytes of an unfinished line kept (a runaway line must not grow without bound)
    follow_truncation = False  # a file written again from its start (opened with "wb") is followed from there

    def __init__(self, path: str | Path, poll_s: float) -> None:
        self.path = Path(path)
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._offset, self._buf = 0, b""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_lines(self, lines: list[str]) -> None:
        raise NotImplementedError

    def finished(self) -> bool:
        """True once nothing more is wanted from the file: polls stop reading it."""
        return False

    def start(self) -> LineTail:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.poll()  # lines written between the last poll and the writer's exit

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def poll(self) -> None:
        with self._lock:
            if self.finished():
                return
            limit = self.read_max
            try:
                if self.follow_truncation:
                    size = self.path.stat().st_size
                    if size < self._offset:
                        self._offset, self._buf = 0, b""
                    limit = size - self._offset
                with self.path.open("rb") as fh:
                    fh.seek(self._offset)
                    chunk = fh.read(-1 if limit is None else limit)
            except OSError:
                return
            if not chunk:
                return
            self._offset += len(chunk)
            self._buf += chunk
            *lines, self._buf = self._buf.split(b"\n")
            if self.partial_max is not None:
                self._buf = self._buf[-self.partial_max :]
            self.on_lines([raw.decode("utf-8", errors="replace") for raw in lines])

    def take_partial(self) -> str | None:
        """The unfinished last line, once (after stop(): what the writer left without a newline)."""
        with self._lock:
            rest, self._buf = self._buf, b""
        return rest.decode("utf-8", errors="replace") if rest else None
