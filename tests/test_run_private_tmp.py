"""A private /tmp per cell: the wrapper, its probe, the runtime option, and two real packed cells that bind
verl 0.9.1's weight-transfer socket path (the collision seen on 4x H100) with and without it."""

import json
import os
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
from fakes.cells import fake_cell

from suite.cli import main
from suite.errors import InputError
from suite.results.io import read_result
from suite.run import cellenv, private_tmp
from suite.run.host import HostRuntime
from suite.run.runner import RunOptions, run_cells

USERNS, WHY = private_tmp.probe()
needs_ns = pytest.mark.skipif(USERNS is None, reason=f"no mount namespace here: {WHY}")


def run_private(script: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        private_tmp.wrap(["sh", "-c", script], root, bool(USERNS)), capture_output=True, text=True, timeout=60
    )


# -- pure parts -------------------------------------------------------------------------------------------
def test_wrap_runs_the_cell_through_unshare_and_sh_with_the_root_first():
    argv = private_tmp.wrap(["python3", "-m", "verl.trainer.main_ppo", "a=1"], Path("/tmp/gsr-x-tmp"))
    assert argv[:4] == ["unshare", "--mount", "--propagation", "private"]
    assert "--map-root-user" not in argv
    i = argv.index("--")
    assert argv[i + 1 : i + 3] == ["sh", "-c"] and argv[i + 3] == private_tmp.SCRIPT
    assert argv[i + 4 :] == ["private-tmp", "/tmp/gsr-x-tmp", "python3", "-m", "verl.trainer.main_ppo", "a=1"]
    assert "--map-root-user" in private_tmp.wrap(["x"], Path("/r"), userns=True)


def test_script_execs_the_cell_so_its_pid_is_the_drivers():
    assert private_tmp.SCRIPT.rstrip().endswith('exec "$@"')
    assert "mount --rbind" in private_tmp.SCRIPT and "set -e" in private_tmp.SCRIPT


def test_root_sits_beside_the_ray_temp_dir():
    ray = cellenv.ray_tmpdir("tok")
    root = private_tmp.root_for(ray)
    assert root.parent == ray.parent and root.name == ray.name + "-tmp"
    assert root.name.startswith("gsr-") and root.name.endswith(private_tmp.SUFFIX)


def test_resolve_off_never_probes(monkeypatch):
    monkeypatch.setattr(private_tmp, "probe", lambda: pytest.fail("probed"))
    assert private_tmp.resolve("off") == (None, "off")


def test_resolve_reports_why_a_host_cannot(monkeypatch):
    monkeypatch.setattr(private_tmp, "probe", lambda: (None, "unshare: Operation not permitted"))
    assert private_tmp.resolve("auto") == (None, "unavailable: unshare: Operation not permitted")


def test_remove_root(tmp_path):
    root = tmp_path / "gsr-abc-tmp"
    (root / "sub").mkdir(parents=True)
    (root / "rl-colocate-zmq-01000000-replica-0-rank-0.sock").write_text("")
    assert private_tmp.remove_root(root) is True and not root.exists()
    assert private_tmp.remove_root(root) is False


def test_cell_environment_keeps_torch_compile_cache_out_of_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("GRPO_SUITE_CACHE", str(tmp_path / "cache"))
    env = cellenv.cell_environment({}, {}, cell_dir=tmp_path, metrics=tmp_path / "m.jsonl", gpus=[0], token="t")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "torchinductor")
    env = cellenv.cell_environment(
        {"TORCHINDUCTOR_CACHE_DIR": "/mine"}, {}, cell_dir=tmp_path, metrics=tmp_path / "m.jsonl", gpus=[0], token="t"
    )
    assert env["TORCHINDUCTOR_CACHE_DIR"] == "/mine"


# -- the runtime option -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["maybe", "1", ""])
def test_bad_private_tmp_value_names_the_option_and_the_allowed_values(bad):
    with pytest.raises(InputError) as e:
        HostRuntime(private_tmp=bad)
    msg = str(e.value)
    assert "private_tmp" in msg and "auto, on, off" in msg and repr(bad) in msg


