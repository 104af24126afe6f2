"""`--runtime docker`: the exact docker command, mounts, secrets by name, engine detection, and result
collection (against a stand-in `docker` executable; a real engine test runs where one is reachable)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.cells import with_argv

from suite.errors import InputError
from suite.plan.cell import Cell
from suite.run import cellenv
from suite.run import docker as dk
from suite.run.runtime import make_runtime

DIGEST = "sha256:" + "cd" * 32


def make_cell(tmp: Path, **kw) -> Cell:
    out = tmp / "out" / "c1"
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    (data / "train.parquet").write_text("x")
    model = tmp / "models" / "qwen"
    model.mkdir(parents=True, exist_ok=True)
    argv = [
        "python3",
        "-m",
        "verl.trainer.main_ppo",
        f"data.train_files={data}/train.parquet",
        f"data.val_files=['{data}/train.parquet']",
        f"actor_rollout_ref.model.path={model}",
        f'trainer.validation_data_dir="{out}/validation"',
        "trainer.nnodes=1",
        "trainer.n_gpus_per_node=2",
        f"+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={out}/metrics.jsonl",
    ]
    base = dict(
        id="c1",
        matrix="m",
        gpu="h100",
        gpus_per_node=2,
        nnodes=1,
        model="synthetic:qwen2.5-0.5b",
        backend="fsdp",
        profile="bench",
        axes={"tp": 1},
        status="ok",
        reason=None,
        command=[],
        env={"VERL_FILE_LOGGER_PATH": f"{out}/metrics.jsonl"},
        warmup_steps=0,
        total_steps=2,
    )
    argv = kw.pop("argv", argv)
    base.update(kw)
    return with_argv(Cell(**base), argv)


# -- pure pieces -----------------------------------------------------------------------------------------


def test_docker_command_is_complete_and_exact(tmp_path: Path) -> None:
    cell = make_cell(tmp_path)
    d = tmp_path / "out" / "c1"
    cmd = dk.docker_command(
        cell,
        image="grpo-suite:h100-x",
        cell_dir=d,
        gpus=[0, 1],
        user="1000:1000",
        mounts=[dk.Mount("/data", False)],
        env_names=["HF_TOKEN", "NCCL_DEBUG"],
        env_values={"GRPO_SUITE_IMAGE": "grpo-suite:h100-x"},
        name="n1",
        timeout_s=600,
    )
    assert cmd == [
        "docker",
        "run",
        "--rm",
        "--init",
        "--pull",
        "never",
        "--name",
        "n1",
        "--label",
        f"dev.grpo-suite.cell={cell.full_id}",
        "--gpus",
        '"device=0,1"',
        "--ipc=host",
        "--ulimit",
        "memlock=-1",
        "--ulimit",
        "stack=67108864",
        "--user",
        "1000:1000",
        "--security-opt",
        "no-new-privileges",
        "--mount",
        "type=bind,source=/data,target=/data,readonly",
        "--mount",
        f"type=bind,source={d},target={d}",
        "--env",
        "GRPO_SUITE_IMAGE=grpo-suite:h100-x",
        "--env",
        "HF_TOKEN",
        "--env",
        "NCCL_DEBUG",
        "--workdir",
        str(d),
        "grpo-suite:h100-x",
        "python",
        "-m",
        "suite.run.incell",
        "--cell",
        f"{d}/cell.json",
        "--out",
        str(d),
        "--runtime-name",
        "docker",
        "--timeout",
        "600",
    ]
    assert "--privileged" not in cmd
    # What --dry-run prints is a shell line that gives docker the same argv back.
    assert shlex.split(dk.format_command(cmd)) == cmd
    assert "--gpus '\"device=0,1\"'" in dk.format_command(cmd)


def test_shm_size_only_without_host_ipc(tmp_path: Path) -> None:
    cell = make_cell(tmp_path)
    host = dk.docker_command(cell, image="i", cell_dir=tmp_path, gpus=None, user="1:1", shm_size="64g")
    assert "--ipc=host" in host and "--shm-size" not in host and host[host.index("--gpus") + 1] == "all"
    priv = dk.docker_command(cell, image="i", cell_dir=tmp_path, gpus=[3], user="1:1", ipc="private", shm_size="64g")
    assert priv[priv.index("--shm-size") + 1] == "64g" and '"device=3"' in priv


def test_gpus_arg() -> None:
    assert dk.gpus_arg(None) == "all"
    assert dk.gpus_arg([2]) == '"device=2"'
    with pytest.raises(InputError):
        dk.gpus_arg([])


def test_merge_mounts_dedupes_and_keeps_access() -> None:
    ms = dk.merge_mounts(
        [
            dk.Mount("/a", False),
            dk.Mount("/a/b", False),
            dk.Mount("/a/b/c", True),
            dk.Mount("/w", True),
            dk.Mount("/w/x", False),
            dk.Mount("/a", True),
            dk.Mount("/ab", False),
        ]
    )
    assert ms == [dk.Mount("/a", True), dk.Mount("/ab", False), dk.Mount("/w", True)]
    ms = dk.merge_mounts([dk.Mount("/r", False), dk.Mount("/r/out", True)])
    assert ms == [dk.Mount("/r", False), dk.Mount("/r/out", True)]  # a writable child stays


def test_mount_paths_docker_cannot_carry_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="contains ','"):
        dk.check_mount_path("/a,b")
    with pytest.raises(InputError, match="not absolute"):
        dk.check_mount_path("rel/path")


def test_argv_paths_and_inputs(tmp_path: Path) -> None:
    cell = make_cell(tmp_path)
    paths = [str(p) for p in cell.paths.reads]
    assert f"{tmp_path}/data/train.parquet" in paths
    assert f"{tmp_path}/models/qwen" in paths
    inputs = dk.host_inputs(paths)
    assert f"{tmp_path}/data" in inputs and f"{tmp_path}/models/qwen" in inputs
    assert not any("validation" in p for p in inputs)  # outputs that do not exist yet are not inputs


def test_forwarded_names_and_host_user() -> None:
    env = {"HF_TOKEN": "s3cr3t", "NCCL_IB_HCA": "mlx5", "HOME": "/root", "VLLM_LOGGING_LEVEL": "DEBUG"}
    assert list(cellenv.forwarded_env(env)) == ["HF_TOKEN", "NCCL_IB_HCA", "VLLM_LOGGING_LEVEL"]
    assert dk.host_user(getuid=lambda: 1234, getgid=lambda: 55) == "1234:55"
    assert dk.host_user(getuid=lambda: 0, getgid=lambda: 0) == dk.IMAGE_UID


def test_runtime_command_mounts_inputs_and_never_shows_secrets(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GRPO_SUITE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    cell = make_cell(tmp_path)
    rt = make_runtime("docker", image="img:1", forward_env="MY_*", mounts=f"{tmp_path}/extra:rw")
    environ = {"HF_TOKEN": "s3cr3t-value", "MY_FLAG": "1", "PATH": "/bin"}
    cmd = rt.command(cell, tmp_path / "out" / "c1", gpus=[0, 1], timeout_s=None, digest=DIGEST, environ=environ)
    line = dk.format_command(cmd)
    assert "s3cr3t-value" not in line
    assert "--env HF_TOKEN " in line and "--env MY_FLAG " in line
    mounts = [cmd[i + 1] for i, c in enumerate(cmd) if c == "--mount"]
    d = tmp_path / "out" / "c1"
    assert f"type=bind,source={d},target={d}" in mounts  # metrics + validation live under it
    assert f"type=bind,source={tmp_path}/data,target={tmp_path}/data,readonly" in mounts
    assert f"type=bind,source={tmp_path}/models/qwen,target={tmp_path}/models/qwen,readonly" in mounts
    assert f"type=bind,source={tmp_path}/cache,target={tmp_path}/cache,readonly" in mounts
    assert f"type=bind,source={tmp_path}/extra,target={tmp_path}/extra" in mounts
    assert f"GRPO_SUITE_CACHE={tmp_path}/cache" in cmd
    assert f"GRPO_SUITE_IMAGE_DIGEST={DIGEST}" in cmd and "GRPO_SUITE_IMAGE=img:1" in cmd


def test_default_image_is_the_checkout_identity_tag(tmp_path: Path) -> None:
    from suite.containers.build import image_tag

    rt = make_runtime("docker", dry_run=True)
    assert rt.image_for(make_cell(tmp_path)) == image_tag("h100")
    with pytest.raises(InputError, match="not supported by the docker runtime"):
        make_runtime("docker", adress="x")


def test_dry_run_prints_the_command_and_runs_nothing(tmp_path: Path, capsys) -> None:
    rt = make_runtime("docker", dry_run=True, image="img:1")
    res = rt.run_cell(make_cell(tmp_path), tmp_path / "out" / "c1", gpus=[0, 1], timeout_s=60)
    out = capsys.readouterr().out.strip()
    assert out.startswith("docker run --rm") and "img:1 python -m suite.run.incell" in out
    assert "--timeout 60" in out
    assert res.status == "skipped" and res.reason == "dry run"
    assert not (tmp_path / "out").exists()


def test_multinode_and_invalid_cells_are_recorded(tmp_path: Path) -> None:
    rt = make_runtime("docker", image="img:1")
    res = rt.run_cell(make_cell(tmp_path, nnodes=2), tmp_path / "a")
    assert res.status == "invalid" and "one node" in res.reason
    res = rt.run_cell(make_cell(tmp_path, status="invalid", reason="bad tp"), tmp_path / "b")
    assert res.status == "invalid" and json.loads((tmp_path / "b" / "result.json").read_text())["status"] == "invalid"


def test_engine_detection() -> None:
    ok = lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, "28.2.2\n", "")  # noqa: E731
    down = lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "Cannot connect")  # noqa: E731
    assert dk.docker_available(sys.executable, runner=ok) is True
    assert dk.docker_available(sys.executable, runner=down) is False
    assert dk.docker_available("no-such-docker-client") is False
    assert dk.default_runtime("host", available=lambda: True)[0] == "host"
    rt, why = dk.default_runtime(None, available=lambda: True)
    assert rt == "docker" and "--runtime host" in why
    assert dk.default_runtime(None, available=lambda: False)[0] == "host"


# -- the host side against a stand-in `docker` ----------------------------------------------------------

FAKE_DOCKER = r'''#!{python}
"""Stand-in docker client: `image inspect` answers for known images; `run` executes the in-cell command
without a container (it checks the argv shape first), writing a result the way the container would."""
import json, os, sys
args = sys.argv[1:]
log = os.environ["FAKE_DOCKER_LOG"]
with open(log, "a") as f:
    f.write(json.dumps(args) + "\n")
if args[:2] == ["image", "inspect"]:
    if args[-1] == "missing:1":
        sys.exit(1)
    print('["grpo-suite@{digest}"] sha256:localid')
    sys.exit(0)
if args and args[0] in ("kill", "stop"):
    sys.exit(0)
assert args[0] == "run" and "--privileged" not in args
i = args.index("python")
cmd = args[i:]
out = cmd[cmd.index("--out") + 1]
mode = os.environ.get("FAKE_MODE", "ok")
if mode == "noresult":
    print("container says: CUDA driver too old"); sys.exit(3)
cell = json.load(open(cmd[cmd.index("--cell") + 1]))
res = {{"schema": 1, "id": cell["full_id"], "matrix": cell["matrix"], "profile": cell["profile"],
       "gpu": cell["gpu"], "n_gpus": cell["n_gpus"], "model": cell["model"], "backend": cell["backend"],
       "axes": cell["axes"], "status": "ok", "provenance": {{"runtime": "docker"}}}}
open(os.path.join(out, "result.json"), "w").write(json.dumps(res))
print("ran", cmd[2])
'''


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch) -> Path:
    exe = tmp_path / "bin" / "docker"
    exe.parent.mkdir()
    exe.write_text(FAKE_DOCKER.format(python=sys.executable, digest=DIGEST))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(tmp_path / "docker-calls.jsonl"))
    return exe


def _calls(tmp_path: Path) -> list[list[str]]:
    return [json.loads(x) for x in (tmp_path / "docker-calls.jsonl").read_text().splitlines()]


def test_run_cell_collects_the_containers_result(tmp_path: Path, fake_docker: Path) -> None:
    rt = make_runtime("docker", image="img:1", docker=str(fake_docker), poll_s=0.05)
    d = tmp_path / "out" / "c1"
    (d).mkdir(parents=True)
    (d / "result.json").write_text("stale")
    res = rt.run_cell(make_cell(tmp_path), d, gpus=[0, 1], timeout_s=30)
    assert res.status == "ok" and res.provenance.runtime == "docker"
    cell_json = json.loads((d / "cell.json").read_text())
    assert cell_json["id"] == "c1"
    calls = _calls(tmp_path)
    assert calls[0][:2] == ["image", "inspect"]
    run = calls[1]
    assert run[run.index("--gpus") + 1] == '"device=0,1"'
    assert f"GRPO_SUITE_IMAGE_DIGEST=grpo-suite@{DIGEST}" in run
    assert "ran suite.run.incell" in (d / "container.log").read_text()


def test_run_cell_without_result_is_a_crash_with_the_reason(tmp_path: Path, fake_docker: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "noresult")
    rt = make_runtime("docker", image="img:1", docker=str(fake_docker), poll_s=0.05)
    d = tmp_path / "out" / "c1"
    res = rt.run_cell(make_cell(tmp_path), d)
    assert res.status == "crash"
    assert "exit 3" in res.reason and "CUDA driver too old" in res.reason
    assert json.loads((d / "result.json").read_text())["status"] == "crash"
    assert res.provenance.image == "img:1"


def test_missing_image_says_how_to_build_it(tmp_path: Path, fake_docker: Path) -> None:
    rt = make_runtime("docker", image="missing:1", docker=str(fake_docker))
    res = rt.run_cell(make_cell(tmp_path), tmp_path / "out" / "c1")
    assert res.status == "crash" and "nox -s build-h100" in res.reason
    assert all(c[0] != "run" for c in _calls(tmp_path))


# -- a real engine, where one runs (never on CI's build machine) ---------------------------------------


@pytest.mark.skipif(not dk.docker_available(), reason="no Docker engine reachable (docker info failed)")
def test_real_engine_runs_the_incell_entry_point(tmp_path: Path) -> None:
    image = os.environ.get("GRPO_SUITE_TEST_IMAGE")
    if not image or dk.image_id(image) is None:
        pytest.skip("set GRPO_SUITE_TEST_IMAGE to a locally built grpo-suite image")
    if shutil.which("nvidia-smi") is None:
        # the runtime always asks for the GPUs (--gpus); an engine without the NVIDIA runtime refuses that
        pytest.skip("no NVIDIA GPU here: the docker runtime's --gpus needs the NVIDIA container runtime")
    cell = make_cell(tmp_path, status="ok", argv=["python3", "-c", "print('hello from the cell')"], env={})
    rt = make_runtime("docker", image=image)
    res = rt.run_cell(cell, tmp_path / "out" / "c1", timeout_s=120)
    log = (tmp_path / "out" / "c1" / "container.log").read_text()
    assert res.provenance.runtime == "docker", log
    assert (tmp_path / "out" / "c1" / "log.txt").is_file(), log
