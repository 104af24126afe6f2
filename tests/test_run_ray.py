"""The host runtime against a real local Ray instance (CPU): interrupted mid-run, nothing of it survives."""

import json
import sys
from pathlib import Path

import psutil
import pytest
from fakes.cells import fake_cell, with_argv

from suite.run.host import HostRuntime

pytest.importorskip("ray")
RAY_CELL = str(Path(__file__).parent / "fakes" / "ray_cell.py")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_real_ray_instance_is_stopped_completely(tmp_path):
    pidfile = tmp_path / "ray_pids.json"
    cell = fake_cell("ray", out_dir=tmp_path)
    cell = with_argv(cell, [sys.executable, RAY_CELL, str(pidfile)])
    rt = HostRuntime(grace_s=6.0)
    r = rt.run_cell(cell, tmp_path / cell.full_id, timeout_s=120, on_step=lambda step: rt.interrupt())
    assert r.status == "interrupted", (tmp_path / cell.full_id / "log.txt").read_text()[-2000:]
    seen = json.loads(pidfile.read_text())
    pids = seen["pids"]
    assert {"driver", "actor"} <= set(pids) and len(pids) >= 3  # GCS and raylet too
    alive = {name: pid for name, pid in pids.items() if not gone(pid)}
    assert not alive, f"left running: {alive}"
    # the cell's own Ray instance: under its own temp dir, not /tmp/ray shared with other cells
    assert seen["temp_dir"].startswith(r.provenance.extra["ray_tmpdir"] + "/")
