"""Compiled kernels as one portable archive: what a fresh host (a CI runner, a new container) unpacks before its
first cell, so that its cells load what an earlier host compiled instead of compiling it again. Up to four parts
(PARTS), each a directory of the archive:

- `torch_compile_cache/`: vLLM's torch.compile cache (7B on an H200: torch.compile 36 s cold, 7 s on a hit);
- `modelinfos/`: vLLM's model-class inspection cache (one JSON per model class, keyed by the hash of vLLM's model
  file). On a miss vLLM imports itself again in a subprocess to inspect the class before its engine starts: in
  the committed logs the first cell of every host spent 14-26 s between vLLM's `Enabling cumem allocator` and
  `Resolved architecture`, a host's second cell 0 s;
- `torchinductor/` and `triton/`: the trainer's torch.compile (inductor) and Triton kernels. transformers
  compiles flex attention in the trainer: on one H100 a 7B flex cell's first step took 123.5 s on a fresh host and
  97.5 s with these warm (old log-prob 37.5 -> 18.5 s, update 37.0 -> 31.1 s).

The cells of one host already share them (`cellenv.vllm_defaults`, `cellenv.kernel_cache_defaults`: all under the
suite's cache). Each cache keys its entries by hashes over the code of the packages it depends on
(`Part.packages`), so an entry made by other software is never hit, only carried. The manifest records those
versions; `import_cache` refuses an archive whose versions differ from this host's before anyone waits on a
start-up that cannot hit. One writer (`export_cache`) and one reader (`read_manifest`, schemas 1 to 3)."""

from __future__ import annotations

import copy
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Literal

from suite.errors import InputError

MANIFEST = "grpo-suite-compile-cache.json"
SUBDIR = "torch_compile_cache"  # what vLLM writes under VLLM_CACHE_ROOT
MODELINFOS = "modelinfos"  # vLLM's model-class inspection cache, also under VLLM_CACHE_ROOT
SCHEMA = 3
READS = (1, 2, 3)  # schema 1: vLLM's part only, versions of vllm and torch; schema 2: no modelinfos part
# tarfile's "data" filter (Python 3.11.4+); the checks above already refuse what it would, on older 3.11s too
_DATA_FILTER: dict[str, str] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
_FILTER_ERROR: type[Exception] | tuple[()] = getattr(tarfile, "FilterError", ())


def _vllm_root() -> Path:
    from suite.run.cellenv import vllm_defaults

    return Path(vllm_defaults()["VLLM_CACHE_ROOT"])


def _kernel_dir(var: str) -> Callable[[], Path]:
    def where() -> Path:
        from suite.run.cellenv import kernel_cache_defaults

        return Path(kernel_cache_defaults()[var])

    return where


@dataclass(frozen=True)
class Part:
    """One cache the archive can hold."""

    name: str  # its directory in the archive
    label: str  # how describe() and messages name it
    what: str  # what is missing when a host has none
    packages: tuple[str, ...]  # the versions its entries' keys depend on: recorded, and compared on import
    default: Callable[[], Path]  # the directory the cells use (the one a caller names, before `within`)
    within: str = ""  # the part's files are under <directory>/<within>
    counted: Literal["entries", "files"] = "files"  # what describe() counts: vLLM's entries are compiled shapes
    lists_entries: bool = True  # `cache show` lists its top-level entries (not Triton's: a hash per kernel)

    def root(self, directory: Path) -> Path:
        return directory / self.within if self.within else directory

    def count(self, held: PartManifest) -> str:
        """'vLLM 2 entries', 'triton 30 files'."""
        if self.counted == "entries":
            return f"{self.label} {_n(len(held.entries), 'entry', 'entries')}"
        return f"{self.label} {_n(held.files, 'file', 'files')}"


PARTS: tuple[Part, ...] = (
    Part(SUBDIR, "vLLM", "vLLM compile cache", ("vllm", "torch"), _vllm_root, within=SUBDIR, counted="entries"),
    Part(MODELINFOS, "vLLM model info", "vLLM model-info cache", ("vllm",), _vllm_root, within=MODELINFOS),
    Part("torchinductor", "inductor", "inductor cache", ("torch", "triton"), _kernel_dir("TORCHINDUCTOR_CACHE_DIR")),
    Part("triton", "triton", "Triton cache", ("triton",), _kernel_dir("TRITON_CACHE_DIR"), lists_entries=False),
)
PART: dict[str, Part] = {p.name: p for p in PARTS}


def _packages(names: Iterable[str]) -> tuple[str, ...]:
    """The packages the named parts' entries depend on, in PARTS order."""
    held = set(names)
    return tuple(dict.fromkeys(k for p in PARTS if p.name in held for k in p.packages))


COMPARED: tuple[str, ...] = _packages(PART)  # every part's packages


