"""Base images pinned by digest: `containers/images.lock` (tag -> digest) and `nox -s lock-images`.

A build may only start FROM `tag@sha256:...`. Digests come from the registry (skopeo, or
`docker buildx imagetools inspect`); a machine without registry access records them as "pending", and a
build then refuses that base unless the user passes --allow-unpinned.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from suite.errors import InputError

PENDING = "pending"
LOCK_IMAGES_COMMAND = "nox -s lock-images"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

_HEADER = """\
# Base images, tag -> digest. Written by `nox -s lock-images` (python -m suite.containers lock-images),
# which asks the registry through skopeo or `docker buildx imagetools inspect`. "pending": not looked
# up yet (this file was written on a machine without registry access); builds refuse such a base
# unless --allow-unpinned is given.
"""


class UnpinnedBaseError(InputError):
    pass


def is_digest(value: str | None) -> bool:
    return bool(value) and bool(_DIGEST.match(value or ""))


def read_images_lock(path: Path) -> dict[str, str]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({exc})", source=str(path)) from None
    out: dict[str, str] = {}
    for tag, entry in data.get("images", {}).items():
        digest = str(entry.get("digest", PENDING)) if isinstance(entry, dict) else PENDING
        if digest != PENDING and not is_digest(digest):
            raise InputError(
                f"digest {digest!r} is neither 'pending' nor sha256:<64 hex>",
                source=str(path),
                field=f'images."{tag}".digest',
            )
        out[tag] = digest
    return out


def format_images_lock(images: dict[str, str]) -> str:
    parts = [_HEADER]
    for tag in sorted(images):
        parts.append(f'\n[images."{tag}"]\ndigest = "{images[tag]}"\n')
    return "".join(parts)


@dataclass(frozen=True)
class BaseRef:
    tag: str
    digest: str | None  # None: pending; "local:sha256:..." for a base made on the build machine
    # A base made here (localbase.py): FROM names its tag, since a `docker import`ed image has no registry
    # digest to name; the build command checks that the tag is the image id in `digest` before building.
    local: bool = False

    @property
    def reference(self) -> str:
        """What FROM names: `tag@digest` when pinned (the tag stays for readers, the digest decides)."""
        if self.local:
            return self.tag
        return f"{self.tag}@{self.digest}" if self.digest else self.tag

    @property
    def pinned(self) -> bool:
        return self.digest is not None


def resolve_base(
    tag: str, images: dict[str, str], *, allow_unpinned: bool = False, lock_path: str = "containers/images.lock"
) -> BaseRef:
    digest = images.get(tag)
    if is_digest(digest):
        return BaseRef(tag, digest)
    if allow_unpinned:
        return BaseRef(tag, None)
    state = "is pending" if digest == PENDING else "is missing"
    raise UnpinnedBaseError(
        f"base image {tag} is not pinned: its digest {state} in {lock_path}. Run `{LOCK_IMAGES_COMMAND}` "
        "on a machine that can reach the registry and commit the result, or pass --allow-unpinned to "
        "build from the moving tag (the image then records base digest 'unpinned')."
    )


# --- registry look-ups (only `lock-images` calls these; tests inject a fake runner) -----------------

Runner = Callable[[list[str]], subprocess.CompletedProcess]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def inspect_commands(tag: str, *, tools: tuple[str, ...] = ("skopeo", "docker")) -> list[list[str]]:
    """Commands that print the manifest-list digest of `tag`, in order of preference."""
    cmds = []
    for tool in tools:
        if tool == "skopeo":
            # .Digest is the digest of the top-level manifest (the multi-arch index), which is what
            # `FROM tag@digest` must name; the platform overrides only pick which config to read.
            cmds.append(
                [
                    "skopeo",
                    "inspect",
                    "--no-tags",
                    "--override-os",
                    "linux",
                    "--override-arch",
                    "amd64",
                    "--format",
                    "{{.Digest}}",
                    f"docker://{tag}",
                ]
            )
        elif tool == "docker":
            cmds.append(["docker", "buildx", "imagetools", "inspect", tag, "--format", "{{json .Manifest}}"])
    return cmds


def digest_from_output(cmd: list[str], stdout: str) -> str:
    if cmd[0] == "skopeo":
        digest: object = stdout.strip()
    else:
        data = json.loads(stdout)
        digest = data.get("digest") if isinstance(data, dict) else None
    if not is_digest(digest):
        raise ValueError(f"no digest in {cmd[0]} output")
    return str(digest)


def lookup_digest(tag: str, *, runner: Runner = _run, which: Callable[[str], str | None] = shutil.which) -> str:
    errors = []
    for cmd in inspect_commands(tag):
        if which(cmd[0]) is None:
            errors.append(f"{cmd[0]}: not installed")
            continue
        proc = runner(cmd)
        if proc.returncode != 0:
            errors.append(f"{' '.join(cmd)}: {(proc.stderr or '').strip()[:300]}")
            continue
        try:
            return digest_from_output(cmd, proc.stdout)
        except (ValueError, json.JSONDecodeError) as exc:
            errors.append(f"{' '.join(cmd)}: {exc}")
    raise InputError(f"cannot look up the digest of {tag}: " + "; ".join(errors))


def lock_images(
    lock_path: Path,
    tags: list[str],
    *,
    runner: Runner = _run,
    which: Callable[[str], str | None] = shutil.which,
    refresh: bool = False,
) -> dict[str, str]:
    """Fill `lock_path` with a digest for every tag (pending ones, or all with `refresh`); tags no
    generation uses any more are dropped. Returns the new mapping."""
    current = read_images_lock(lock_path)
    out: dict[str, str] = {}
    for tag in sorted(set(tags)):
        digest = current.get(tag, PENDING)
        if refresh or not is_digest(digest):
            digest = lookup_digest(tag, runner=runner, which=which)
        out[tag] = digest
    lock_path.write_text(format_images_lock(out))
    return out
