"""`grpo-suite cache`: vLLM's, inductor's and Triton's compile caches packed on one host and unpacked on a fresh one,
the manifest (schema 3; schema-1 and -2 archives still read), the refusal of an archive other software made, and
archives that try to write outside the caches."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from suite.cli import main
from suite.errors import InputError
from suite.run import compile_cache as cc
from suite.run.cellenv import cell_environment, vllm_defaults

HERE = {"vllm": "0.25.1", "torch": "2.11.0"}


def make_cache(root: Path) -> Path:
    """A cache laid out as vLLM 0.25.1 writes it (torch_compile_cache/<hash>/..., torch_aot_compile/<hash>/...)."""
    files = {
        "torch_compile_cache/edf4b2bf4b/rank_0_0/backbone/cache_key_factors.json": '{"a": 1}',
        "torch_compile_cache/edf4b2bf4b/rank_0_0/backbone/computation_graph.py": "def f(): pass\n",
        "torch_compile_cache/torch_aot_compile/4ee44a8f/inductor_cache/bo/x.best_config": "{}",
        "torch_compile_cache/torch_aot_compile/4ee44a8f/model": "\x00" * 100,
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_export_writes_a_manifest_and_the_tree(tmp_path: Path) -> None:
    src = make_cache(tmp_path / "vllm")
    out = tmp_path / "a" / "cache.tar.xz"
    m = cc.export_cache(src, out, HERE, gpu="NVIDIA H200")
    assert m.entries == ["edf4b2bf4b", "torch_aot_compile"] and m.files == 4
    assert m.bytes == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert m.versions == HERE and m.gpu == "NVIDIA H200" and m.schema == 3
    with tarfile.open(out) as tar:
        names = tar.getnames()
        assert names[0] == cc.MANIFEST  # the reader finds it without unpacking the rest
        assert json.loads(tar.extractfile(cc.MANIFEST).read())["versions"] == HERE
        assert sum(n.startswith("torch_compile_cache/") for n in names) >= 4
    assert cc.read_manifest(out) == m
    assert "vLLM 2 entries: 4 files" in m.describe() and "vllm 0.25.1, torch 2.11.0 on NVIDIA H200" in m.describe()


def test_import_into_a_fresh_host_then_again(tmp_path: Path) -> None:
    out = tmp_path / "cache.tar.xz"
    cc.export_cache(make_cache(tmp_path / "vllm"), out, HERE)
    dest = tmp_path / "fresh"
    first = cc.import_cache(out, dest, HERE)
    assert (first.added, first.kept) == (4, 0)
    copied = dest / "torch_compile_cache" / "edf4b2bf4b" / "rank_0_0" / "backbone" / "computation_graph.py"
    assert copied.read_text() == "def f(): pass\n"
    # the host's own files win over the archive's
    copied.write_text("# compiled here\n")
    again = cc.import_cache(out, dest, HERE)
    assert (again.added, again.kept) == (0, 4) and copied.read_text() == "# compiled here\n"
    assert not (dest / cc.MANIFEST).exists()


def test_other_software_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "cache.tar.xz"
    cc.export_cache(make_cache(tmp_path / "vllm"), out, HERE)
    here = {"vllm": "0.26.0", "torch": "2.11.0"}
    assert cc.mismatches(cc.read_manifest(out), here) == ["vllm 0.25.1 (here 0.26.0)"]
    with pytest.raises(InputError, match=r"made with vllm 0\.25\.1 \(here 0\.26\.0\).*--force") as exc:
        cc.import_cache(out, tmp_path / "dest", here)
    assert exc.value.field == "versions" and not (tmp_path / "dest").exists()
    assert cc.import_cache(out, tmp_path / "dest", here, force=True).added == 4
    no_vllm = {"vllm": None, "torch": "2.13.0+cpu"}
    assert cc.mismatches(cc.read_manifest(out), no_vllm) == [
        "vllm 0.25.1 (here absent)",
        "torch 2.11.0 (here 2.13.0+cpu)",
    ]


def _tar_with(path: Path, members: dict[str, bytes], manifest: dict | None) -> Path:
    with tarfile.open(path, "w:xz") as tar:
        items = ({cc.MANIFEST: json.dumps(manifest).encode()} if manifest is not None else {}) | members
        for name, data in items.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


MANIFEST = {"versions": HERE, "entries": [], "files": 1, "bytes": 1, "created_at": "2026-12-04T18:00:00+00:00"}


@pytest.mark.parametrize(
    "name",
    ["../evil", "torch_compile_cache/../../evil", "torch_compile_cache/../evil", "/etc/evil", "other/file"],
)
def test_members_outside_the_cache_are_refused(tmp_path: Path, name: str) -> None:
    archive = _tar_with(tmp_path / "bad.tar.xz", {name: b"x"}, {**MANIFEST, "schema": 1})
    with pytest.raises(InputError, match="is not a file under torch_compile_cache/"):
        cc.import_cache(archive, tmp_path / "dest", HERE)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "dest" / "evil").exists()


def test_archives_that_are_not_ours(tmp_path: Path) -> None:
    plain = _tar_with(tmp_path / "plain.tar.xz", {"torch_compile_cache/a": b"x"}, None)
    with pytest.raises(InputError, match="not a compile-cache archive"):
        cc.read_manifest(plain)
    future = _tar_with(tmp_path / "future.tar.xz", {}, {**MANIFEST, "schema": 4})
    with pytest.raises(InputError, match="schema 4, this suite reads 1, 2, 3"):
        cc.import_cache(future, tmp_path / "dest", HERE)


def test_an_empty_host_has_nothing_to_export(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no vLLM compile cache there"):
        cc.export_cache(tmp_path / "vllm", tmp_path / "out.tar.xz", HERE)


def test_the_default_directory_is_the_one_the_cells_use(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GRPO_SUITE_CACHE", str(tmp_path))
    assert cc.default_cache_dir() == tmp_path / "vllm" == Path(vllm_defaults()["VLLM_CACHE_ROOT"])
    assert set(cc.here_versions()) == {"vllm", "torch", "triton"}


def test_cli_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPO_SUITE_CACHE", str(tmp_path / "suite-cache"))
    make_cache(tmp_path / "suite-cache" / "vllm")
    out = tmp_path / "c.tar.xz"
    assert main(["cache", "export", "--out", str(out)]) == 0
    assert "vLLM 2 entries: 4 files" in capsys.readouterr().out
    assert main(["cache", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "edf4b2bf4b" in shown and "torch_aot_compile" in shown
    fresh = tmp_path / "fresh"
    # made and read on this machine: its own versions, so it imports without --force
    assert main(["cache", "import", str(out), "--cache-dir", str(fresh)]) == 0
    assert "4 files added, 0 already there" in capsys.readouterr().out
    assert main(["cache", "show", str(fresh)]) == 0 and "4 files" in capsys.readouterr().out
    assert main(["cache", "show", str(tmp_path / "nothing")]) == 2
    assert "no such archive or cache directory" in capsys.readouterr().err
    assert main(["cache", "import", str(_tar_with(tmp_path / "p.tar.xz", {}, None))]) == 2


# -- inductor's and Triton's parts --------------------------------------------------------------------------
HERE3 = {**HERE, "triton": "3.6.0"}


def make_kernels(inductor: Path, triton: Path) -> tuple[Path, Path]:
    """Caches as torch 2.11's inductor and Triton 3.6 lay them out (TRITON_CACHE_DIR set, so inductor's kernels
    land in Triton's directory, not under its own)."""
    files = {
        inductor / "fxgraph/ab/fabc123/entry": "\x01" * 50,
        inductor / "aotautograd/aq/aqk7/entry": "\x02" * 30,
        inductor / "locks/fabc123.lock": "",
        triton / "3XZ7QH/triton_tem_fused_0.cubin": "\x03" * 200,
        triton / "3XZ7QH/triton_tem_fused_0.json": '{"name": "triton_tem_fused_0"}',
        triton / "VV2KLM/__grp__flex_attention.json": "{}",
        triton / "VV2KLM/flex_attention.cubin": "\x04" * 300,
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return inductor, triton


def export3(tmp_path: Path, versions: dict[str, str | None] = HERE3) -> Path:
    out = tmp_path / "kernels.tar.xz"
    inductor, triton = make_kernels(tmp_path / "src" / "torchinductor", tmp_path / "src" / "triton")
    cc.export_cache(make_cache(tmp_path / "src" / "vllm"), out, versions, inductor_dir=inductor, triton_dir=triton)
    return out


def fresh_dirs(root: Path) -> dict[str, Path]:
    # named unlike the exporting host's: each part goes where this host keeps it, whatever the name
    return {"cache_dir": root / "v", "inductor_dir": root / "ind", "triton_dir": root / "kernels"}


def test_three_parts_exported_and_imported_into_a_fresh_host(tmp_path: Path) -> None:
    out = export3(tmp_path)
    m = cc.read_manifest(out)
    assert m.schema == 3 and list(m.parts) == ["torch_compile_cache", "torchinductor", "triton"]
    assert m.versions == HERE3 and m.compared() == ("vllm", "torch", "triton")
    assert m.entries == ["edf4b2bf4b", "torch_aot_compile"]  # vLLM's, as in schema 1
    assert m.parts["torchinductor"] == cc.PartManifest(["aotautograd", "fxgraph", "locks"], 3, 80)
    assert m.parts["triton"].entries == ["3XZ7QH", "VV2KLM"] and m.parts["triton"].files == 4
    assert m.files == 4 + 3 + 4 and m.bytes == sum(
        p.stat().st_size for p in (tmp_path / "src").rglob("*") if p.is_file()
    )
    assert m.describe().startswith("vLLM 2 entries, inductor 3 files, triton 4 files: 11 files, 0.0 MiB; made ")
    assert "with vllm 0.25.1, torch 2.11.0, triton 3.6.0" in m.describe()
    with tarfile.open(out) as tar:
        names = tar.getnames()
        raw = json.loads(tar.extractfile(cc.MANIFEST).read())
    assert names[0] == cc.MANIFEST and {n.split("/")[0] for n in names[1:]} == set(m.parts)
    assert raw["schema"] == 3 and raw["parts"]["triton"] == {
        "entries": ["3XZ7QH", "VV2KLM"],
        "files": 4,
        "bytes": sum(p.stat().st_size for p in (tmp_path / "src" / "triton").rglob("*") if p.is_file()),
    }

    dest = fresh_dirs(tmp_path / "fresh")
    done = cc.import_cache(
        out, dest["cache_dir"], HERE3, inductor_dir=dest["inductor_dir"], triton_dir=dest["triton_dir"]
    )
    assert (done.added, done.kept) == (11, 0)
    assert {n: (c.added, c.kept) for n, c in done.parts.items()} == {
        "torch_compile_cache": (4, 0),
        "torchinductor": (3, 0),
        "triton": (4, 0),
    }
    assert done.parts["triton"].into == dest["triton_dir"]
    assert done.parts["torch_compile_cache"].into == dest["cache_dir"] / "torch_compile_cache"
    cubin = dest["triton_dir"] / "VV2KLM" / "flex_attention.cubin"
    assert cubin.read_text() == "\x04" * 300
    assert (dest["inductor_dir"] / "fxgraph" / "ab" / "fabc123" / "entry").read_text() == "\x01" * 50
    assert not (dest["triton_dir"] / "triton").exists() and not (dest["inductor_dir"] / "torchinductor").exists()
    cubin.write_text("compiled here")
    again = cc.import_cache(
        out, dest["cache_dir"], HERE3, inductor_dir=dest["inductor_dir"], triton_dir=dest["triton_dir"]
    )
    assert (again.added, again.kept) == (0, 11) and cubin.read_text() == "compiled here"


def test_a_part_missing_on_the_exporting_host_is_skipped(tmp_path: Path) -> None:
    inductor, triton = make_kernels(tmp_path / "ind", tmp_path / "tri")
    for p in triton.rglob("*"):
        if p.is_file():
            p.unlink()  # a directory without files carries nothing
    out = tmp_path / "out.tar.xz"
    m = cc.export_cache(tmp_path / "no-vllm", out, HERE3, inductor_dir=inductor, triton_dir=triton)
    assert list(m.parts) == ["torchinductor"] and m.entries == [] and m.files == 3
    assert m.versions == {"torch": "2.11.0", "triton": "3.6.0"}  # no vllm: no part of it depends on vLLM
    assert m.describe().startswith("inductor 3 files: 3 files")
    with tarfile.open(out) as tar:
        assert all(n == cc.MANIFEST or n.startswith("torchinductor") for n in tar.getnames())
    # vLLM differs here: nothing in the archive depends on it
    done = cc.import_cache(out, None, {**HERE3, "vllm": None}, inductor_dir=tmp_path / "i2")
    assert done.added == 3 and list(done.parts) == ["torchinductor"]
    with pytest.raises(InputError, match=r"holds torchinductor/ but no directory was given"):
        cc.import_cache(out, tmp_path / "v", HERE3)
    with pytest.raises(InputError, match=r"no vLLM compile cache there; .*: no inductor cache there; .*no Triton"):
        cc.export_cache(tmp_path / "no-vllm", out, HERE3, inductor_dir=tmp_path / "nope", triton_dir=triton)


def test_links_and_special_files_on_the_host_are_left_out(tmp_path: Path) -> None:
    inductor, triton = make_kernels(tmp_path / "ind", tmp_path / "tri")
    (triton / "outside").symlink_to(tmp_path / "ind")
    (triton / "3XZ7QH" / "alias.cubin").symlink_to(triton / "3XZ7QH" / "triton_tem_fused_0.cubin")
    out = tmp_path / "out.tar.xz"
    m = cc.export_cache(None, out, HERE3, inductor_dir=inductor, triton_dir=triton)
    assert m.parts["triton"].files == 4 and "outside" not in m.parts["triton"].entries
    done = cc.import_cache(out, None, HERE3, inductor_dir=tmp_path / "i", triton_dir=tmp_path / "t")
    assert done.added == 7 and not (tmp_path / "t" / "3XZ7QH" / "alias.cubin").exists()


def _schema1_archive(tmp_path: Path, extra: dict[str, bytes] | None = None) -> Path:
    """An archive as the schema-1 writer made it: the manifest first, then torch_compile_cache/ as it is."""
    src = make_cache(tmp_path / "old-host" / "vllm")
    files = [p for p in (src / "torch_compile_cache").rglob("*") if p.is_file()]
    manifest = {
        "versions": HERE,
        "entries": ["edf4b2bf4b", "torch_aot_compile"],
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "created_at": "2026-12-04T18:44:50+00:00",
        "gpu": "NVIDIA H200",
        "schema": 1,
        "extra": {},
    }
    out = tmp_path / "v1.tar.xz"
    data = json.dumps(manifest, indent=2).encode()
    with tarfile.open(out, "w:xz") as tar:
        info = tarfile.TarInfo(cc.MANIFEST)
        info.size, info.mtime = len(data), 1764873890
        tar.addfile(info, io.BytesIO(data))
        tar.add(src / "torch_compile_cache", arcname="torch_compile_cache")
        for name, blob in (extra or {}).items():
            member = tarfile.TarInfo(name)
            member.size = len(blob)
            tar.addfile(member, io.BytesIO(blob))
    return out


def test_a_schema_1_archive_still_imports_and_is_not_refused_for_triton(tmp_path: Path) -> None:
    out = _schema1_archive(tmp_path)
    m = cc.read_manifest(out)
    assert m.schema == 1 and list(m.parts) == ["torch_compile_cache"] and m.compared() == ("vllm", "torch")
    assert m.parts["torch_compile_cache"] == cc.PartManifest(m.entries, 4, m.bytes)
    assert m.describe().startswith("vLLM 2 entries: 4 files") and m.describe().endswith("torch 2.11.0 on NVIDIA H200")
    other_triton = {**HERE, "triton": "9.9.9"}
    assert cc.mismatches(m, other_triton) == []
    dest = fresh_dirs(tmp_path / "fresh")
    done = cc.import_cache(
        out, dest["cache_dir"], other_triton, inductor_dir=dest["inductor_dir"], triton_dir=dest["triton_dir"]
    )
    assert (done.added, done.kept) == (4, 0) and list(done.parts) == ["torch_compile_cache"]
    assert (dest["cache_dir"] / "torch_compile_cache" / "torch_aot_compile" / "4ee44a8f" / "model").is_file()
    assert not dest["inductor_dir"].exists() and not dest["triton_dir"].exists()
    # nor can a schema-1 archive smuggle a part its manifest does not list (its Triton would go unchecked)
    sneaky = _schema1_archive(tmp_path / "s", {"triton/ABC/k.cubin": b"x"})
    with pytest.raises(InputError, match=r"'triton/ABC/k.cubin' is not a file under torch_compile_cache/"):
        cc.import_cache(sneaky, tmp_path / "d", HERE, triton_dir=tmp_path / "t")
    assert not (tmp_path / "d").exists() and not (tmp_path / "t").exists()


def test_another_triton_refuses_inductor_and_triton_parts_unless_forced(tmp_path: Path) -> None:
    out = export3(tmp_path)
    here = {**HERE, "triton": "3.5.1"}
    assert cc.mismatches(cc.read_manifest(out), here) == ["triton 3.6.0 (here 3.5.1)"]
    dest = fresh_dirs(tmp_path / "fresh")
    kw = {"inductor_dir": dest["inductor_dir"], "triton_dir": dest["triton_dir"]}
    with pytest.raises(
        InputError, match=r"made with triton 3\.6\.0 \(here 3\.5\.1\): inductor and triton would never hit.*--force"
    ) as exc:
        cc.import_cache(out, dest["cache_dir"], here, **kw)
    assert exc.value.field == "versions" and not (tmp_path / "fresh").exists()
    assert cc.import_cache(out, dest["cache_dir"], here, force=True, **kw).added == 11
    assert (dest["triton_dir"] / "VV2KLM" / "flex_attention.cubin").is_file()
    # an archive of vLLM's part alone never asks for triton
    only_vllm = tmp_path / "v.tar.xz"
    cc.export_cache(tmp_path / "src" / "vllm", only_vllm, HERE3)
    assert cc.read_manifest(only_vllm).versions == HERE
    assert cc.import_cache(only_vllm, tmp_path / "v2", here).added == 4


MANIFEST2 = {
    "schema": 2,
    "versions": HERE3,
    "entries": [],
    "files": 1,
    "bytes": 1,
    "created_at": "2026-12-06T21:00:00+00:00",
    "parts": {
        "torchinductor": {"entries": ["x"], "files": 1, "bytes": 1},
        "triton": {"entries": [], "files": 0, "bytes": 0},
    },
}


@pytest.mark.parametrize(
    "name",
    [
        "torchinductor/../../evil",
        "triton/../evil",
        "triton/a/../../../evil",
        "/triton/evil",
        "/torchinductor/evil",
        "inductor/evil",
        "triton_cache/evil",
        "torch_compile_cache/x",  # a known part this archive's manifest does not list
        "evil",
    ],
)
def test_new_parts_refuse_members_outside_them(tmp_path: Path, name: str) -> None:
    # a good member first: the bad one is found before anything is written
    archive = _tar_with(tmp_path / "bad.tar.xz", {"triton/ok": b"y", name: b"x"}, MANIFEST2)
    with pytest.raises(InputError, match="is not a file under torchinductor/ or triton/") as exc:
        cc.import_cache(archive, tmp_path / "v", HERE3, inductor_dir=tmp_path / "i", triton_dir=tmp_path / "t")
    assert exc.value.field == "archive"
    assert not any((tmp_path / d).exists() for d in ("v", "i", "t", "evil"))


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE])
def test_new_parts_refuse_links_and_devices(tmp_path: Path, kind: bytes) -> None:
    archive = tmp_path / "links.tar.xz"
    data = json.dumps(MANIFEST2).encode()
    with tarfile.open(archive, "w:xz") as tar:
        info = tarfile.TarInfo(cc.MANIFEST)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("triton/ABC/k.cubin")
        link.type, link.linkname = kind, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(InputError, match=r"'triton/ABC/k.cubin' is not a file under"):
        cc.import_cache(archive, None, HERE3, inductor_dir=tmp_path / "i", triton_dir=tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_manifests_naming_unknown_parts_or_malformed(tmp_path: Path) -> None:
    unknown = _tar_with(
        tmp_path / "u.tar.xz", {}, {**MANIFEST2, "parts": {"ccache": {"entries": [], "files": 0, "bytes": 0}}}
    )
    with pytest.raises(InputError, match=r"unknown parts \['ccache'\]"):
        cc.read_manifest(unknown)
    malformed = _tar_with(tmp_path / "m.tar.xz", {}, {k: v for k, v in MANIFEST2.items() if k != "parts"})
    with pytest.raises(InputError, match="malformed manifest") as exc:
        cc.read_manifest(malformed)
    assert exc.value.field == "manifest"


def test_the_default_directories_are_the_cells(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GRPO_SUITE_CACHE", str(tmp_path))
    env = cell_environment({}, {}, cell_dir=tmp_path, metrics=tmp_path / "m.jsonl", gpus=[0], token="t")
    assert env["TRITON_CACHE_DIR"] == str(tmp_path / "triton")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "torchinductor")
    assert cc.default_dirs() == {
        "torch_compile_cache": Path(env["VLLM_CACHE_ROOT"]),
        "modelinfos": Path(env["VLLM_CACHE_ROOT"]),
        "torchinductor": Path(env["TORCHINDUCTOR_CACHE_DIR"]),
        "triton": Path(env["TRITON_CACHE_DIR"]),
    }
    # the caller's own directory wins, from its environment or the cell's
    mine = cell_environment(
        {"TRITON_CACHE_DIR": "/mine"}, {}, cell_dir=tmp_path, metrics=tmp_path / "m", gpus=None, token="t"
    )
    assert mine["TRITON_CACHE_DIR"] == "/mine"
    cells = cell_environment(
        {}, {"TRITON_CACHE_DIR": "/cell"}, cell_dir=tmp_path, metrics=tmp_path / "m", gpus=None, token="t"
    )
    assert cells["TRITON_CACHE_DIR"] == "/cell"


def test_cli_with_the_kernel_directories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    suite_cache = tmp_path / "suite-cache"
    monkeypatch.setenv("GRPO_SUITE_CACHE", str(suite_cache))
    monkeypatch.setattr(cc, "here_versions", lambda: dict(HERE3))
    make_cache(suite_cache / "vllm")
    make_kernels(suite_cache / "torchinductor", tmp_path / "elsewhere" / "triton")
    out = tmp_path / "k.tar.xz"
    # the cells' directories by default; Triton's from the flag here
    assert main(["cache", "export", "--out", str(out), "--triton-dir", str(tmp_path / "elsewhere" / "triton")]) == 0
    assert "vLLM 2 entries, inductor 3 files, triton 4 files: 11 files" in capsys.readouterr().out
    assert main(["cache", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "  torchinductor/: 3 entries, 3 files" in shown and "    fxgraph" in shown
    assert "  triton/: 2 entries, 4 files" in shown and "3XZ7QH" not in shown  # kernel hashes not listed
    # what this host would export: the cells' Triton directory has nothing yet
    assert main(["cache", "show"]) == 0
    shown = capsys.readouterr().out
    assert f"  triton/: nothing at {suite_cache / 'triton'}" in shown
    assert f"  torchinductor/ from {suite_cache / 'torchinductor'}: 3 entries" in shown
    fresh = fresh_dirs(tmp_path / "fresh")
    flags = ["--cache-dir", str(fresh["cache_dir"]), "--inductor-dir", str(fresh["inductor_dir"])]
    flags += ["--triton-dir", str(fresh["triton_dir"])]
    assert main(["cache", "import", str(out), *flags]) == 0
    imported = capsys.readouterr().out
    assert "11 files added, 0 already there" in imported
    assert f"  triton/ -> {fresh['triton_dir']}: 4 added, 0 kept" in imported
    assert (fresh["triton_dir"] / "VV2KLM" / "flex_attention.cubin").is_file()
    assert main(["cache", "show", str(fresh["cache_dir"]), *flags[2:]]) == 0
    assert "vLLM 2 entries, inductor 3 files, triton 4 files: 11 files" in capsys.readouterr().out
    # another Triton here: exit 2 naming it, --force unpacks
    monkeypatch.setattr(cc, "here_versions", lambda: {**HERE, "triton": "3.5.1"})
    again = [str(out), "--cache-dir", str(tmp_path / "v3"), "--inductor-dir", str(tmp_path / "i3")]
    again += ["--triton-dir", str(tmp_path / "t3")]
    assert main(["cache", "import", *again]) == 2
    assert "triton 3.6.0 (here 3.5.1)" in capsys.readouterr().err
    assert not (tmp_path / "t3").exists()
    assert main(["cache", "import", *again, "--force"]) == 0 and (tmp_path / "t3" / "VV2KLM").is_dir()


# -- merging several hosts' exports -------------------------------------------------------------------------
def host_export(root: Path, files: dict[str, str], versions: dict[str, str | None], gpu: str | None) -> Path:
    """One host's export: `files` under its vLLM, inductor and Triton directories (paths start with the part's
    archive name)."""
    dirs = {"torch_compile_cache": root / "vllm" / "torch_compile_cache", "torchinductor": root / "ind"}
    dirs["triton"] = root / "tri"
    for rel, text in files.items():
        part, rest = rel.split("/", 1)
        (dirs[part] / rest).parent.mkdir(parents=True, exist_ok=True)
        (dirs[part] / rest).write_text(text)
    out = root / "export.tar.xz"
    cc.export_cache(
        root / "vllm" if (root / "vllm").exists() else None,
        out,
        versions,
        gpu,
        inductor_dir=dirs["torchinductor"] if dirs["torchinductor"].exists() else None,
        triton_dir=dirs["triton"] if dirs["triton"].exists() else None,
    )
    return out


SHAPE_7B = {
    "torch_compile_cache/5c50dc54e5/rank_0_0/backbone/computation_graph.py": "7b",
    "torchinductor/fxgraph/ab/f7b/entry": "7b kernels",
    "triton/AAAA/flex_attention.cubin": "7b flex",
}
SHAPE_14B = {
    "torch_compile_cache/61dda8241a/rank_0_0/backbone/computation_graph.py": "14b",
    "torchinductor/fxgraph/cd/f14b/entry": "14b kernels",
    "triton/AAAA/flex_attention.cubin": "14b flex (another host's copy of the same path)",
    "triton/BBBB/triton_tem_fused_0.cubin": "14b",
}


def test_merge_keeps_every_hosts_shapes_and_the_first_named_wins_a_shared_path(tmp_path: Path) -> None:
    a = host_export(tmp_path / "h100", SHAPE_14B, HERE3, "NVIDIA H100 80GB HBM3")
    b = host_export(tmp_path / "h200", SHAPE_7B, HERE3, "NVIDIA H200")
    out = tmp_path / "merged.tar.xz"
    work = tmp_path / "work"
    done = cc.merge_caches([a, b], out, work)
    m = done.manifest
    assert m.entries == ["5c50dc54e5", "61dda8241a"] and m.versions == HERE3
    assert m.gpu == "NVIDIA H100 80GB HBM3, NVIDIA H200"
    assert m.parts["torchinductor"].files == 2 and m.parts["triton"].entries == ["AAAA", "BBBB"]
    assert m.files == 6 and cc.read_manifest(out) == m
    assert [(p, s.added, s.kept) for p, s in done.inputs] == [(a, 4, 0), (b, 2, 1)]
    assert [s.manifest for _, s in done.inputs] == [cc.read_manifest(a), cc.read_manifest(b)]
    dest = fresh_dirs(tmp_path / "fresh")
    got = cc.import_cache(
        out, dest["cache_dir"], HERE3, inductor_dir=dest["inductor_dir"], triton_dir=dest["triton_dir"]
    )
    assert (got.added, got.kept) == (6, 0)
    flex = dest["triton_dir"] / "AAAA" / "flex_attention.cubin"
    assert flex.read_text() == "14b flex (another host's copy of the same path)"
    graph = dest["cache_dir"] / "torch_compile_cache" / "5c50dc54e5" / "rank_0_0" / "backbone" / "computation_graph.py"
    assert graph.read_text() == "7b"
    assert not out.with_name(out.name + ".partial").exists()
    # the other order: the other host's copy wins
    cc.merge_caches([b, a], out, tmp_path / "work2")
    dest2 = fresh_dirs(tmp_path / "fresh2")
    cc.import_cache(out, dest2["cache_dir"], HERE3, inductor_dir=dest2["inductor_dir"], triton_dir=dest2["triton_dir"])
    assert (dest2["triton_dir"] / "AAAA" / "flex_attention.cubin").read_text() == "7b flex"


def test_merge_into_one_of_its_inputs(tmp_path: Path) -> None:
    kept = host_export(tmp_path / "kept", SHAPE_7B, HERE3, None)
    new = host_export(tmp_path / "new", SHAPE_14B, HERE3, None)
    before = cc.read_manifest(kept)
    done = cc.merge_caches([kept, new], kept, tmp_path / "work")
    after = cc.read_manifest(kept)
    assert before.entries == ["5c50dc54e5"] and after.entries == ["5c50dc54e5", "61dda8241a"]
    assert after == done.manifest and after.gpu is None and after.files == 6


def test_merge_refuses_archives_of_other_software_before_writing(tmp_path: Path) -> None:
    a = host_export(tmp_path / "a", SHAPE_7B, HERE3, None)
    b = host_export(tmp_path / "b", SHAPE_14B, {**HERE3, "vllm": "0.26.0"}, None)
    out = tmp_path / "merged.tar.xz"
    with pytest.raises(InputError) as err:
        cc.merge_caches([a, b], out, tmp_path / "work")
    assert f"vllm: {a} 0.25.1, {b} 0.26.0" in str(err.value)
    assert err.value.field == "versions" and "no host could hit the entries of both" in str(err.value)
    assert not out.exists() and not (tmp_path / "work").exists()
    # a package only one archive depends on is not compared: vLLM's part alone does not depend on Triton
    vllm_only = host_export(tmp_path / "c", {k: v for k, v in SHAPE_14B.items() if k.startswith("torch_")}, HERE, None)
    other_triton = host_export(tmp_path / "d", SHAPE_7B, {**HERE, "triton": "3.5.1"}, None)
    m = cc.merge_caches([vllm_only, other_triton], out, tmp_path / "work3").manifest
    assert m.versions == {**HERE, "triton": "3.5.1"} and m.entries == ["5c50dc54e5", "61dda8241a"]
    with pytest.raises(InputError, match="no archive to merge"):
        cc.merge_caches([], out, tmp_path / "work4")


def test_merge_reads_schema_1_archives(tmp_path: Path) -> None:
    old = _schema1_archive(tmp_path)
    new = host_export(tmp_path / "new", SHAPE_14B, HERE3, "NVIDIA H100 80GB HBM3")
    m = cc.merge_caches([new, old], tmp_path / "m.tar.xz", tmp_path / "work").manifest
    assert m.schema == 3 and m.entries == ["61dda8241a", "edf4b2bf4b", "torch_aot_compile"]
    assert m.gpu == "NVIDIA H100 80GB HBM3, NVIDIA H200" and m.versions == HERE3


def test_cli_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = host_export(tmp_path / "a", SHAPE_14B, HERE3, None)
    b = host_export(tmp_path / "b", SHAPE_7B, HERE3, None)
    out = tmp_path / "out" / "merged.tar.xz"
    assert main(["cache", "merge", str(a), str(b), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{a}: vLLM 1 entry, inductor 1 file, triton 2 files: 4 files")
    assert lines[0].endswith("; 4 files taken, 0 already held") and lines[1].endswith("; 2 files taken, 1 already held")
    assert lines[2].startswith(f"{out}: vLLM 2 entries, inductor 2 files, triton 2 files: 6 files")
    assert [p.name for p in out.parent.iterdir()] == ["merged.tar.xz"]  # its work directory is gone
    bad = host_export(tmp_path / "c", SHAPE_7B, {**HERE3, "torch": "2.13.0"}, None)
    assert main(["cache", "merge", str(a), str(bad), "--out", str(out)]) == 2
    assert f"torch: {a} 2.11.0, {bad} 2.13.0" in capsys.readouterr().err
    assert main(["cache", "show", str(out)]) == 0 and "61dda8241a" in capsys.readouterr().out


# -- vLLM's model-info cache (schema 3) ---------------------------------------------------------------------
QWEN2_INFO = "vllm-model_executor-models-qwen2-Qwen2ForCausalLM.json"  # vLLM's name: <module>-<class>, dots as -


def make_modelinfos(vllm_root: Path, names: tuple[str, ...] = (QWEN2_INFO,)) -> Path:
    """What vLLM 0.25 writes under VLLM_CACHE_ROOT/modelinfos/ after inspecting a model class: its module file's
    hash and the class's interfaces."""
    for name in names:
        path = vllm_root / "modelinfos" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"hash": "9f1c" + name[:8], "modelinfo": {"supports_lora": True}}, indent=2))
    return vllm_root


def test_model_info_travels_beside_the_compile_cache(tmp_path: Path) -> None:
    src = make_modelinfos(make_cache(tmp_path / "vllm"))
    out = tmp_path / "cache.tar.xz"
    m = cc.export_cache(src, out, HERE)
    assert list(m.parts) == ["torch_compile_cache", "modelinfos"] and m.schema == 3
    assert m.parts["modelinfos"] == cc.PartManifest([QWEN2_INFO], 1, (src / "modelinfos" / QWEN2_INFO).stat().st_size)
    assert m.entries == ["edf4b2bf4b", "torch_aot_compile"]  # vLLM's compiled shapes only
    assert m.files == 5 and m.compared() == ("vllm", "torch")
    assert m.describe().startswith("vLLM 2 entries, vLLM model info 1 file: 5 files")
    with tarfile.open(out) as tar:
        assert f"modelinfos/{QWEN2_INFO}" in tar.getnames()
    dest = tmp_path / "fresh"
    done = cc.import_cache(out, dest, HERE)
    assert {n: (c.added, c.kept) for n, c in done.parts.items()} == {
        "torch_compile_cache": (4, 0),
        "modelinfos": (1, 0),
    }
    assert done.parts["modelinfos"].into == dest / "modelinfos"
    # where vLLM looks: VLLM_CACHE_ROOT/modelinfos/<module>-<class>.json, byte for byte
    landed = dest / "modelinfos" / QWEN2_INFO
    assert landed.read_bytes() == (src / "modelinfos" / QWEN2_INFO).read_bytes()
    assert json.loads(landed.read_text())["modelinfo"] == {"supports_lora": True}
    landed.write_text('{"hash": "this host", "modelinfo": {}}')  # the host's own inspection wins
    again = cc.import_cache(out, dest, HERE)
    assert again.parts["modelinfos"].kept == 1 and "this host" in landed.read_text()


def test_a_host_that_inspected_but_never_compiled_exports_the_model_info_alone(tmp_path: Path) -> None:
    src = make_modelinfos(tmp_path / "vllm")
    m = cc.export_cache(src, tmp_path / "i.tar.xz", HERE)
    # its entries depend on vLLM's model files alone: torch is not compared
    assert list(m.parts) == ["modelinfos"] and m.entries == [] and m.versions == {"vllm": "0.25.1"}
    assert cc.mismatches(m, {"vllm": "0.25.1", "torch": "2.12.0"}) == []
    with pytest.raises(InputError, match=r"made with vllm 0\.25\.1 \(here 0\.26\.0\): vLLM model info would never hit"):
        cc.import_cache(tmp_path / "i.tar.xz", tmp_path / "d", {"vllm": "0.26.0", "torch": "2.11.0"})
    assert not (tmp_path / "d").exists()
    shown = cc.scan(src, HERE)
    assert shown.parts == m.parts


def test_a_schema_2_archive_still_imports(tmp_path: Path) -> None:
    # a schema-2 writer's archive: the same layout, no modelinfos part
    out = export3(tmp_path)
    with tarfile.open(out) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    raw = json.loads(members.pop(cc.MANIFEST))
    old = _tar_with(tmp_path / "v2.tar.xz", members, {**raw, "schema": 2})
    m = cc.read_manifest(old)
    assert m.schema == 2 and "modelinfos" not in m.parts and m.files == 11
    dest = fresh_dirs(tmp_path / "fresh")
    done = cc.import_cache(
        old, dest["cache_dir"], HERE3, inductor_dir=dest["inductor_dir"], triton_dir=dest["triton_dir"]
    )
    assert done.added == 11 and not (dest["cache_dir"] / "modelinfos").exists()


def test_merge_keeps_every_hosts_model_info(tmp_path: Path) -> None:
    a = tmp_path / "a.tar.xz"
    cc.export_cache(make_modelinfos(make_cache(tmp_path / "ha" / "vllm")), a, HERE)
    b_root = make_modelinfos(
        tmp_path / "hb" / "vllm", (QWEN2_INFO, "vllm-model_executor-models-llama-LlamaForCausalLM.json")
    )
    (b_root / "modelinfos" / QWEN2_INFO).write_text('{"hash": "host b"}')
    b = tmp_path / "b.tar.xz"
    cc.export_cache(b_root, b, HERE)
    m = cc.merge_caches([a, b], tmp_path / "m.tar.xz", tmp_path / "work").manifest
    assert m.parts["modelinfos"].entries == ["vllm-model_executor-models-llama-LlamaForCausalLM.json", QWEN2_INFO]
    dest = tmp_path / "fresh"
    cc.import_cache(tmp_path / "m.tar.xz", dest, HERE)
    assert "host b" not in (dest / "modelinfos" / QWEN2_INFO).read_text()  # the first named wins


def test_model_info_members_outside_their_part_are_refused(tmp_path: Path) -> None:
    manifest = {**MANIFEST, "schema": 3, "parts": {"modelinfos": {"entries": ["x.json"], "files": 1, "bytes": 1}}}
    for name in ("modelinfos/../../evil", "modelinfos/../torch_compile_cache/x", "/modelinfos/x.json"):
        archive = _tar_with(tmp_path / "bad.tar.xz", {"modelinfos/x.json": b"{}", name: b"x"}, manifest)
        with pytest.raises(InputError, match="is not a file under modelinfos/"):
            cc.import_cache(archive, tmp_path / "v", HERE)
        assert not (tmp_path / "v").exists() and not (tmp_path / "evil").exists()


def test_cli_show_lists_the_model_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_modelinfos(make_cache(tmp_path / "vllm"))
    assert (
        main(
            [
                "cache",
                "show",
                str(src),
                "--inductor-dir",
                str(tmp_path / "none"),
                "--triton-dir",
                str(tmp_path / "none"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"  modelinfos/ from {src / 'modelinfos'}: 1 entry, 1 file" in out and f"    {QWEN2_INFO}" in out