def _n(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


@dataclass(frozen=True)
class PartManifest:
    entries: list[str]  # top-level entries of the part's directory
    files: int
    bytes: int

    def describe(self) -> str:
        return f"{_n(len(self.entries), 'entry', 'entries')}, {_n(self.files, 'file', 'files')}, {_mib(self.bytes)}"


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


@dataclass(frozen=True)
class CacheManifest:
    versions: dict[str, str | None]  # the packages of the parts it holds, where it was made (None: not installed)
    entries: list[str]  # vLLM's entries (its hash directories under torch_compile_cache/); [] without that part
    files: int  # all parts together
    bytes: int  # all parts together
    created_at: str
    gpu: str | None = None  # the GPU it was compiled on, for the reader (not compared: one arch, many names)
    schema: int = SCHEMA
    extra: dict[str, str] = field(default_factory=dict)
    parts: dict[str, PartManifest] = field(default_factory=dict)  # by archive name, in PARTS order

    def compared(self) -> tuple[str, ...]:
        """The packages whose versions decide whether this host can hit the parts it holds."""
        return _packages(self.parts)

    def describe(self) -> str:
        held = ", ".join(PART[name].count(p) for name, p in self.parts.items())
        made = ", ".join(f"{k} {v or 'absent'}" for k, v in self.versions.items())
        return (
            f"{held or 'nothing'}: {_n(self.files, 'file', 'files')}, {_mib(self.bytes)}; made {self.created_at} "
            f"with {made}" + (f" on {self.gpu}" if self.gpu else "")
        )


@dataclass(frozen=True)
class PartCounts:
    into: Path  # the part's directory on this host
    added: int
    kept: int


@dataclass(frozen=True)
class ImportSummary:
    manifest: CacheManifest
    added: int  # files written, all parts
    kept: int  # files already there (never overwritten: the host's own entries win)
    parts: dict[str, PartCounts] = field(default_factory=dict)  # by archive name


def default_cache_dir() -> Path:
    """Where the suite's cells point vLLM's cache (VLLM_CACHE_ROOT)."""
    return _vllm_root()


def default_dirs() -> dict[str, Path]:
    """Each part's directory as the cells use it, by archive name (vLLM's: VLLM_CACHE_ROOT)."""
    return {p.name: p.default() for p in PARTS}


def part_dirs(
    cache_dir: Path | None, inductor_dir: Path | None = None, triton_dir: Path | None = None
) -> dict[str, Path]:
    """The directories given, by archive name; a part given None is left out. vLLM's two parts share its
    directory (VLLM_CACHE_ROOT)."""
    given = {SUBDIR: cache_dir, MODELINFOS: cache_dir, "torchinductor": inductor_dir, "triton": triton_dir}
    return {name: d for name, d in given.items() if d is not None}


def here_versions() -> dict[str, str | None]:
    from suite.results.provenance import package_versions

    found = package_versions(COMPARED)
    return {k: found.get(k) for k in COMPARED}


def _walk(root: Path) -> Iterator[tuple[Path, bool]]:
    """(path, is a directory) under `root`, parents first: real directories and regular files only (a link or a
    socket would be refused on import)."""
    for here, dirs, files in os.walk(root):
        dirs.sort()
        base = Path(here)
        for d in dirs:
            if not (base / d).is_symlink():
                yield base / d, True
        for f in sorted(files):
            p = base / f
            if p.is_file() and not p.is_symlink():
                yield p, False


def _scan(dirs: Mapping[str, Path]) -> tuple[dict[str, PartManifest], list[str]]:
    parts: dict[str, PartManifest] = {}
    missing = []
    for part in PARTS:
        if part.name not in dirs:
            continue
        root = part.root(dirs[part.name])
        found = list(_walk(root)) if root.is_dir() else []
        sizes = [p.stat().st_size for p, is_dir in found if not is_dir]
        if not sizes:  # nothing to carry, and its packages would be compared for nothing
            missing.append(f"{root}: no {part.what} there")
            continue
        entries = sorted({p.relative_to(root).parts[0] for p, _ in found})
        parts[part.name] = PartManifest(entries, len(sizes), sum(sizes))
    return parts, missing


def scan(
    cache_dir: Path | None,
    versions: Mapping[str, str | None],
    gpu: str | None = None,
    *,
    inductor_dir: Path | None = None,
    triton_dir: Path | None = None,
) -> CacheManifest:
    """The manifest of what `export_cache` would pack from these directories (`cache_dir`: vLLM's, the one holding
    torch_compile_cache/). A part whose directory is None, missing or without files is left out; none at all is
    an InputError."""
    parts, missing = _scan(part_dirs(cache_dir, inductor_dir, triton_dir))
    if not parts:
        raise InputError(
            "; ".join(missing or ["no cache directory given"]) + " (no cell has compiled on this host yet)",
            field="cache",
        )
    return CacheManifest(
        versions={k: versions.get(k) for k in _packages(parts)},
        entries=parts[SUBDIR].entries if SUBDIR in parts else [],
        files=sum(p.files for p in parts.values()),
        bytes=sum(p.bytes for p in parts.values()),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        gpu=gpu,
        parts=parts,
    )


def export_cache(
    cache_dir: Path | None,
    out: Path,
    versions: Mapping[str, str | None],
    gpu: str | None = None,
    *,
    inductor_dir: Path | None = None,
    triton_dir: Path | None = None,
) -> CacheManifest:
    """Write `out` (.tar.xz): the manifest first, then each part found (`scan`) under its archive name."""
    manifest = scan(cache_dir, versions, gpu, inductor_dir=inductor_dir, triton_dir=triton_dir)
    dirs = part_dirs(cache_dir, inductor_dir, triton_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"schema": manifest.schema} | asdict(manifest), indent=2).encode()
    with tarfile.open(out, "w:xz") as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime = len(data), int(datetime.now(UTC).timestamp())
        tar.addfile(info, io.BytesIO(data))
        for name in manifest.parts:
            root = PART[name].root(dirs[name])
            top = tarfile.TarInfo(name)  # not tar.add: a root that is a link to a directory must unpack as one
            top.type, top.mode, top.mtime = tarfile.DIRTYPE, 0o755, int(root.stat().st_mtime)
            tar.addfile(top)
            for path, is_dir in _walk(root):
                arcname = f"{name}/{path.relative_to(root).as_posix()}"
                try:
                    if is_dir:
                        tar.add(path, arcname=arcname, recursive=False)
                        continue
                    # Read whole before the header is written: a cell still compiling may replace or remove a
                    # file meanwhile, and a file that shrank mid-copy would leave a broken archive.
                    content = path.read_bytes()
                    member = tar.gettarinfo(path, arcname)
                except FileNotFoundError:
                    continue  # removed since the scan (a compiler's temporary file): the manifest counted it
                member.size = len(content)
                tar.addfile(member, io.BytesIO(content))
    return manifest


