import sys
import time

import psutil
from fakes.cells import FAKE_VERL

from suite.run.process import TOKEN_ENV, ProcessTree, processes_with_token


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for_file(path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.02)
    raise AssertionError(f"{path} never written")


def test_stop_ends_a_detached_grandchild_in_another_session(tmp_path):
    pidfile = tmp_path / "gc.pid"
    env = {"PATH": "/usr/bin:/bin", "VERL_FILE_LOGGER_PATH": str(tmp_path / "m.jsonl")}
    with open(tmp_path / "log.txt", "wb") as log:
        tree = ProcessTree(
            [sys.executable, FAKE_VERL, "--hang", "--grandchild", str(pidfile)], env, log, track_s=0.05
        ).start()
        gc = wait_for_file(pidfile)
        assert psutil.Process(gc).pid != tree.pid
        assert psutil.Process(gc).environ()[TOKEN_ENV] == tree.token
        assert any(p.pid == gc for p in processes_with_token(tree.token))
        stopped = tree.stop(grace_s=1.0)
    assert gc in stopped
    assert not alive(gc) and not alive(tree.pid)
    assert tree.proc.returncode is not None


def test_stop_escalates_when_sigint_is_ignored(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "VERL_FILE_LOGGER_PATH": str(tmp_path / "m.jsonl")}
    with open(tmp_path / "log.txt", "wb") as log:
        tree = ProcessTree([sys.executable, FAKE_VERL, "--hang", "--ignore-sigint"], env, log).start()
        time.sleep(0.5)
        t0 = time.monotonic()
        tree.stop(grace_s=0.6)
    assert not alive(tree.pid)
    assert tree.proc.returncode in (-15, -9)
    assert time.monotonic() - t0 < 5


def test_leftovers_of_a_finished_run_are_ended(tmp_path):
    # verl exits, its Ray daemons don't: they are ended by the pids recorded / tagged for this cell.
    pidfile = tmp_path / "gc.pid"
    env = {"PATH": "/usr/bin:/bin", "VERL_FILE_LOGGER_PATH": str(tmp_path / "m.jsonl")}
    with open(tmp_path / "log.txt", "wb") as log:
        tree = ProcessTree(
            [sys.executable, FAKE_VERL, "--steps", "1", "--step-s", "0", "--grandchild", str(pidfile)], env, log
        ).start()
        assert tree.wait(20) == 0
        gc = wait_for_file(pidfile)
        assert alive(gc)
        stopped = tree.stop(grace_s=1.0)
    assert stopped == [gc]
    assert not alive(gc)


def test_other_processes_are_never_touched(tmp_path):
    import subprocess

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        env = {"PATH": "/usr/bin:/bin", "VERL_FILE_LOGGER_PATH": str(tmp_path / "m.jsonl")}
        with open(tmp_path / "log.txt", "wb") as log:
            tree = ProcessTree([sys.executable, FAKE_VERL, "--hang"], env, log).start()
            time.sleep(0.3)
            tree.stop(grace_s=1.0)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
