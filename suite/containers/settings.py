"""Per-generation container settings: `containers/defaults.toml` overlaid by `containers/<gen>/settings.toml`."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite.errors import InputError

DEFAULTS_FILE = "defaults.toml"
SETTINGS_FILE = "settings.toml"
REQUIREMENTS_IN = "requirements.in"
LOCK_FILE = "requirements.lock"
SOURCE_LOCK_FILE = "requirements-source.lock"
NODEPS_LOCK_FILE = "requirements-nodeps.lock"
DOCKERFILE = "Dockerfile"
TEMPLATE = "Dockerfile.in"
IMAGES_LOCK = "images.lock"

TABLES = ("gpu", "lock", "build", "env", "run", "local_base")
_REQUIRED_BUILD = ("base_image", "torch_cuda_arch_list", "flash_attn_cuda_archs", "nvte_cuda_archs")


def containers_root() -> Path:
    """The checkout's `containers/` folder. Image tooling works on sources, so it needs a checkout (or
    `GRPO_SUITE_CONTAINERS` pointing at one); an installed wheel has no such folder."""
    env = os.environ.get("GRPO_SUITE_CONTAINERS")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "containers"
    if not (root / DEFAULTS_FILE).is_file():
        raise InputError(
            f"no {DEFAULTS_FILE} in {root}: run from a grpo-suite checkout or set "
            "GRPO_SUITE_CONTAINERS to its containers/ folder"
        )
    return root


# Not a GPU generation: the small image of the container test (containers/smoke/settings.toml), built from the
# same template and lock steps on a local base. Locked with the generations, never rendered or committed as a
# Dockerfile, never in the versions table.
SMOKE = "smoke"


def generations(root: Path | None = None) -> list[str]:
    """The GPU generations with container sources (the keys of suite/gpus.py that have a folder here)."""
    root = root or containers_root()
    return sorted(p.parent.name for p in root.glob(f"*/{SETTINGS_FILE}") if p.parent.name != SMOKE)


@dataclass(frozen=True)
class GenSettings:
    gen: str
    dir: Path
    gpu: dict[str, Any]
    lock: dict[str, Any]
    build: dict[str, Any]
    env: dict[str, str]
    run: dict[str, Any] = field(default_factory=dict)
    # `[local_base]`: how `image build --base local` makes a base on the build machine (localbase.py).
    local_base: dict[str, Any] = field(default_factory=dict)

    @property
    def lockfile(self) -> Path:
        return self.dir / LOCK_FILE

    @property
    def source_lockfile(self) -> Path:
        return self.dir / SOURCE_LOCK_FILE

    @property
    def nodeps_lockfile(self) -> Path:
        return self.dir / NODEPS_LOCK_FILE

    @property
    def lockfiles(self) -> tuple[Path, Path, Path]:
        """Every lock part, in the Dockerfile's install order."""
        return self.lockfile, self.source_lockfile, self.nodeps_lockfile

    @property
    def requirements_in(self) -> Path:
        return self.dir / REQUIREMENTS_IN

    @property
    def dockerfile(self) -> Path:
        return self.dir / DOCKERFILE


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("file not found", source=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({exc})", source=str(path)) from None


def merge(defaults: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Table-by-table overlay: a generation replaces single keys, not whole tables."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in defaults.items()}
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def load_settings(gen: str, root: Path | None = None) -> GenSettings:
    root = root or containers_root()
    path = root / gen / SETTINGS_FILE
    if not path.is_file():
        raise InputError(
            f"no container settings for generation {gen!r} ({path} missing); "
            f"known: {', '.join(generations(root)) or 'none'}",
            field="generation",
        )
    data = merge(_read_toml(root / DEFAULTS_FILE), _read_toml(path))
    unknown = sorted(set(data) - set(TABLES))
    if unknown:
        raise InputError(f"unknown table(s) {', '.join(unknown)}; allowed: {', '.join(TABLES)}", source=str(path))
    build = data.get("build", {})
    missing = [k for k in _REQUIRED_BUILD if not build.get(k)]
    if missing:
        raise InputError(f"missing build key(s) {', '.join(missing)}", source=str(path), field="build")
    env = {str(k): str(v) for k, v in data.get("env", {}).items()}
    return GenSettings(
        gen=gen,
        dir=root / gen,
        gpu=data.get("gpu", {}),
        lock=data.get("lock", {}),
        build=build,
        env=env,
        run=data.get("run", {}),
        local_base=data.get("local_base", {}),
    )