def _parse(raw: object, archive: Path) -> CacheManifest:
    schema = raw.get("schema") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or schema not in READS:
        raise InputError(
            f"{archive}: manifest schema {schema!r}, this suite reads {', '.join(map(str, READS))}", field="schema"
        )
    try:
        if schema == 1:
            part = PartManifest(list(raw["entries"]), int(raw["files"]), int(raw["bytes"]))
            return CacheManifest(**raw, parts={SUBDIR: part})
        held = raw["parts"]
        unknown = sorted(set(held) - set(PART))
        if unknown:
            raise InputError(f"{archive}: manifest names unknown parts {unknown}", field="manifest")
        parts = {p.name: PartManifest(**held[p.name]) for p in PARTS if p.name in held}
        return CacheManifest(**{**raw, "parts": parts})
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{archive}: malformed manifest ({exc!r})", field="manifest") from exc


def _manifest_of(tar: tarfile.TarFile, archive: Path) -> CacheManifest:
    try:
        f = tar.extractfile(MANIFEST)
    except KeyError:
        f = None
    if f is None:
        raise InputError(
            f"{archive}: not a compile-cache archive (no {MANIFEST}; make one with `grpo-suite cache export`)"
        )
    try:
        raw = json.loads(f.read())
    except ValueError as exc:
        raise InputError(f"{archive}: malformed manifest ({exc})", field="manifest") from exc
    return _parse(raw, archive)


def read_manifest(archive: Path) -> CacheManifest:
    with tarfile.open(archive, "r:*") as tar:
        return _manifest_of(tar, archive)


def _differing(manifest: CacheManifest, here: Mapping[str, str | None]) -> list[str]:
    return [k for k in manifest.compared() if manifest.versions.get(k) != here.get(k)]


def mismatches(manifest: CacheManifest, here: Mapping[str, str | None]) -> list[str]:
    """'vllm 0.25.1 (here 0.26.0)' for each package the archive's parts depend on whose version differs (a
    schema-1 archive, vLLM's part only: vllm and torch)."""
    return [
        f"{k} {manifest.versions.get(k) or 'absent'} (here {here.get(k) or 'absent'})"
        for k in _differing(manifest, here)
    ]


