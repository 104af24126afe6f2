"""`grpo-suite image ...` / `python -m suite.containers ...`: lock, lock-images, render, build, versions.

Thin: every sub-command calls one function of `suite.containers.*` and prints what it did.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from suite.errors import InputError

if TYPE_CHECKING:
    from suite.containers.settings import GenSettings


def _repo() -> Path:
    from suite.containers.settings import containers_root

    return containers_root().parent


def _gens(names: list[str], *, with_smoke: bool = False) -> list[str]:
    from suite.containers.settings import SMOKE, containers_root, generations, load_settings

    if not names or names == ["all"]:
        smoke = with_smoke and (containers_root() / SMOKE / "settings.toml").is_file()
        return generations() + ([SMOKE] if smoke else [])
    for g in names:
        load_settings(g)  # validates the name with a clear message
    return names


def cmd_lock(args: argparse.Namespace) -> int:
    from suite.containers.build import render_all
    from suite.containers.lock import lock_generation

    repo = _repo()
    # The smoke image's lock follows pyproject.toml as the generations' do, so it is relocked with them.
    for gen in _gens(args.generation, with_smoke=True):
        main, src, nodeps = lock_generation(gen, repo=repo, uv=args.uv, upgrade=args.upgrade)
        print(f"{gen}: {main.relative_to(repo)} + {src.name} + {nodeps.name}")
    render_all(repo / "containers")  # identities in the Dockerfiles follow the new lock hashes
    print("rendered containers/*/Dockerfile")
    return 0


def cmd_lock_images(args: argparse.Namespace) -> int:
    from suite.containers.build import render_all
    from suite.containers.images import lock_images
    from suite.containers.settings import IMAGES_LOCK, containers_root, generations, load_settings

    root = containers_root()
    tags = [str(load_settings(g, root).build["base_image"]) for g in generations(root)]
    images = lock_images(root / IMAGES_LOCK, tags, refresh=args.refresh)
    for tag, digest in images.items():
        print(f"{tag} -> {digest}")
    render_all(root)
    print("rendered containers/*/Dockerfile")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from suite.containers.build import render_all
    from suite.containers.settings import containers_root

    root = containers_root()
    files = render_all(root, write=not args.check)
    if args.check:
        stale = [p for p, text in files.items() if not p.is_file() or p.read_text() != text]
        for p in stale:
            print(f"stale: {p.relative_to(root.parent)} (run `python -m suite.containers render`)", file=sys.stderr)
        return 1 if stale else 0
    for p in files:
        print(p.relative_to(root.parent))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from suite.containers.build import build_command, format_command
    from suite.containers.settings import load_settings

    repo = _repo()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    git_commit = commit.stdout.strip() or "unknown"
    if args.ca_certificates and args.base != "local":
        raise InputError(
            "only a local base can be given extra CA certificates (--base local)", field="--ca-certificates"
        )
    for gen in _gens(args.generation):
        settings = load_settings(gen)
        if args.base == "local" or args.skip_source_builds:
            rc = _build_staged(args, settings, repo=repo, git_commit=git_commit)
            if rc != 0:
                return rc
            continue
        cmd = build_command(
            settings,
            repo=repo,
            allow_unpinned=args.allow_unpinned,
            git_commit=git_commit,
            docker=args.docker,
            network=args.network,
        )
        print(format_command(cmd), flush=True)
        if args.dry_run:
            continue
        rc = subprocess.run(cmd, cwd=repo).returncode
        if rc != 0:
            return rc
    return 0


def _build_staged(args: argparse.Namespace, settings: GenSettings, *, repo: Path, git_commit: str) -> int:
    """A build that differs from the committed Dockerfile: on a local base (`--base local`) and/or without some
    source builds. Its Dockerfile is rendered for it into a staged context under --workdir."""
    import json
    import time

    from suite.containers import localbase
    from suite.containers.build import (
        base_for,
        build_command,
        format_command,
        image_record,
        render_dockerfile,
        source_skips,
        stage_context,
    )
    from suite.containers.images import BaseRef

    workdir = Path(args.workdir)
    if args.skip_source_builds is not None:
        wanted = [n for n in args.skip_source_builds.split(",") if n.strip()]
    else:
        wanted = list(localbase.skip_source_builds(settings)) if args.base == "local" else []
    skipped = source_skips(settings, wanted)
    base_seconds = 0.0
    cas = tuple(Path(c) for c in args.ca_certificates or ())
    if args.base == "local":
        recipe = localbase.recipe_for(settings, ca_certificates=cas)
        if args.dry_run:
            have = localbase.image_id(recipe.tag, docker=args.docker) if shutil.which(args.docker) else None
            if have is None:
                print(
                    "# would make "
                    + recipe.tag
                    + ": "
                    + format_command(localbase.debootstrap_command(recipe, workdir / "rootfs", workdir / "keyring.gpg"))
                )
            base = BaseRef(recipe.tag, localbase.LOCAL_PREFIX + (have or "sha256:<id of the base made>"), local=True)
        else:
            made = localbase.make_local_base(
                settings,
                docker=args.docker,
                workdir=workdir,
                rebuild=args.rebuild_base,
                ca_certificates=cas,
                log=lambda m: print(m, flush=True),
            )
            base_seconds = made.seconds
            base = BaseRef(made.tag, made.digest, local=True)
    else:
        base = base_for(settings, allow_unpinned=args.allow_unpinned)
    dockerfile = render_dockerfile(settings, base=base, skipped=skipped)
    context = workdir / f"context-{settings.gen}"
    cmd = build_command(
        settings,
        repo=repo,
        allow_unpinned=args.allow_unpinned,
        git_commit=git_commit,
        docker=args.docker,
        base=base,
        skipped=skipped,
        context=context,
        network=args.network,
    )
    print(format_command(cmd), flush=True)
    if args.dry_run:
        return 0
    stage_context(
        settings, repo=repo, dest=context, dockerfile=dockerfile, commit=git_commit if args.from_commit else None
    )
    if base.local and localbase.image_id(base.tag, docker=args.docker) != base.digest.removeprefix(
        localbase.LOCAL_PREFIX
    ):
        raise InputError(f"{base.tag} changed under the build (expected {base.digest})")
    start = time.monotonic()
    rc = subprocess.run(cmd, cwd=repo).returncode
    seconds = time.monotonic() - start
    if rc != 0:
        return rc
    tag = cmd[cmd.index("--tag") + 1]
    print(f"built {tag} in {seconds:.0f} s", flush=True)
    if args.record:
        record = {
            "generation": settings.gen,
            "command": cmd,
            "build_seconds": round(seconds, 1),
            "base_seconds": round(base_seconds, 1),
            "skipped_source_builds": list(skipped),
            **image_record(tag, docker=args.docker),
        }
        Path(args.record).write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.record}", flush=True)
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    from suite.containers.settings import containers_root
    from suite.containers.versions import embed, versions_table

    table = versions_table(containers_root())
    if args.update:
        doc = Path(args.update)
        doc.write_text(embed(doc.read_text(), table))
        print(f"updated {doc}")
    else:
        print(table, end="")
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    from suite.containers.build import image_tag

    print(image_tag(args.generation))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lock", help="regenerate containers/<gen>/requirements*.lock (uv pip compile)")
    p.add_argument("generation", nargs="*", help="generations (default: all)")
    p.add_argument("--uv", default="uv", help="uv executable")
    p.add_argument(
        "--upgrade",
        action="store_true",
        help="resolve from scratch (default: keep the committed versions that still fit)",
    )
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("lock-images", help="look up base image digests into containers/images.lock")
    p.add_argument("--refresh", action="store_true", help="look up pinned tags again too")
    p.set_defaults(func=cmd_lock_images)

    p = sub.add_parser("render", help="write containers/<gen>/Dockerfile from the template")
    p.add_argument("--check", action="store_true", help="exit 1 if a committed file is stale")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("build", help="docker build the image of each generation")
    p.add_argument("generation", nargs="*", help="generations (default: all)")
    p.add_argument(
        "--allow-unpinned",
        action="store_true",
        help="build from a base tag whose digest is pending in containers/images.lock",
    )
    p.add_argument("--dry-run", action="store_true", help="print the docker build command only")
    p.add_argument("--docker", default="docker", help="docker executable")
    p.add_argument(
        "--base",
        choices=("lock", "local"),
        default="lock",
        help="lock: the base of containers/images.lock (default); local: make one here with "
        "debootstrap + docker import ([local_base], no registry needed; needs root)",
    )
    p.add_argument(
        "--skip-source-builds",
        metavar="NAMES",
        default=None,
        help="comma-separated packages of requirements-source.lock not to build, named in the "
        "image's labels (default: none; with --base local: [local_base] skip_source_builds)",
    )
    p.add_argument("--network", default=None, help="docker build --network (host, where the engine has no bridge)")
    p.add_argument(
        "--workdir",
        default="/var/tmp/grpo-suite-build",
        help="where a local base's root file system and a staged build context are made",
    )
    p.add_argument(
        "--from-commit",
        action="store_true",
        help="staged builds (--base local, --skip-source-builds): take the context from HEAD (git archive), not the working tree: the image is "
        "exactly the commit its revision label names",
    )
    p.add_argument(
        "--ca-certificates",
        metavar="PEM",
        action="append",
        default=None,
        help="with --base local: a CA certificate the build machine's network needs (a TLS proxy "
        "in front of PyPI), trusted in the base and labelled; repeatable",
    )
    p.add_argument("--rebuild-base", action="store_true", help="make the local base again even if it exists")
    p.add_argument(
        "--record",
        metavar="JSON",
        default=None,
        help="after a staged build, write its times, image size and layers (docker history) here",
    )
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("versions", help="print the table of pinned versions per generation")
    p.add_argument("--update", metavar="DOC", help="rewrite the table between the markers in DOC")
    p.set_defaults(func=cmd_versions)

    p = sub.add_parser("tag", help="print the image tag the checkout builds for a generation")
    p.add_argument("generation")
    p.set_defaults(func=cmd_tag)


def register(subparsers: argparse._SubParsersAction) -> None:
    """`grpo-suite image ...` (for suite/cli.py's STAGE_CLIS)."""
    p = subparsers.add_parser("image", help="container images per GPU generation: lock, build, versions")
    add_commands(p.add_subparsers(dest="image_command", metavar="COMMAND", required=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suite.containers", description=__doc__.split("\n")[0])
    add_commands(parser.add_subparsers(dest="image_command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"suite.containers: error: {exc}", file=sys.stderr)
        return 2
