"""flake.nix parses and evaluates (dev shell, formatter, checks) against the local nixpkgs stand-in in
tests/nix/nixpkgs-stub, offline, with whatever `nix` is installed (Debian's nix-bin 2.8 in CI)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NIX = shutil.which("nix")
pytestmark = pytest.mark.skipif(NIX is None, reason="nix not installed (apt-get install nix-bin)")

FLAGS = ["--extra-experimental-features", "nix-command flakes"]


def _nix(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # Offline, no substituters, no writes into the source tree: CI can evaluate but never fetch.
    env = {**os.environ, "NIX_CONFIG": "substituters =\nsandbox = false\n"}
    return subprocess.run([str(NIX), *FLAGS, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def flake_dir(tmp_path: Path) -> Path:
    """The flake and the stand-in copied out of the checkout: a git checkout would hide untracked files
    from Nix, and the check must not depend on what happens to be committed."""
    d = tmp_path / "flake"
    d.mkdir()
    for name in ("flake.nix", "flake.lock"):
        shutil.copy(REPO / name, d / name)
    shutil.copytree(REPO / "tests" / "nix" / "nixpkgs-stub", d / "stub")
    return d


def _check(d: Path) -> subprocess.CompletedProcess:
    return _nix(
        [
            "flake",
            "check",
            "--no-build",
            "--no-write-lock-file",
            "--override-input",
            "nixpkgs",
            f"path:{d / 'stub'}",
            f"path:{d}",
        ],
        cwd=d,
    )


def test_flake_lock_pins_nixpkgs_by_rev_and_hash() -> None:
    lock = json.loads((REPO / "flake.lock").read_text())
    node = lock["nodes"][lock["nodes"]["root"]["inputs"]["nixpkgs"]]["locked"]
    assert len(node["rev"]) == 40 and node["narHash"].startswith("sha256-")


def test_flake_check_evaluates_against_the_stand_in(flake_dir: Path) -> None:
    proc = _check(flake_dir)
    assert proc.returncode == 0, proc.stderr
    shown = _nix(
        [
            "flake",
            "show",
            "--json",
            "--no-write-lock-file",
            "--override-input",
            "nixpkgs",
            f"path:{flake_dir / 'stub'}",
            f"path:{flake_dir}",
        ],
        cwd=flake_dir,
    )
    assert shown.returncode == 0, shown.stderr
    outputs = json.loads(shown.stdout)
    assert set(outputs) >= {"devShells", "formatter", "checks"}
    assert set(outputs["checks"]["x86_64-linux"]) == {"tests", "lint"}


def test_flake_check_fails_on_a_broken_flake(flake_dir: Path) -> None:
    nix = flake_dir / "flake.nix"
    nix.write_text(nix.read_text().replace("pkgs.skopeo", "pkgs.skopoe"))
    proc = _check(flake_dir)
    assert proc.returncode != 0
    assert "skopoe" in proc.stderr
    nix.write_text("{ outputs = { self }: { checks = 1 +; }; }")
    assert _check(flake_dir).returncode != 0
