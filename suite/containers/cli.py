"""`grpo-suite image ...` / `python -m suite.containers ...`: lock, lock-images, render, build, versions.

Thin: every sub-command calls one function of `suite.containers.*` and prints what it did.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from suite.errors import InputError


def _repo() -> Path:
    from suite.containers.settings import containers_root

    return containers_root().parent


def _gens(names: list[str]) -> list[str]:
    from suite.containers.settings import generations, load_settings

    if not names or names == ["all"]:
        return generations()
    for g in names:
        load_settings(g)  # validates the name with a clear message
    return names


def cmd_lock(args: argparse.Namespace) -> int:
    from suite.containers.build import render_all
    from suite.containers.lock import lock_generation

    repo = _repo()
    for gen in _gens(args.generation):
        main, src, nodeps = lock_generation(gen, repo=repo, uv=args.uv)
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
            print(f"stale: {p.relative_to(root.parent)} (run `python -m suite.containers render`)",
                  file=sys.stderr)
        return 1 if stale else 0
    for p in files:
        print(p.relative_to(root.parent))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from suite.containers.build import build_command, format_command
    from suite.containers.settings import load_settings

    repo = _repo()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    for gen in _gens(args.generation):
        cmd = build_command(load_settings(gen), repo=repo, allow_unpinned=args.allow_unpinned,
                            git_commit=commit.stdout.strip() or "unknown", docker=args.docker)
        print(format_command(cmd), flush=True)
        if args.dry_run:
            continue
        rc = subprocess.run(cmd, cwd=repo).returncode
        if rc != 0:
            return rc
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
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("lock-images", help="look up base image digests into containers/images.lock")
    p.add_argument("--refresh", action="store_true", help="look up pinned tags again too")
    p.set_defaults(func=cmd_lock_images)

    p = sub.add_parser("render", help="write containers/<gen>/Dockerfile from the template")
    p.add_argument("--check", action="store_true", help="exit 1 if a committed file is stale")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("build", help="docker build the image of each generation")
    p.add_argument("generation", nargs="*", help="generations (default: all)")
    p.add_argument("--allow-unpinned", action="store_true",
                   help="build from a base tag whose digest is pending in containers/images.lock")
    p.add_argument("--dry-run", action="store_true", help="print the docker build command only")
    p.add_argument("--docker", default="docker", help="docker executable")
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
