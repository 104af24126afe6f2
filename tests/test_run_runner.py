import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from fakes.cells import fake_cell

from suite.cli import main
from suite.results.io import read_result, write_result
from suite.run import private_tmp
from suite.run.host import HostRuntime
from suite.run.runner import RunOptions, matches, run_cells

ROOT = Path(__file__).parents[1]


def write_plan(path: Path, cells) -> Path:
    path.write_text(json.dumps([c.to_dict() for c in cells]))
    return path


def spans(out: Path, ids):
    """(start, end, CUDA_VISIBLE_DEVICES) of each cell, from the environment the fake recorded."""
    result = {}
    for cid in ids:
        r = read_result(out / f"tiny/h100x1/fsdp/{cid}" / "result.json")
        env = json.loads((out / f"{cid}.env.json").read_text())
        result[cid] = (r.provenance.start_time, r.provenance.end_time, env["CUDA_VISIBLE_DEVICES"], r)
    return result


def test_four_cell_matrix_two_at_a_time_on_disjoint_gpus(tmp_path, capsys):
    out = tmp_path / "out"
    ids = ["a", "b", "c", "d"]
    cells = [
        fake_cell(
            cid,
            [
                "--steps",
                "6",
                "--step-s",
                "0.15",
                "--record-env",
                str(out / f"{cid}.env.json"),
                *(["--crash", "reward fn exploded"] if cid == "b" else []),
            ],
            out_dir=out,
        )
        for cid in ids
    ]
    out.mkdir()
    # where this machine cannot give cells a private /tmp, packing is only allowed with private_tmp=off
    shared = [] if private_tmp.probe()[0] is not None else ["--runtime-option", "private_tmp=off"]
    code = main(
        [
            "run",
            str(write_plan(tmp_path / "plan.json", cells)),
            "--out",
            str(out),
            "--parallel",
            "2",
            "--gpus",
            "0,1,2,3",
            "--runtime-option",
            "grace_s=1",
            *shared,
        ]
    )
    printed = capsys.readouterr().out
    assert code == 1  # one cell failed; the others still ran and kept their results
    got = spans(out, ids)
    assert [got[c][3].status for c in ids] == ["ok", "crash", "ok", "ok"]
    assert all(got[c][3].provenance.parallel_slots == 2 for c in ids)
    assert all(got[c][3].provenance.cuda_visible_devices == got[c][2] for c in ids)
    # a and b start together on different GPUs; c and d take the GPUs they free
    assert {got["a"][2], got["b"][2]} == {"0", "1"}
    assert {got["c"][2], got["d"][2]} <= {"0", "1", "2", "3"}
    assert "| tiny/h100x1/fsdp/b" in printed and "reward fn exploded" in printed
    assert f"results: {out}" in printed


