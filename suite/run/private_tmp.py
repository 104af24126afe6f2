"""A private /tmp per cell, through a mount namespace.

Why: verl 0.9.1 names its colocated weight-transfer socket `/tmp/rl-colocate-zmq-<ray job id>-replica-<r>-rank-<k>
.sock`, and the sender deletes whatever is at that path before binding. Every cell starts its own Ray cluster, so
the job id is the same (`01000000`) in every cell: two cells on one host bind and connect the same socket, and a
receiver gets the other job's message where it expects a CUDA IPC handle (seen on 4x H100, 2026-11-28: `TypeError:
'str' object is not callable` in `rebuild_ipc`, and stalls). A cell with its own /tmp cannot meet another's.

How: `unshare --mount` (as root; otherwise with `--map-root-user`) runs a small sh script that bind-mounts every
directory, regular file and symlink at the top of the host's /tmp into a fresh per-cell folder, mounts that folder
over /tmp and execs the cell. Paths under /tmp therefore mean the same files inside and outside (results, Ray's
temp dir, a test's tmp_path); only what the cell creates at the top of /tmp (sockets above all) stays private.
The pid of the cell is the pid of the verl driver (unshare and sh exec), so process-tree handling is unchanged.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

MODES = ("auto", "on", "off")
SUFFIX = "-tmp"

# $1: the per-cell root; the rest: the command. Sockets, fifos and devices at the top of /tmp are not carried
# over (verl's colocate sockets are the point); neither are other cells' private roots.
SCRIPT = r"""set -e
root=$1; shift
mkdir -p "$root"
for e in /tmp/* /tmp/.[!.]*; do
  [ -e "$e" ] || [ -L "$e" ] || continue
  case "$e" in "$root"|/tmp/gsr-*-tmp) continue;; esac
  n=${e##*/}
  if [ -L "$e" ]; then ln -sfn "$(readlink "$e")" "$root/$n"
  elif [ -d "$e" ]; then mkdir -p "$root/$n" && mount --bind "$e" "$root/$n"
  elif [ -f "$e" ]; then : > "$root/$n" && mount --bind "$e" "$root/$n"
  fi
done
mount --rbind "$root" /tmp
exec "$@"
"""

_UNSHARE = ("unshare", "--mount", "--propagation", "private")


def unshare_argv(userns: bool) -> list[str]:
    return [*_UNSHARE, *(["--map-root-user"] if userns else []), "--"]


def wrap(argv: Sequence[str], root: Path, userns: bool = False) -> list[str]:
    """The cell's argv run with `root` as its /tmp (see the module docstring)."""
    return [*unshare_argv(userns), "sh", "-c", SCRIPT, "private-tmp", str(root), *argv]


def root_for(ray_tmp: Path) -> Path:
    """The per-cell /tmp folder beside the cell's Ray temp dir (same short, unique name)."""
    return ray_tmp.with_name(ray_tmp.name + SUFFIX)


@functools.lru_cache(maxsize=1)
def probe() -> tuple[bool | None, str]:
    """Whether a private /tmp works here: (userns flag to use, "") or (None, why not). Cached per process."""
    if shutil.which("unshare") is None:
        return None, "`unshare` (util-linux) not found"
    why = ""
    for userns in (False, True) if os.geteuid() == 0 else (True,):
        with tempfile.TemporaryDirectory(prefix="gsr-probe-") as d:
            root = Path(d) / "root"
            try:
                p = subprocess.run(
                    wrap(["sh", "-c", "test -d /tmp && touch /tmp/.gsr-probe"], root, userns),
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                why = str(exc)
                continue
            # the marker must land in the private root, not in the host's /tmp
            if p.returncode == 0 and (root / ".gsr-probe").exists():
                return userns, ""
            why = (p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1]
    return None, why


def resolve(mode: str) -> tuple[bool | None, str]:
    """For a `private_tmp` option value: (userns flag, "") to isolate, (None, note) not to."""
    if mode == "off":
        return None, "off"
    userns, why = probe()
    return userns, ("" if userns is not None else f"unavailable: {why}")


def remove_root(root: Path) -> bool:
    """Delete a cell's private /tmp folder once its cell is over, never descending into a mount (a bind of the
    host's /tmp content would only be visible here if the namespace were somehow still alive)."""
    if not root.is_dir():
        return False
    for dirpath, dirnames, _ in os.walk(root):
        if any(os.path.ismount(os.path.join(dirpath, d)) for d in dirnames):
            return False
    shutil.rmtree(root, ignore_errors=True)
    return True