def test_private_tmp_on_is_refused_before_any_cell_where_the_host_cannot(monkeypatch):
    monkeypatch.setattr(private_tmp, "probe", lambda: (None, "unshare: Operation not permitted"))
    with pytest.raises(InputError, match="Operation not permitted") as e:
        HostRuntime(private_tmp="on")
    assert "allowed: auto, off" in str(e.value)
    rt = HostRuntime(private_tmp="auto")
    assert rt.concurrent_safe is False and rt.private_tmp_note.startswith("unavailable")
    assert HostRuntime(private_tmp="off").concurrent_safe is True


def test_packing_falls_back_to_one_cell_at_a_time_without_a_private_tmp(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(private_tmp, "probe", lambda: (None, "unshare: Operation not permitted"))
    out = tmp_path / "out"
    out.mkdir()
    cells = [fake_cell(c, ["--steps", "2", "--step-s", "0.05"], out_dir=out) for c in ("a", "b")]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([c.to_dict() for c in cells]))
    code = main(["run", str(plan), "--out", str(out), "--parallel", "2", "--gpus", "0,1"])
    err = capsys.readouterr().err
    assert code == 0
    assert "running one cell at a time" in err and "Operation not permitted" in err and "private_tmp=off" in err
    for c in ("a", "b"):
        r = read_result(out / f"tiny/h100x1/fsdp/{c}/result.json")
        assert r.status == "ok" and r.provenance.parallel_slots == 1
        assert r.provenance.extra["private_tmp"].startswith("unavailable: ")


# -- for real: mount namespaces on this machine ----------------------------------------------------------
@needs_ns
def test_inside_paths_under_tmp_are_the_host_files_and_new_top_level_files_stay_private(tmp_path):
    if not str(tmp_path).startswith("/tmp/"):  # the case that matters: results under /tmp (pytest's default)
        pytest.skip(f"pytest's tmp_path {tmp_path} is not under /tmp")
    (tmp_path / "in.txt").write_text("from the host")
    marker = f"gsr-test-marker-{uuid.uuid4().hex}"
    root = tmp_path / "root"
    p = run_private(f"cat {tmp_path}/in.txt > {tmp_path}/out.txt && echo private > /tmp/{marker}", root)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out.txt").read_text() == "from the host"  # read and written through the bind
    assert not Path("/tmp", marker).exists()  # not in the host's /tmp ...
    assert (root / marker).read_text() == "private\n"  # ... but in the cell's own


@needs_ns
def test_symlinks_and_files_at_the_top_of_tmp_are_carried_sockets_are_not(tmp_path):
    tag = uuid.uuid4().hex
    link, plain, sock_path = (Path("/tmp") / f"gsr-test-{kind}-{tag}" for kind in ("link", "file", "sock"))
    (tmp_path / "f").write_text("through the link")
    link.symlink_to(tmp_path)
    plain.write_text("plain")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sock_path))
    try:
        p = run_private(
            f"cat {link}/f; echo; cat {plain}; echo; test -L {link} && echo islink; "
            f"test -e {sock_path} && echo sock-visible || echo sock-hidden; "
            f"echo appended >> {plain}",
            tmp_path / "root",
        )
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == ["through", "the", "link", "plain", "islink", "sock-hidden"]
        assert plain.read_text() == "plainappended\n"  # a bound file is the host's file
    finally:
        s.close()
        for f in (link, plain, sock_path):
            f.unlink(missing_ok=True)


@needs_ns
def test_a_failing_command_keeps_its_exit_code(tmp_path):
    p = run_private("exit 7", tmp_path / "root")
    assert p.returncode == 7


@needs_ns
def test_probe_finds_a_working_mode_here():
    assert USERNS in (False, True) and WHY == ""
    if os.geteuid() == 0:
        assert USERNS is False  # root needs no user namespace


