"""The table of pinned versions per generation, read from the lockfiles (docs/containers.md embeds its
output; a test keeps the two equal)."""

from __future__ import annotations

from pathlib import Path

from suite.containers.images import read_images_lock
from suite.containers.lock import pinned_versions
from suite.containers.settings import IMAGES_LOCK, generations, load_settings
from suite.packages import PACKAGES

BEGIN = "<!-- versions-table:begin (python -m suite.containers versions) -->"
END = "<!-- versions-table:end -->"


def versions_table(root: Path, packages: tuple[str, ...] = PACKAGES) -> str:
    """Markdown: one row per package (suite.packages.PACKAGES by default), one column per generation, then the
    build settings rows."""
    gens = generations(root)
    settings = {g: load_settings(g, root) for g in gens}
    pins = {g: pinned_versions(settings[g]) for g in gens}
    images = read_images_lock(root / IMAGES_LOCK)
    rows = [["package", *gens], ["---", *(["---"] * len(gens))]]
    for p in packages:
        rows.append([p, *(pins[g].get(p, "-") for g in gens)])
    rows.append(["packages in lock", *(str(len(pins[g])) for g in gens)])
    rows.append(["compute capability", *(str(settings[g].gpu.get("compute_capability", "?")) for g in gens)])
    rows.append(["TORCH_CUDA_ARCH_LIST", *(str(settings[g].build["torch_cuda_arch_list"]) for g in gens)])
    rows.append(["base image", *(f"`{settings[g].build['base_image']}`" for g in gens)])
    rows.append(["base digest", *(_short(images.get(str(settings[g].build["base_image"]))) for g in gens)])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n"


def _short(digest: str | None) -> str:
    if not digest or not digest.startswith("sha256:"):
        return digest or "missing"
    return digest[:19]


def embed(doc: str, table: str) -> str:
    """Replace the text between the markers of `doc` with `table`."""
    try:
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise ValueError(f"markers {BEGIN!r} / {END!r} not found") from None
    return f"{head}{BEGIN}\n{table}{END}{tail}"