def test_parallel_cells_never_share_a_gpu(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cells = [
        fake_cell(
            f"c{i}",
            ["--steps", "3", "--step-s", "0.1", "--record-env", str(out / f"c{i}.env.json")],
            out_dir=out,
            gpus_per_node=2,
        )
        for i in range(3)
    ]
    rt = HostRuntime(grace_s=1.0, poll_s=0.05)
    summary = run_cells(cells, out, rt, RunOptions(parallel=None, gpu_ids=[0, 1, 2, 3]))
    assert [o.result.status for o in summary.outcomes] == ["ok", "ok", "ok"]
    envs = [json.loads((out / f"c{i}.env.json").read_text())["CUDA_VISIBLE_DEVICES"] for i in range(3)]
    assert envs[0] != envs[1] and set(envs) <= {"0,1", "2,3"}
    assert {o.result.provenance.parallel_slots for o in summary.outcomes} == {2}


def test_resume_reruns_only_cells_without_a_final_result(tmp_path):
    out = tmp_path / "out"
    cells = [fake_cell(cid, ["--steps", "2", "--step-s", "0"], out_dir=out) for cid in ("done", "cut", "new")]
    rt = HostRuntime(grace_s=1.0, poll_s=0.05)
    run_cells(cells[:2], out, rt, RunOptions())
    cut = out / cells[1].full_id / "result.json"
    r = read_result(cut)
    write_result(cut, r.model_copy(update={"status": "interrupted"}))
    done_mtime = (out / cells[0].full_id / "result.json").stat().st_mtime_ns
    summary = run_cells(cells, out, rt, RunOptions(resume=True))
    by_id = {o.cell.id: o for o in summary.outcomes}
    assert by_id["done"].reused and not by_id["cut"].reused and not by_id["new"].reused
    assert (out / cells[0].full_id / "result.json").stat().st_mtime_ns == done_mtime
    assert read_result(cut).status == "ok"


def test_fail_fast_stops_the_matrix(tmp_path):
    out = tmp_path / "out"
    cells = [fake_cell("x", ["--exit", "2"], out_dir=out), fake_cell("y", out_dir=out), fake_cell("z", out_dir=out)]
    summary = run_cells(cells, out, HostRuntime(grace_s=1.0), RunOptions(fail_fast=True))
    assert summary.stopped_early
    assert [o.result.status if o.result else None for o in summary.outcomes] == ["crash", None, None]
    assert not (out / cells[1].full_id).exists()


def test_invalid_cells_recorded_and_pattern_selects(tmp_path):
    out = tmp_path / "out"
    cells = [
        fake_cell("lora8-tp1", ["--step-s", "0"], out_dir=out),
        fake_cell("lora8-tp3", status="invalid", reason="tp 3 does not divide 14 heads", out_dir=out),
        fake_cell("lora32-tp1", out_dir=out),
    ]
    summary = run_cells(cells, out, HostRuntime(grace_s=1.0), RunOptions(cells="lora8-*"))
    assert [o.cell.id for o in summary.outcomes] == ["lora8-tp1", "lora8-tp3"]
    assert [o.result.status for o in summary.outcomes] == ["ok", "invalid"]
    assert not summary.failed
    assert matches(cells[2], "tiny/*/lora32-*") and not matches(cells[2], "lora8-*,x")


def test_cell_needing_more_gpus_than_the_host_has(tmp_path):
    out = tmp_path / "out"
    summary = run_cells(
        [fake_cell("big", out_dir=out, gpus_per_node=8)], out, HostRuntime(), RunOptions(gpu_ids=[0, 1])
    )
    r = summary.outcomes[0].result
    assert r.status == "skipped" and "needs 8 GPUs" in r.reason and summary.failed


def test_cli_input_errors_exit_2(tmp_path, capsys):
    plan = write_plan(tmp_path / "plan.json", [fake_cell("a", out_dir=tmp_path)])
    assert main(["run", str(plan), "--parallel", "zero"]) == 2
    assert main(["run", str(plan), "--runtime", "k8s"]) == 2
    assert main(["run", str(plan), "--cells", "nomatch*", "--out", str(tmp_path)]) == 2
    assert main(["run", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert "--parallel" in err and "k8s" in err and "nomatch*" in err and "missing.json" in err


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("ignored_at_start", [False, True], ids=["foreground", "background-shell"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_the_runner_records_interrupted_and_leaves_no_process(tmp_path, sig, ignored_at_start):
    """`background-shell`: a shell without job control starts `cmd &` with SIGINT ignored; kill -INT must
    still stop the runner."""
    out = tmp_path / "out"
    pidfile = tmp_path / "gc.pid"
    cells = [fake_cell("hang", ["--hang", "--grandchild", str(pidfile)], out_dir=out), fake_cell("next", out_dir=out)]
    plan = write_plan(tmp_path / "plan.json", cells)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runner = subprocess.Popen(
        [sys.executable, "-m", "suite", "run", str(plan), "--out", str(out), "--runtime-option", "grace_s=1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint if ignored_at_start else None,
    )
    metrics = out / cells[0].full_id / "metrics.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
        pidfile.exists() and metrics.exists() and metrics.read_text().count("\n") >= 3
    ):
        time.sleep(0.05)
    tree = [p.pid for p in psutil.Process(runner.pid).children(recursive=True)]
    gc = int(pidfile.read_text())
    runner.send_signal(sig)
    stdout, stderr = runner.communicate(timeout=30)
    assert runner.returncode == 130, stderr
    r = read_result(out / cells[0].full_id / "result.json")
    assert r.status == "interrupted" and len(r.steps) == 3
    assert not (out / cells[1].full_id / "result.json").exists()  # not started: --resume runs it
    for pid in [*tree, gc]:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "interrupted" in stdout and "--resume" in stderr
