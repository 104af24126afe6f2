"""Dockerfile rendering, image identity and the `docker build` command per generation.

`containers/Dockerfile.in` is the one template; `containers/<gen>/Dockerfile` is it rendered with that
generation's settings, base reference and identity, committed so that a plain
`docker build -f containers/<gen>/Dockerfile .` works and hadolint sees exactly what is built. A test
keeps the committed files equal to what `render` writes.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from suite import __version__
from suite.containers.images import BaseRef, read_images_lock, resolve_base
from suite.containers.lock import lock_sha256, normalize, pinned_versions
from suite.containers.settings import IMAGES_LOCK, TEMPLATE, GenSettings, load_settings
from suite.errors import InputError
from suite.packages import PACKAGES

IMAGE_REPO = "grpo-suite"
_IGNORE = """\
# BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile: the context is the repository root,
# and the image needs only pyproject.toml, README.md, suite/ and this generation's lockfiles.
*
!pyproject.toml
!README.md
!suite/
!containers/{gen}/requirements.lock
!containers/{gen}/requirements-source.lock
!containers/{gen}/requirements-nodeps.lock
**/__pycache__
"""


@dataclass(frozen=True)
class Identity:
    """What makes two images of one generation the same: the packages (lock hash), the base (digest),
    the suite version and the recipe (template + merged settings)."""

    generation: str
    lock_sha256: str
    base_image: str
    base_digest: str  # sha256:... or "unpinned"
    suite_version: str
    recipe_sha256: str
    # Packages of requirements-source.lock this image was built without (`--skip-source-builds`).
    skipped_source_builds: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        fields = dict(self.__dict__)
        if not fields["skipped_source_builds"]:
            del fields["skipped_source_builds"]  # a full build keeps the identity it had before skips existed
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    @property
    def digest(self) -> str:
        """The value of GRPO_SUITE_IMAGE_IDENTITY (and of GRPO_SUITE_IMAGE_DIGEST until the runtime
        replaces it with the engine's image id)."""
        return f"identity:sha256:{self.sha256}"

    @property
    def tag(self) -> str:
        return f"{IMAGE_REPO}:{self.generation}-{self.suite_version}-{self.sha256[:12]}"


def recipe_sha256(settings: GenSettings, template: str) -> str:
    payload = {
        "template": template,
        "gpu": settings.gpu,
        "build": settings.build,
        "env": settings.env,
        "lock": settings.lock,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _root(settings: GenSettings) -> Path:
    return settings.dir.parent


def identity(
    settings: GenSettings, base: BaseRef, *, suite_version: str = __version__, skipped: tuple[str, ...] = ()
) -> Identity:
    template = (_root(settings) / TEMPLATE).read_text()
    return Identity(
        generation=settings.gen,
        lock_sha256=lock_sha256(settings),
        base_image=base.tag,
        base_digest=base.digest or "unpinned",
        suite_version=suite_version,
        recipe_sha256=recipe_sha256(settings, template),
        skipped_source_builds=tuple(skipped),
    )


def source_skips(settings: GenSettings, names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """`names` checked against `[lock] source_packages` and normalised (sorted: the identity hashes them)."""
    allowed = {normalize(p) for p in settings.lock.get("source_packages", [])}
    out = sorted({normalize(n) for n in names if n.strip()})
    unknown = [n for n in out if n not in allowed]
    if unknown:
        raise InputError(
            f"{', '.join(unknown)}: not in requirements-source.lock; allowed: {', '.join(sorted(allowed))}",
            field="--skip-source-builds",
        )
    return tuple(out)


def base_for(settings: GenSettings, *, allow_unpinned: bool) -> BaseRef:
    images = read_images_lock(_root(settings) / IMAGES_LOCK)
    return resolve_base(
        str(settings.build["base_image"]), images, allow_unpinned=allow_unpinned, lock_path=f"containers/{IMAGES_LOCK}"
    )


def render_dockerfile(
    settings: GenSettings,
    *,
    suite_version: str = __version__,
    base: BaseRef | None = None,
    skipped: tuple[str, ...] = (),
) -> str:
    """The generation's Dockerfile. A pending base renders as its tag with an empty BASE_DIGEST, which
    the Dockerfile itself refuses unless ALLOW_UNPINNED=1. `base` and `skipped` render it for one build that
    differs from the committed file (a local base, source builds left out); such a file is never committed."""
    template = (_root(settings) / TEMPLATE).read_text()
    base = base or base_for(settings, allow_unpinned=True)
    ident = identity(settings, base, suite_version=suite_version, skipped=skipped)
    versions = pinned_versions(settings)
    # The `versions` label: suite.packages.PACKAGES as pinned in this lock (the full set is the lockfile, whose
    # hash is labelled).
    label_versions = " ".join(f"{p}=={versions[p]}" for p in PACKAGES if p in versions)
    env_lines = "".join(f"    {k}={json.dumps(v)} \\\n" for k, v in sorted(settings.env.items()))
    from suite.gpus import GPUS

    gpu = GPUS.get(settings.gen)
    generated = (
        f"GENERATED by `python -m suite.containers render` from containers/{TEMPLATE} and "
        f"containers/{settings.gen}/settings.toml: edit those, not this file."
    )
    if base.local:
        # `# syntax=docker/dockerfile:1` makes BuildKit fetch its Dockerfile frontend from a registry, which a
        # local build has not got; the template needs nothing beyond the engine's built-in frontend.
        template = re.sub(r"\A# syntax=[^\n]*\n", "", template)
        generated = (
            f"GENERATED by `grpo-suite image build {settings.gen} --base local` for the base "
            f"{base.tag} ({base.digest}), made on the build machine: not a registry image."
        )
    values = {
        "GENERATED": generated,
        "GEN": settings.gen,
        "GPU_NAME": gpu.name if gpu else settings.gen,
        "CC": str(settings.gpu.get("compute_capability", gpu.compute_capability if gpu else "?")),
        "BASE_REF": base.reference,
        "BASE_TAG": base.tag,
        "BASE_DIGEST": base.digest or "",
        "APT_SNAPSHOT": str(settings.build.get("apt_snapshot", "")),
        "MAX_JOBS": str(settings.build.get("max_jobs", 8)),
        "TORCH_CUDA_ARCH_LIST": json.dumps(str(settings.build["torch_cuda_arch_list"])),
        "FLASH_ATTN_CUDA_ARCHS": json.dumps(str(settings.build["flash_attn_cuda_archs"])),
        "NVTE_CUDA_ARCHS": json.dumps(str(settings.build["nvte_cuda_archs"])),
        "SUITE_VERSION": suite_version,
        "LOCK_SHA256": ident.lock_sha256,
        "IDENTITY": ident.digest,
        "IMAGE_TAG": ident.tag,
        "VERSIONS": label_versions,
        "ENV_LINES": env_lines.rstrip("\n"),
        "SKIP_SOURCE_BUILDS": " ".join(skipped),
    }
    out = template
    for key, value in values.items():
        out = out.replace(f"@{key}@", value)
    leftover = sorted(set(re.findall(r"@[A-Z_]+@", out)))
    if leftover:
        raise ValueError(f"unrendered placeholders in {TEMPLATE}: {', '.join(leftover)}")
    return out


def render_ignore(settings: GenSettings) -> str:
    return _IGNORE.format(gen=settings.gen)


def render_all(root: Path, *, write: bool = True) -> dict[Path, str]:
    """Every generated file (Dockerfile + its .dockerignore per generation) -> content."""
    from suite.containers.settings import generations

    files: dict[Path, str] = {}
    for gen in generations(root):
        s = load_settings(gen, root)
        files[s.dockerfile] = render_dockerfile(s)
        files[s.dir / "Dockerfile.dockerignore"] = render_ignore(s)
    if write:
        for path, text in files.items():
            path.write_text(text)
    return files


def build_command(
    settings: GenSettings,
    *,
    repo: Path,
    allow_unpinned: bool = False,
    git_commit: str = "unknown",
    docker: str = "docker",
    extra_tags: tuple[str, ...] = (),
    suite_version: str = __version__,
    base: BaseRef | None = None,
    skipped: tuple[str, ...] = (),
    context: Path | None = None,
    network: str | None = None,
) -> list[str]:
    """`docker build` for one generation; raises UnpinnedBaseError for a pending base unless allowed.

    The normal build reads the committed Dockerfile with the repository root as context. A build that differs
    from it (`base` made locally, `skipped` source builds) reads the Dockerfile rendered for it from `context`,
    a folder `stage_context` filled; such an image is tagged `<gen>-local` (or `<gen>-partial`), never
    `grpo-suite:<gen>`, so that nothing runs it in place of the full image by accident."""
    base = base or base_for(settings, allow_unpinned=allow_unpinned)
    ident = identity(settings, base, suite_version=suite_version, skipped=skipped)
    if context is None:
        dockerfile, where, short = str(settings.dockerfile.relative_to(repo)), ".", settings.gen
    else:
        dockerfile, where = str(context / "Dockerfile"), str(context)
        short = f"{settings.gen}-local" if base.local else f"{settings.gen}-partial"
    cmd = [docker, "build", "--file", dockerfile, "--tag", ident.tag, "--tag", f"{IMAGE_REPO}:{short}"]
    for t in extra_tags:
        cmd += ["--tag", t]
    if network:
        cmd += ["--network", network]
    cmd += [
        "--build-arg",
        f"BASE_IMAGE={base.reference}",
        "--build-arg",
        f"BASE_DIGEST={base.digest or 'unpinned'}",
        "--build-arg",
        f"GIT_COMMIT={git_commit}",
    ]
    if skipped:
        cmd += ["--build-arg", f"SKIP_SOURCE_BUILDS={' '.join(skipped)}"]
    if not base.pinned:
        cmd += ["--build-arg", "ALLOW_UNPINNED=1"]
    cmd.append(where)
    return cmd


def context_paths(settings: GenSettings) -> list[str]:
    """The repository paths a build reads: the `!` lines of the generation's .dockerignore."""
    return [line[1:].rstrip("/") for line in render_ignore(settings).splitlines() if line.startswith("!")]


def stage_context(settings: GenSettings, *, repo: Path, dest: Path, dockerfile: str, commit: str | None = None) -> Path:
    """A build context holding exactly what the .dockerignore lets through, and `dockerfile`. Any builder
    reads it the same way (the legacy builder knows no per-Dockerfile .dockerignore). With `commit`, the files
    come from that commit (`git archive`) instead of the working tree, so that the image is what the commit
    its revision label names holds, whatever else is being edited in the checkout."""
    import subprocess

    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    if commit is not None:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit, "--", *context_paths(settings)],
            cwd=repo,
            capture_output=True,
            check=False,
        )
        if archive.returncode != 0:
            raise InputError(f"git archive {commit} failed: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        (dest / "Dockerfile").write_text(dockerfile)
        return dest
    for rel in context_paths(settings):
        src = repo / rel
        if rel.startswith(f"containers/{settings.gen}/"):
            src = settings.dir / Path(rel).name  # the generation's own folder, wherever its root is
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copyfile(src, target)
    (dest / "Dockerfile").write_text(dockerfile)
    return dest


def image_tag(gen: str, *, root: Path | None = None, allow_unpinned: bool = True) -> str:
    """The identity tag the current checkout builds for `gen` (what `--runtime docker` runs by default)."""
    s = load_settings(gen, root)
    return identity(s, base_for(s, allow_unpinned=allow_unpinned)).tag


def format_command(cmd: list[str]) -> str:
    return shlex.join(cmd)


def image_record(tag: str, *, docker: str = "docker") -> dict[str, object]:
    """Id, size, labels and layers (`docker history`, bytes) of a built image, for a build record."""
    import subprocess

    def run(*args: str) -> str:
        return subprocess.run([docker, *args], capture_output=True, text=True, check=True).stdout

    info = json.loads(run("image", "inspect", tag))[0]
    layers = [
        json.loads(line)
        for line in run("history", "--no-trunc", "--human=false", "--format", "{{json .}}", tag).splitlines()
        if line.strip()
    ]
    return {
        "tag": tag,
        "image_id": info["Id"],
        "size_bytes": info["Size"],
        "labels": info["Config"].get("Labels") or {},
        "layers": [{"size_bytes": int(layer["Size"]), "created_by": layer["CreatedBy"]} for layer in layers],
    }