def import_cache(
    archive: Path,
    cache_dir: Path | None,
    here: Mapping[str, str | None],
    *,
    force: bool = False,
    inductor_dir: Path | None = None,
    triton_dir: Path | None = None,
) -> ImportSummary:
    """Unpack each part of the archive into its directory (`cache_dir`: vLLM's, the one holding
    torch_compile_cache/), keeping every file already there. Refused (InputError, nothing written) when a package
    its parts depend on is not this host's version (unless `force`), when a part it holds has no directory given,
    or when a member is not a file or directory under a part the manifest lists."""
    dirs = part_dirs(cache_dir, inductor_dir, triton_dir)
    with tarfile.open(archive, "r:*") as tar:
        manifest = _manifest_of(tar, archive)
        differ = _differing(manifest, here)
        if differ and not force:
            blind = [PART[n].label for n in manifest.parts if set(PART[n].packages) & set(differ)]
            raise InputError(
                f"{archive}: made with {', '.join(mismatches(manifest, here))}: {' and '.join(blind)} would never "
                "hit its entries (pass --force to unpack it anyway)",
                field="versions",
            )
        nowhere = [f"{n}/" for n in manifest.parts if n not in dirs]
        if nowhere:
            raise InputError(f"{archive}: holds {', '.join(nowhere)} but no directory was given for it", field="cache")
        held = " or ".join(f"{n}/" for n in manifest.parts) or "a part"
        todo: list[tuple[tarfile.TarInfo, str, tuple[str, ...]]] = []
        for m in tar.getmembers():  # all checked before the first is written
            if m.name == MANIFEST:
                continue
            parts = PurePosixPath(m.name).parts
            if not parts or parts[0] not in manifest.parts or ".." in parts or not (m.isfile() or m.isdir()):
                raise InputError(f"{archive}: member {m.name!r} is not a file under {held}", field="archive")
            todo.append((m, parts[0], parts[1:]))
        counts = {n: [0, 0] for n in manifest.parts}
        for m, name, rel in todo:
            root = PART[name].root(dirs[name])
            if not rel:  # the part's own directory
                root.mkdir(parents=True, exist_ok=True)
                continue
            if m.isfile() and root.joinpath(*rel).exists():
                counts[name][1] += 1
                continue
            member = copy.copy(m)
            member.name = "/".join(rel)  # relative to the part's directory, which may be named otherwise here
            try:
                tar.extract(member, root, **_DATA_FILTER)  # also refuses absolute paths and links out of the tree
            except _FILTER_ERROR as exc:
                raise InputError(f"{archive}: member {m.name!r} refused: {exc}", field="archive") from exc
            counts[name][0] += m.isfile()
    by_part = {n: PartCounts(PART[n].root(dirs[n]), a, k) for n, (a, k) in counts.items()}
    return ImportSummary(
        manifest, sum(c.added for c in by_part.values()), sum(c.kept for c in by_part.values()), by_part
    )


@dataclass(frozen=True)
class MergeSummary:
    manifest: CacheManifest  # the merged archive's
    inputs: list[tuple[Path, ImportSummary]]  # each archive as it was unpacked, in the order given


def _agreed_versions(manifests: Sequence[tuple[Path, CacheManifest]]) -> dict[str, str | None]:
    """The versions every archive that depends on a package records for it; an InputError naming each archive's
    where two differ (their entries could never be hit on one host together)."""
    agreed: dict[str, str | None] = {}
    differ: list[str] = []
    for package in COMPARED:
        seen = {path: m.versions.get(package) for path, m in manifests if package in m.compared()}
        if not seen:
            continue
        if len(set(seen.values())) > 1:
            differ.append(f"{package}: " + ", ".join(f"{p} {v or 'absent'}" for p, v in seen.items()))
        agreed[package] = next(iter(seen.values()))
    if differ:
        raise InputError(
            "cannot merge compile caches made with other software (" + "; ".join(differ) + "): "
            "no host could hit the entries of both",
            field="versions",
        )
    return agreed


def merge_caches(archives: Sequence[Path], out: Path, workdir: Path) -> MergeSummary:
    """One archive holding every file of `archives` (the first one named wins a path two of them hold, as on
    import), written to `out` only once all are read, so `out` may be one of them. For the archives that hosts
    export one after another: a host that did not import the last one exports without its entries. Refused
    (InputError, nothing written) when two archives record other versions of a package their parts depend on.
    `workdir`: an empty directory to unpack into (the caller removes it)."""
    if not archives:
        raise InputError("no archive to merge", field="archives")
    manifests = [(a, read_manifest(a)) for a in archives]
    versions = _agreed_versions(manifests)
    gpus = list(dict.fromkeys(m.gpu for _, m in manifests if m.gpu))
    vllm, inductor, triton = workdir / "vllm", workdir / "torchinductor", workdir / "triton"
    inputs = [(a, import_cache(a, vllm, m.versions, inductor_dir=inductor, triton_dir=triton)) for a, m in manifests]
    partial = out.with_name(out.name + ".partial")
    merged = export_cache(vllm, partial, versions, ", ".join(gpus) or None, inductor_dir=inductor, triton_dir=triton)
    partial.replace(out)
    return MergeSummary(merged, inputs)
