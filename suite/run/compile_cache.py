"""vLLM's torch.compile cache as one portable archive: what a fresh host (a CI runner, a new container) unpacks
before its first cell, so that vLLM loads its compiled graphs instead of compiling them again (at 7B on an H200:
torch.compile 36 s cold, 7 s on a hit).

The cells of one host already share the cache (`cellenv.vllm_defaults`: VLLM_CACHE_ROOT under the suite's cache).
vLLM keys each entry by a hash of the model's shape, its compilation settings and its own and torch's code, so an
entry made by other software is never hit, only carried. The archive's manifest records the versions it was made
with; `import_cache` refuses an archive whose vLLM or torch differs from this host's before anyone waits on a
start-up that cannot hit. One writer (`export_cache`) and one reader (`read_manifest`) of the format."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from suite.errors import InputError

MANIFEST = "grpo-suite-compile-cache.json"
SUBDIR = "torch_compile_cache"  # what vLLM writes under VLLM_CACHE_ROOT
COMPARED = ("vllm", "torch")  # versions an entry's hash depends on
SCHEMA = 1
# tarfile's "data" filter (Python 3.11.4+); the checks above already refuse what it would, on older 3.11s too
_DATA_FILTER: dict[str, str] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
_FILTER_ERROR: type[Exception] | tuple[()] = getattr(tarfile, "FilterError", ())


@dataclass(frozen=True)
class CacheManifest:
    versions: dict[str, str | None]  # COMPARED packages where the cache was made (None: not installed)
    entries: list[str]  # top-level entries under torch_compile_cache/ (vLLM's hash directories)
    files: int
    bytes: int
    created_at: str
    gpu: str | None = None  # the GPU it was compiled on, for the reader (not compared: one arch, many names)
    schema: int = SCHEMA
    extra: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        made = ", ".join(f"{k} {v or 'absent'}" for k, v in self.versions.items())
        return (
            f"{len(self.entries)} entr{'y' if len(self.entries) == 1 else 'ies'}, {self.files} files, "
            f"{self.bytes / 2**20:.1f} MiB; made {self.created_at} with {made}"
            + (f" on {self.gpu}" if self.gpu else "")
        )


@dataclass(frozen=True)
class ImportSummary:
    manifest: CacheManifest
    added: int  # files written
    kept: int  # files already there (never overwritten: the host's own entries win)


def default_cache_dir() -> Path:
    """Where the suite's cells point vLLM's cache (VLLM_CACHE_ROOT)."""
    from suite.run.cellenv import vllm_defaults

    return Path(vllm_defaults()["VLLM_CACHE_ROOT"])


def here_versions() -> dict[str, str | None]:
    from suite.results.provenance import package_versions

    found = package_versions(COMPARED)
    return {k: found.get(k) for k in COMPARED}


def scan(cache_dir: Path, versions: Mapping[str, str | None], gpu: str | None = None) -> CacheManifest:
    root = cache_dir / SUBDIR
    if not root.is_dir():
        raise InputError(f"{root}: no vLLM compile cache there (no cell has compiled on this host yet)", field="cache")
    files = [p for p in root.rglob("*") if p.is_file()]
    return CacheManifest(
        versions={k: versions.get(k) for k in COMPARED},
        entries=sorted(p.name for p in root.iterdir()),
        files=len(files),
        bytes=sum(p.stat().st_size for p in files),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        gpu=gpu,
    )


def export_cache(
    cache_dir: Path, out: Path, versions: Mapping[str, str | None], gpu: str | None = None
) -> CacheManifest:
    """Write `out` (.tar.xz): the manifest first, then torch_compile_cache/ as it is."""
    manifest = scan(cache_dir, versions, gpu)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(asdict(manifest), indent=2).encode()
    with tarfile.open(out, "w:xz") as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime = len(data), int(datetime.now(UTC).timestamp())
        tar.addfile(info, io.BytesIO(data))
        tar.add(cache_dir / SUBDIR, arcname=SUBDIR)
    return manifest


def _manifest_of(tar: tarfile.TarFile, archive: Path) -> CacheManifest:
    try:
        f = tar.extractfile(MANIFEST)
    except KeyError:
        f = None
    if f is None:
        raise InputError(
            f"{archive}: not a compile-cache archive (no {MANIFEST}; make one with `grpo-suite cache export`)"
        )
    raw = json.loads(f.read())
    if raw.get("schema") != SCHEMA:
        raise InputError(f"{archive}: manifest schema {raw.get('schema')!r}, this suite reads {SCHEMA}", field="schema")
    return CacheManifest(**raw)


def read_manifest(archive: Path) -> CacheManifest:
    with tarfile.open(archive, "r:*") as tar:
        return _manifest_of(tar, archive)


def mismatches(manifest: CacheManifest, here: Mapping[str, str | None]) -> list[str]:
    """'vllm 0.25.1 (here 0.26.0)' for each compared package whose version differs."""
    return [
        f"{k} {manifest.versions.get(k) or 'absent'} (here {here.get(k) or 'absent'})"
        for k in COMPARED
        if manifest.versions.get(k) != here.get(k)
    ]


def import_cache(
    archive: Path, cache_dir: Path, here: Mapping[str, str | None], *, force: bool = False
) -> ImportSummary:
    """Unpack the archive's entries into `cache_dir`, keeping every file already there. Refused (InputError,
    nothing written) when its vLLM or torch is not this host's, unless `force`."""
    with tarfile.open(archive, "r:*") as tar:
        manifest = _manifest_of(tar, archive)
        differ = mismatches(manifest, here)
        if differ and not force:
            raise InputError(
                f"{archive}: made with {', '.join(differ)}: vLLM would never hit its entries "
                "(pass --force to unpack it anyway)",
                field="versions",
            )
        added = kept = 0
        for m in tar.getmembers():
            if m.name == MANIFEST:
                continue
            parts = Path(m.name).parts
            if not parts or parts[0] != SUBDIR or ".." in parts or not (m.isfile() or m.isdir()):
                raise InputError(f"{archive}: member {m.name!r} is not a file under {SUBDIR}/", field="archive")
            target = cache_dir / m.name
            if m.isfile() and target.exists():
                kept += 1
                continue
            try:
                tar.extract(m, cache_dir, **_DATA_FILTER)  # also refuses absolute paths and links out of the tree
            except _FILTER_ERROR as exc:
                raise InputError(f"{archive}: member {m.name!r} refused: {exc}", field="archive") from exc
            added += m.isfile()
    return ImportSummary(manifest, added, kept)
