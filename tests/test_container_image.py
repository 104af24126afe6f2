"""The container template built for real: the smoke image (containers/smoke/settings.toml) from the same
Dockerfile template and lock steps as the GPU images, on a local base, then `grpo-suite plan` and `pip check`
inside it. A broken template, lock step or runtime stage fails here in minutes instead of in an hour-long GPU
image build.

It needs a Docker engine, root (debootstrap, chroot) and the network (the Ubuntu archive, PyPI), and takes
minutes, so it runs only when asked: GRPO_SUITE_CONTAINER_TEST=1, which .ci/run sets after starting an engine.
GRPO_SUITE_DOCKER_NETWORK (e.g. host, for an engine without a bridge) and GRPO_SUITE_CA_CERTIFICATES (PEM files
separated by os.pathsep: the CAs of a TLS-intercepting proxy) pass through to `image build`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suite.containers.lock import lock_sha256, normalize, pinned_versions
from suite.containers.settings import SMOKE, containers_root, load_settings

REPO = containers_root().parent
TIMEOUT_S = int(os.environ.get("GRPO_SUITE_CONTAINER_TEST_TIMEOUT", "1800"))


def _why_not() -> str | None:
    if os.environ.get("GRPO_SUITE_CONTAINER_TEST") != "1":
        return (
            "builds an image from the Ubuntu archive and PyPI (minutes, network, root): set "
            "GRPO_SUITE_CONTAINER_TEST=1 to run it (.ci/run does after starting a Docker engine)"
        )
    if shutil.which("docker") is None:
        return "no docker client on PATH: the container test needs a Docker engine"
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "no Docker engine: `docker info` did not answer within 30 s"
    if info.returncode != 0 or not info.stdout.strip():
        return f"no Docker engine answers `docker info`: {(info.stderr or info.stdout).strip()[:200]}"
    if os.geteuid() != 0:
        return "making the local base needs root (debootstrap, chroot)"
    if shutil.which("debootstrap") is None:
        return "debootstrap not installed (apt-get install debootstrap)"
    return None


WHY_NOT = _why_not()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")]


def _docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def test_smoke_image_builds_from_the_template_and_plans(tmp_path: Path) -> None:
    workdir = Path(os.environ.get("GRPO_SUITE_CONTAINER_TEST_WORKDIR", "/var/tmp/grpo-suite-container-test"))
    record_path = tmp_path / "record.json"
    cmd = [
        sys.executable,
        "-m",
        "suite.containers",
        "build",
        SMOKE,
        "--base",
        "local",
        "--workdir",
        str(workdir),
        "--record",
        str(record_path),
    ]
    if os.environ.get("GRPO_SUITE_DOCKER_NETWORK"):
        cmd += ["--network", os.environ["GRPO_SUITE_DOCKER_NETWORK"]]
    for pem in filter(None, os.environ.get("GRPO_SUITE_CA_CERTIFICATES", "").split(os.pathsep)):
        cmd += ["--ca-certificates", pem]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"image build failed ({proc.returncode}):\n{log[-6000:]}"
    print(f"smoke image built in {time.monotonic() - start:.0f} s")
    record = json.loads(record_path.read_text())
    tag = record["tag"]
    try:
        labels = record["labels"]
        assert labels["dev.grpo-suite.generation"] == SMOKE
        assert labels["dev.grpo-suite.lock-sha256"] == lock_sha256(load_settings(SMOKE))
        assert labels["org.opencontainers.image.base.digest"].startswith("local:sha256:")
        assert labels["org.opencontainers.image.base.name"].startswith("grpo-suite-base:noble-")
        assert labels["dev.grpo-suite.skipped-source-builds"] == ""

        # The matrix the installed package carries (package data), planned as on the host, no network.
        matrix = "$(python -c 'import os, suite; print(os.path.dirname(suite.__file__))')/matrices/h100.toml"
        plan = f"grpo-suite plan {matrix} --no-verl-check --predict-memory --out /tmp/runs"
        run = _docker("run", "--rm", "--network", "none", "--user", "4242:4242", tag, "bash", "-c", plan)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        host = subprocess.run(
            [
                sys.executable,
                "-m",
                "suite",
                "plan",
                "suite/matrices/h100.toml",
                "--no-verl-check",
                "--predict-memory",
                "--out",
                str(tmp_path / "runs"),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert host.returncode == 0, host.stderr
        # The same cells with the same verdicts as the suite outside the image.
        assert run.stdout.strip().splitlines()[-1] == host.stdout.strip().splitlines()[-1]
        assert run.stdout.strip().splitlines()[-1].endswith(" cells")

        # The build's own `pip check` passed before the deps-free step; in the finished image only the packages
        # installed without their declared dependencies (lock.no_deps_packages) may have any to report.
        check = _docker("run", "--rm", "--network", "none", tag, "pip", "check")
        nodeps = {normalize(p.split("==")[0]) for p in load_settings(SMOKE).lock["no_deps_packages"]}
        lines = check.stdout.strip().splitlines()
        assert lines and all(normalize(line.split()[0]) in nodeps for line in lines), check.stdout + check.stderr
        assert "Step" in log and "No broken requirements found." in log  # the build's pip check
        # All three lock steps landed: antlr4 (built from its sdist), hydra (wheel), Megatron-Bridge (deps-free).
        probe = (
            "import antlr4, hydra; from importlib.metadata import version; "
            "print(version('antlr4-python3-runtime'), version('megatron-bridge'))"
        )
        env = _docker(
            "run",
            "--rm",
            "--network",
            "none",
            tag,
            "bash",
            "-c",
            f'echo "$GRPO_SUITE_IMAGE|$(id -u)|$(python -c "{probe}")"',
        )
        image, uid, versions = env.stdout.strip().split("|")
        assert image == tag and uid == "1001"
        pins = pinned_versions(load_settings(SMOKE))
        assert versions == f"{pins['antlr4-python3-runtime']} {pins['megatron-bridge']}", env.stderr
    finally:
        _docker("rmi", "--force", tag, f"grpo-suite:{SMOKE}-local")
