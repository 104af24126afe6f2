"""Hashed Python lockfiles per generation (`nox -s lock`).

One `uv pip compile --generate-hashes` resolution per generation over `containers/<gen>/requirements.in`
plus grpo-suite's own dependencies (pyproject.toml), for the image's Python and platform. The result is
split in two files so the Dockerfile can install wheels first and then build the CUDA extensions whose
setup.py imports torch (`source_packages`): `requirements.lock` and `requirements-source.lock`. A third,
`requirements-nodeps.lock`, pins `no_deps_packages` resolved alone (`--no-deps`): packages whose declared
dependencies cannot join the resolution (Megatron-Bridge), installed deps-free as verl does. `no_emit` names
packages resolved but never written. Every part keeps `--hash` lines, so `pip install --require-hashes
--no-deps` checks every artefact.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from suite.containers.settings import GenSettings, load_settings
from suite.errors import InputError

LOCK_COMMAND = "nox -s lock"
_REQ_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _target_args(settings: GenSettings, output: Path) -> list[str]:
    """What every resolution of a generation shares: hashes, the image's Python and platform, the frozen
    instant, and the command named in the file's header."""
    lock = settings.lock
    args = [
        "--generate-hashes",
        "--quiet",
        "--python-version",
        str(lock.get("python_version", "3.12")),
        "--python-platform",
        str(lock.get("python_platform", "x86_64-manylinux_2_39")),
        "--custom-compile-command",
        LOCK_COMMAND,
        "--output-file",
        str(output),
    ]
    if lock.get("exclude_newer"):
        args += ["--exclude-newer", str(lock["exclude_newer"])]
    return args


def uv_compile_command(
    settings: GenSettings, output: Path, *, pyproject: Path, uv: str = "uv", python: str | None = None
) -> list[str]:
    cmd = [uv, "pip", "compile", str(settings.requirements_in), str(pyproject), *_target_args(settings, output)]
    for name in _str_list(settings.lock, "no_emit"):
        cmd += ["--no-emit-package", name]
    # Wheels only, as the Dockerfile's first step installs them; source_packages are the declared exceptions.
    cmd += ["--only-binary", ":all:"]
    for name in _str_list(settings.lock, "source_packages"):
        cmd += ["--no-binary", name]
    if python:  # an interpreter to build sdist metadata with; uv would otherwise try to download one
        cmd += ["--python", python]
    return cmd


def nodeps_compile_command(settings: GenSettings, requirements_in: Path, output: Path, *, uv: str = "uv") -> list[str]:
    """The resolution of `no_deps_packages` alone: each pin with its hashes, none of its dependencies."""
    return [
        uv,
        "pip",
        "compile",
        str(requirements_in),
        "--no-deps",
        "--only-binary",
        ":all:",
        *_target_args(settings, output),
    ]


def no_deps_pins(settings: GenSettings) -> list[str]:
    """`no_deps_packages`, checked: each must be an exact `name==version` pin (a range would make the lock
    depend on the day it was made, and nothing else constrains these packages)."""
    pins = _str_list(settings.lock, "no_deps_packages")
    for pin in pins:
        if not _REQ_LINE.fullmatch(pin):
            raise InputError(
                f"{pin!r} is not an exact pin; allowed: name==version",
                source=str(settings.dir / "settings.toml"),
                field="lock.no_deps_packages",
            )
    return pins


def _str_list(table: dict, key: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"must be a list of strings, got {value!r}", field=f"lock.{key}")
    return list(value)


@dataclass(frozen=True)
class Block:
    """One requirement of a uv lockfile: its `name==version \\ --hash ...` lines and `# via` comments."""

    name: str
    version: str
    text: str


def split_blocks(text: str) -> tuple[str, list[Block]]:
    """(header comments, requirement blocks) of a `uv pip compile` output."""
    header: list[str] = []
    blocks: list[Block] = []
    current: list[str] = []
    name = version = ""
    for line in text.splitlines():
        m = _REQ_LINE.match(line)
        if m:
            if current:
                blocks.append(Block(name, version, "\n".join(current)))
            current, name, version = [line], normalize(m.group(1)), m.group(3)
        elif current:
            current.append(line)
        else:
            header.append(line)
    if current:
        blocks.append(Block(name, version, "\n".join(current)))
    return "\n".join(header), blocks


def split_lock(text: str, source_packages: list[str]) -> tuple[str, str]:
    """(wheel part, source-built part) of one resolution, each a valid hashed requirements file."""
    header, blocks = split_blocks(text)
    wanted = {normalize(p) for p in source_packages}
    missing = wanted - {b.name for b in blocks}
    if missing:
        raise InputError(
            f"source package(s) {', '.join(sorted(missing))} are not in the resolution; "
            "drop them from [lock] source_packages or add them to requirements.in"
        )
    main = [b.text for b in blocks if b.name not in wanted]
    src = [b.text for b in blocks if b.name in wanted]
    note = (
        "# No wheel for the target: built from source after requirements.lock is installed (the CUDA\n"
        "# extensions' setup.py imports that torch):\n"
        "#   pip install --require-hashes --no-deps --no-build-isolation -r requirements-source.lock\n"
    )
    return (header + "\n" + "\n".join(main) + "\n", header + "\n" + note + "\n".join(src) + "\n")