def _colocate_pair(tmp_path: Path, **opts):
    out = tmp_path / "out"
    out.mkdir()
    cells = [
        fake_cell(c, ["--colocate-socket", "--startup-s", "0.6", "--steps", "3", "--step-s", "0.3"], out_dir=out)
        for c in ("a", "b")
    ]
    rt = HostRuntime(grace_s=1.0, poll_s=0.05, **opts)
    summary = run_cells(cells, out, rt, RunOptions(parallel=2, gpu_ids=[0, 1]))
    return {o.cell.id: o.result for o in summary.outcomes}


@needs_ns
def test_two_packed_cells_binding_verls_socket_path_both_finish_with_a_private_tmp(tmp_path):
    got = _colocate_pair(tmp_path)
    assert {c: r.status for c, r in got.items()} == {"a": "ok", "b": "ok"}
    roots = {r.provenance.extra["private_tmp"] for r in got.values()}
    assert len(roots) == 2 and all("/gsr-" in x and x.endswith("-tmp") for x in roots)
    assert all(len(r.steps) == 3 and r.provenance.parallel_slots == 2 for r in got.values())
    assert not any(Path(x).exists() for x in roots)  # removed after an ok cell
    assert not Path("/tmp/rl-colocate-zmq-01000000-replica-0-rank-0.sock").exists()


@needs_ns
def test_without_it_the_same_two_cells_collide_as_on_the_h100_host(tmp_path):
    if Path("/tmp/rl-colocate-zmq-01000000-replica-0-rank-0.sock").exists():
        pytest.skip("a leftover socket of another process")
    try:
        got = _colocate_pair(tmp_path, private_tmp="off")
    finally:
        Path("/tmp/rl-colocate-zmq-01000000-replica-0-rank-0.sock").unlink(missing_ok=True)
    statuses = sorted(r.status for r in got.values())
    assert "crash" in statuses
    # the receiver meets the other job's sender or its dead socket, or both bind at once (EADDRINUSE)
    signs = ("not callable", "ConnectionRefusedError", "FileNotFoundError", "Address already in use")
    assert any(s in (r.reason or "") for r in got.values() for s in signs), [r.reason for r in got.values()]
    assert all(r.provenance.extra["private_tmp"] == "off" for r in got.values())


def test_cell_environment_sets_vllm_defaults_the_caller_can_override(tmp_path, monkeypatch):
    monkeypatch.setenv("GRPO_SUITE_CACHE", str(tmp_path / "cache"))
    env = cellenv.cell_environment({}, {}, cell_dir=tmp_path, metrics=tmp_path / "m.jsonl", gpus=[0], token="t")
    # present in the driver's environment, so verl 0.9.1 does not put its WARN / cache-off defaults on top
    assert env["VLLM_LOGGING_LEVEL"] == "INFO"
    assert env["VLLM_DISABLE_COMPILE_CACHE"] == "0"
    assert env["VLLM_CACHE_ROOT"] == str(tmp_path / "cache" / "vllm")
    mine = {"VLLM_LOGGING_LEVEL": "WARN", "VLLM_DISABLE_COMPILE_CACHE": "1", "VLLM_CACHE_ROOT": "/v"}
    env = cellenv.cell_environment(mine, {}, cell_dir=tmp_path, metrics=tmp_path / "m.jsonl", gpus=None, token="t")
    assert {k: env[k] for k in mine} == mine


def test_vllm_defaults_are_the_keys_verl_would_otherwise_set():
    from verl.trainer.constants_ppo import PPO_RAY_RUNTIME_ENV

    verl_env = PPO_RAY_RUNTIME_ENV["env_vars"]
    d = cellenv.vllm_defaults()
    assert verl_env["VLLM_LOGGING_LEVEL"] == "WARN" and verl_env["VLLM_DISABLE_COMPILE_CACHE"] == "1"
    assert d["VLLM_LOGGING_LEVEL"] != verl_env["VLLM_LOGGING_LEVEL"]
    assert d["VLLM_DISABLE_COMPILE_CACHE"] != verl_env["VLLM_DISABLE_COMPILE_CACHE"]
