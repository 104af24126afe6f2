"""A base image made on the build machine (`grpo-suite image build GEN --base local`).

Where no registry can be reached, the CUDA base of `[build] base_image` cannot be pulled. This module makes
a stand-in from the distribution's own archive: `debootstrap` into a root file system, an upgrade from the
`[local_base] pockets`, a check that its Python and glibc are the ones the lock targets, then `docker import`.
It plays the CUDA base's part without the CUDA toolkit: the wheels of the lock bring the CUDA user-space
libraries, nothing brings nvcc, so a build on it skips the CUDA extensions of requirements-source.lock.

The base is tagged by its recipe (`grpo-suite-base:<distribution>-<recipe sha256[:12]>`) and reused while the
recipe is unchanged; its docker image id is what the image records as base digest, prefixed `local:` so that
no one takes it for a registry digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.containers.settings import GenSettings
from suite.errors import InputError

BASE_REPO = "grpo-suite-base"
LOCAL_PREFIX = "local:"
# An image id as `docker image inspect --format '{{.Id}}'` prints it.
_IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
_REQUIRED = ("distribution", "mirror", "pockets", "components", "include")
# Printed by the root file system's python3: "<major>.<minor> <glibc version>".
PROBE = "import platform, sys; print('%d.%d' % sys.version_info[:2], platform.libc_ver()[1])"

Log = Callable[[str], None]


@dataclass(frozen=True)
class BaseRecipe:
    """Everything that decides what the base holds (its hash names the base image)."""

    distribution: str
    mirror: str
    pockets: tuple[str, ...]
    components: tuple[str, ...]
    variant: str
    script: str
    include: tuple[str, ...]
    keyring_url: str
    keyring_sha256: str
    keyring_member: str
    keyring: str  # a keyring file on the build machine, when there is no keyring_url
    python_version: str  # [lock] python_version: the base's python3 must be this one
    min_glibc: str  # from [lock] python_platform (x86_64-manylinux_2_39 -> 2.39)
    # SHA-256 of the build machine's extra CA certificates (--ca-certificates), trusted in the base.
    extra_ca_sha256: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode()).hexdigest()

    @property
    def tag(self) -> str:
        return f"{BASE_REPO}:{self.distribution}-{self.sha256[:12]}"


@dataclass(frozen=True)
class LocalBase:
    tag: str
    image_id: str  # sha256:<64 hex>, the docker image id
    python: str = ""
    glibc: str = ""
    packages_sha256: str = ""
    seconds: float = 0.0  # time spent making it (0: reused)

    @property
    def digest(self) -> str:
        """What the image records as its base digest: the local image id, marked as such."""
        return f"{LOCAL_PREFIX}{self.image_id}"


def _strs(table: dict[str, Any], key: str, source: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InputError(
            f"must be a list of non-empty strings, got {value!r}", source=source, field=f"local_base.{key}"
        )
    return tuple(value)


def _glibc_of(platform_tag: str) -> str:
    m = re.search(r"manylinux_(\d+)_(\d+)", platform_tag)
    return f"{m.group(1)}.{m.group(2)}" if m else ""


def recipe_for(settings: GenSettings, *, ca_certificates: tuple[Path, ...] = ()) -> BaseRecipe:
    """The `[local_base]` table of a generation, checked, with the extra CA certificates to trust."""
    table = settings.local_base
    source = str(settings.dir / "settings.toml")
    missing = [k for k in _REQUIRED if not table.get(k)]
    if missing:
        raise InputError(
            f"missing key(s) {', '.join(missing)} (containers/defaults.toml holds them)",
            source=source,
            field="local_base",
        )
    url, sha, keyring = (str(table.get(k, "")) for k in ("keyring_url", "keyring_sha256", "keyring"))
    if url and not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise InputError(
            f"keyring_url needs keyring_sha256 = 64 hex digits, got {sha!r}",
            source=source,
            field="local_base.keyring_sha256",
        )
    if not url and not keyring:
        raise InputError(
            "give keyring_url (+ keyring_sha256, keyring_member) or keyring (a file here)",
            source=source,
            field="local_base",
        )
    return BaseRecipe(
        distribution=str(table["distribution"]),
        mirror=str(table["mirror"]).rstrip("/"),
        pockets=_strs(table, "pockets", source),
        components=_strs(table, "components", source),
        variant=str(table.get("variant", "minbase")),
        script=str(table.get("script", "")),
        include=_strs(table, "include", source),
        keyring_url=url,
        keyring_sha256=sha,
        keyring_member=str(table.get("keyring_member", "")),
        keyring=keyring,
        python_version=str(settings.lock.get("python_version", "3.12")),
        min_glibc=_glibc_of(str(settings.lock.get("python_platform", ""))),
        extra_ca_sha256=tuple(_ca_sha256(p) for p in ca_certificates),
    )


def _ca_sha256(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", field="--ca-certificates") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise InputError(f"{path} holds no PEM certificate", field="--ca-certificates")
    return hashlib.sha256(data).hexdigest()


def skip_source_builds(settings: GenSettings) -> tuple[str, ...]:
    return _strs(settings.local_base, "skip_source_builds", str(settings.dir / "settings.toml"))


# --- commands (pure: tests check them without a Docker engine or root) ---------------------------------


def debootstrap_command(recipe: BaseRecipe, rootfs: Path, keyring: Path) -> list[str]:
    cmd = [
        "debootstrap",
        f"--variant={recipe.variant}",
        f"--include={','.join(recipe.include)}",
        f"--components={','.join(recipe.components)}",
        f"--keyring={keyring}",
        recipe.distribution,
        str(rootfs),
        recipe.mirror,
    ]
    if recipe.script:
        cmd.append(f"/usr/share/debootstrap/scripts/{recipe.script}")
    return cmd


def sources_list(recipe: BaseRecipe) -> str:
    comps = " ".join(recipe.components)
    return "".join(f"deb {recipe.mirror} {pocket} {comps}\n" for pocket in recipe.pockets)


def import_command(recipe: BaseRecipe, *, docker: str = "docker", packages_sha256: str = "") -> list[str]:
    """`docker import - <tag>` with what a pulled base carries in its config (PATH, a UTF-8 locale, a
    shell) and labels naming the recipe."""
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["bash"]',
        f'LABEL org.opencontainers.image.title="{BASE_REPO}" '
        f'dev.grpo-suite.base.distribution="{recipe.distribution}" '
        f'dev.grpo-suite.base.recipe-sha256="{recipe.sha256}" '
        f'dev.grpo-suite.base.packages-sha256="{packages_sha256}" '
        f'dev.grpo-suite.base.extra-ca-sha256="{" ".join(recipe.extra_ca_sha256)}"',
    ]
    if recipe.extra_ca_sha256:
        # pip (its vendored requests) and Python's ssl read certifi's bundle unless told otherwise: point them at
        # the system store, which now holds the extra CAs.
        bundle = "/etc/ssl/certs/ca-certificates.crt"
        changes.append(f"ENV PIP_CERT={bundle} REQUESTS_CA_BUNDLE={bundle} SSL_CERT_FILE={bundle}")
    cmd = [docker, "import"]
    for change in changes:
        cmd += ["--change", change]
    return [*cmd, "--message", f"debootstrap {recipe.distribution} from {recipe.mirror}", "-", recipe.tag]


def check_probe(recipe: BaseRecipe, output: str) -> tuple[str, str]:
    """(python, glibc) of the root file system, refused when they are not what the lock targets."""
    parts = output.split()
    if len(parts) != 2:
        raise InputError(f"cannot read the base's Python and glibc from {output.strip()!r}")
    python, glibc = parts
    if python != recipe.python_version:
        raise InputError(
            f"{recipe.distribution}'s python3 is {python}, the lock targets {recipe.python_version} "
            "([lock] python_version): pick a [local_base] distribution that ships it (Ubuntu 24.04 'noble' "
            "has 3.12) or relock for this Python",
            field="local_base.distribution",
        )
    if recipe.min_glibc and _version(glibc) < _version(recipe.min_glibc):
        raise InputError(
            f"{recipe.distribution} has glibc {glibc}; the lock's wheels need {recipe.min_glibc} or newer "
            "([lock] python_platform)",
            field="local_base.distribution",
        )
    return python, glibc


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text))


# --- making it (root, debootstrap, a Docker engine) -----------------------------------------------------


def image_id(tag: str, *, docker: str = "docker") -> str | None:
    """The id of a local image, or None when the engine has no such image."""
    proc = subprocess.run([docker, "image", "inspect", "--format", "{{.Id}}", tag], capture_output=True, text=True)
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and _IMAGE_ID.match(out) else None


def _image_label(tag: str, key: str, *, docker: str) -> str:
    proc = subprocess.run(
        [docker, "image", "inspect", "--format", f'{{{{index .Config.Labels "{key}"}}}}', tag],
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _fetch_keyring(recipe: BaseRecipe, workdir: Path) -> Path:
    if not recipe.keyring_url:
        path = Path(recipe.keyring)
        if not path.is_file():
            raise InputError(f"keyring {path} not found", field="local_base.keyring")
        return path
    deb = workdir / Path(recipe.keyring_url).name
    if not deb.is_file() or hashlib.sha256(deb.read_bytes()).hexdigest() != recipe.keyring_sha256:
        # A fixed URL whose bytes are checked against the pinned SHA-256 below.
        with urllib.request.urlopen(recipe.keyring_url, timeout=60) as resp:
            data = resp.read()
        got = hashlib.sha256(data).hexdigest()
        if got != recipe.keyring_sha256:
            raise InputError(
                f"{recipe.keyring_url} has SHA-256 {got}, expected {recipe.keyring_sha256}",
                field="local_base.keyring_sha256",
            )
        deb.write_bytes(data)
    out = workdir / "keyring"
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], check=True)
    path = out / recipe.keyring_member
    if not path.is_file():
        raise InputError(f"{recipe.keyring_member} is not in {deb.name}", field="local_base.keyring_member")
    return path


def _chroot(rootfs: Path, *args: str) -> str:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    proc = subprocess.run(["chroot", str(rootfs), *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise InputError(f"chroot {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.strip()[-2000:]}")
    return proc.stdout


def make_local_base(
    settings: GenSettings,
    *,
    docker: str = "docker",
    workdir: Path,
    rebuild: bool = False,
    ca_certificates: tuple[Path, ...] = (),
    log: Log = print,
) -> LocalBase:
    """The local base of `settings`: the existing image of this recipe, or a new one. `ca_certificates`: CAs
    the build machine's network needs (a TLS-intercepting proxy in front of PyPI), trusted in the base and so
    in every image built on it (its labels give their SHA-256)."""
    recipe = recipe_for(settings, ca_certificates=ca_certificates)
    existing = image_id(recipe.tag, docker=docker)
    if existing and not rebuild:
        log(f"base: reusing {recipe.tag} ({existing})")
        return LocalBase(
            recipe.tag,
            existing,
            packages_sha256=_image_label(recipe.tag, "dev.grpo-suite.base.packages-sha256", docker=docker),
        )
    if os.geteuid() != 0:
        raise InputError(
            "making a local base needs root (debootstrap and chroot); run as root or make it once as root and reuse it"
        )
    for tool in ("debootstrap", "dpkg-deb", "chroot", "tar"):
        if shutil.which(tool) is None:
            raise InputError(f"{tool} not found: apt-get install debootstrap (Debian/Ubuntu)")
    start = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    keyring = _fetch_keyring(recipe, workdir)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="rootfs-") as tmp:
        rootfs = Path(tmp)
        cmd = debootstrap_command(recipe, rootfs, keyring)
        log("base: " + " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip()[-3000:]
            raise InputError(f"debootstrap failed ({proc.returncode}):\n{tail}")
        (rootfs / "etc/apt/sources.list").write_text(sources_list(recipe))
        # apt in the chroot resolves the mirror's name: lend it the build machine's resolver, then take it back.
        resolv = rootfs / "etc/resolv.conf"
        resolv.unlink(missing_ok=True)
        shutil.copyfile("/etc/resolv.conf", resolv)
        log(f"base: apt-get update && dist-upgrade from {', '.join(recipe.pockets)}")
        _chroot(rootfs, "apt-get", "update", "-qq")
        _chroot(rootfs, "apt-get", "dist-upgrade", "-y", "-qq", "--no-install-recommends")
        _chroot(rootfs, "apt-get", "clean")
        if ca_certificates:
            for i, cert in enumerate(ca_certificates):
                target = rootfs / "usr/local/share/ca-certificates" / f"grpo-suite-extra-{i}.crt"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(cert, target)
            _chroot(rootfs, "update-ca-certificates")
        resolv.unlink()
        for lists in (rootfs / "var/lib/apt/lists").glob("*"):
            if lists.is_file():
                lists.unlink()
        python, glibc = check_probe(recipe, _chroot(rootfs, "python3", "-c", PROBE))
        packages = _chroot(rootfs, "dpkg-query", "-W", "-f", "${Package}=${Version}\\n")
        packages_sha = hashlib.sha256(packages.encode()).hexdigest()
        (workdir / f"{recipe.distribution}-{recipe.sha256[:12]}.packages.txt").write_text(packages)
        log(f"base: python {python}, glibc {glibc}, {len(packages.splitlines())} packages; docker import")
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
        )
        imp = subprocess.run(
            import_command(recipe, docker=docker, packages_sha256=packages_sha),
            stdin=tar.stdout,
            capture_output=True,
            text=True,
        )
        if tar.stdout is not None:
            tar.stdout.close()
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise InputError(
                f"docker import failed ({imp.returncode}, tar {tar.returncode}): {imp.stderr.strip()[-2000:]}"
            )
    made = image_id(recipe.tag, docker=docker)
    if made is None:
        raise InputError(f"docker import did not leave {recipe.tag}")
    seconds = time.monotonic() - start
    log(f"base: {recipe.tag} = {made} in {seconds:.0f} s")
    return LocalBase(recipe.tag, made, python, glibc, packages_sha, seconds)
