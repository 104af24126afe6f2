"""`grpo-suite cache`: vLLM's compile cache packed on one host and unpacked on a fresh one, its manifest, the
refusal of an archive other software made, and archives that try to write outside the cache."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from suite.cli import main
from suite.errors import InputError
from suite.run import compile_cache as cc
from suite.run.cellenv import vllm_defaults

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
    assert m.versions == HERE and m.gpu == "NVIDIA H200" and m.schema == 1
    with tarfile.open(out) as tar:
        names = tar.getnames()
        assert names[0] == cc.MANIFEST  # the reader finds it without unpacking the rest
        assert json.loads(tar.extractfile(cc.MANIFEST).read())["versions"] == HERE
        assert sum(n.startswith("torch_compile_cache/") for n in names) >= 4
    assert cc.read_manifest(out) == m
    assert "2 entries, 4 files" in m.describe() and "vllm 0.25.1, torch 2.11.0 on NVIDIA H200" in m.describe()


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
    future = _tar_with(tmp_path / "future.tar.xz", {}, {**MANIFEST, "schema": 2})
    with pytest.raises(InputError, match="schema 2, this suite reads 1"):
        cc.import_cache(future, tmp_path / "dest", HERE)


def test_an_empty_host_has_nothing_to_export(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no vLLM compile cache there"):
        cc.export_cache(tmp_path / "vllm", tmp_path / "out.tar.xz", HERE)


def test_the_default_directory_is_the_one_the_cells_use(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GRPO_SUITE_CACHE", str(tmp_path))
    assert cc.default_cache_dir() == tmp_path / "vllm" == Path(vllm_defaults()["VLLM_CACHE_ROOT"])
    assert set(cc.here_versions()) == {"vllm", "torch"}


def test_cli_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPO_SUITE_CACHE", str(tmp_path / "suite-cache"))
    make_cache(tmp_path / "suite-cache" / "vllm")
    out = tmp_path / "c.tar.xz"
    assert main(["cache", "export", "--out", str(out)]) == 0
    assert "2 entries, 4 files" in capsys.readouterr().out
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