def find_python(version: str) -> str | None:
    """A local interpreter of the target version for sdist metadata builds (none is fine: uv falls back
    to its own interpreter with a warning, the metadata is the same for pure setup.py packages)."""
    path = shutil.which(f"python{version}")
    # A pyenv shim exists even when that version is not selected, and then fails: try it first.
    if path and subprocess.run([path, "-c", ""], capture_output=True).returncode == 0:
        return path
    return None


def previous_resolution(settings: GenSettings) -> str:
    """The committed lock parts of a generation as one uv output file (wheel and source parts; the deps-free
    part is resolved on its own), or "" when none is committed yet."""
    parts = [p.read_text() for p in (settings.lockfile, settings.source_lockfile) if p.is_file()]
    return "\n".join(parts)


def lock_generation(
    gen: str, *, repo: Path, uv: str = "uv", python: str | None = None, upgrade: bool = False
) -> tuple[Path, Path, Path]:
    """Resolve one generation and write its three lock parts. uv prefers the versions already in its output
    file, so the committed resolution is given to it as that file: a relock after a requirement change moves
    only what the change needs (a package added, one dropped) instead of every package with a newer release
    before `exclude_newer`. `upgrade` starts from nothing instead."""
    settings = load_settings(gen, repo / "containers")
    python = python or find_python(str(settings.lock.get("python_version", "3.12")))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "full.lock"
        if not upgrade:
            out.write_text(previous_resolution(settings))
        cmd = uv_compile_command(settings, out, pyproject=Path("pyproject.toml"), uv=uv, python=python)
        # Relative paths keep the lockfile comments ("via -r containers/...") free of this machine's paths.
        cmd = [c if not c.startswith(str(repo) + "/") else str(Path(c).relative_to(repo)) for c in cmd]
        proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=_uv_env())
        if proc.returncode != 0:
            raise InputError(f"uv pip compile failed for {gen}:\n{proc.stderr.strip()}")
        main, src = split_lock(out.read_text(), list(settings.lock.get("source_packages", [])))
        nodeps = _lock_nodeps(settings, Path(tmp), repo=repo, uv=uv, main=main)
    settings.lockfile.write_text(main)
    settings.source_lockfile.write_text(src)
    settings.nodeps_lockfile.write_text(nodeps)
    return settings.lockfile, settings.source_lockfile, settings.nodeps_lockfile


def _lock_nodeps(settings: GenSettings, tmp: Path, *, repo: Path, uv: str, main: str) -> str:
    pins = no_deps_pins(settings)
    clash = {normalize(p.split("==")[0]) for p in pins} & {b.name for b in split_blocks(main)[1]}
    if clash:
        raise InputError(
            f"{', '.join(sorted(clash))} resolved with dependencies already; drop from "
            "no_deps_packages or from requirements.in",
            field="lock.no_deps_packages",
        )
    note = (
        "# Installed last, without the dependencies these packages declare (as verl installs them):\n"
        "#   pip install --require-hashes --no-deps --only-binary=:all: -r requirements-nodeps.lock\n"
    )
    if not pins:
        return f"# This file was autogenerated by {LOCK_COMMAND}: no no_deps_packages.\n{note}"
    req = tmp / "nodeps.in"
    req.write_text("\n".join(pins) + "\n")
    out = tmp / "nodeps.lock"
    proc = subprocess.run(
        nodeps_compile_command(settings, req, out, uv=uv), cwd=repo, capture_output=True, text=True, env=_uv_env()
    )
    if proc.returncode != 0:
        raise InputError(f"uv pip compile --no-deps failed for {settings.gen}:\n{proc.stderr.strip()}")
    header, blocks = split_blocks(out.read_text())
    # The temporary input's path says nothing to a reader: name the setting instead.
    body = "\n".join(
        b.text.replace(f"-r {req}", "lock.no_deps_packages").replace("-r nodeps.in", "lock.no_deps_packages")
        for b in blocks
    )
    return header + "\n" + note + body + "\n"


def _uv_env() -> dict[str, str]:
    import os

    # Never fetch a managed CPython in the middle of locking: the target is given by --python-version.
    return {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}


def lock_sha256(settings: GenSettings) -> str:
    """Hash of everything pip installs from: both lock parts, in install order."""
    h = hashlib.sha256()
    for path in settings.lockfiles:
        try:
            h.update(path.read_bytes())
        except FileNotFoundError:
            raise InputError(f"lockfile missing; run `{LOCK_COMMAND}`", source=str(path)) from None
    return h.hexdigest()


def pinned_versions(settings: GenSettings) -> dict[str, str]:
    """name -> version for every package the image installs (both lock parts)."""
    out: dict[str, str] = {}
    for path in settings.lockfiles:
        if not path.is_file():
            raise InputError(f"lockfile missing; run `{LOCK_COMMAND}`", source=str(path))
        for block in split_blocks(path.read_text())[1]:
            out[block.name] = block.version
    return out


def image_pin(gen: str, package: str, root: Path | None = None) -> str | None:
    """The version of `package` the generation's image pins, or None where it pins none or there is no such
    image here (no container sources, as in an installed wheel, or no lockfile yet)."""
    try:
        return pinned_versions(load_settings(gen, root)).get(normalize(package))
    except InputError:
        return None


def unhashed(settings: GenSettings) -> list[str]:
    """Requirements without a --hash line (pip --require-hashes would refuse the whole file)."""
    bad = []
    for path in settings.lockfiles:
        for block in split_blocks(path.read_text())[1]:
            if "--hash=sha256:" not in block.text:
                bad.append(f"{path.name}: {block.name}")
    return bad
