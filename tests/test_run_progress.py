import io
import time

from suite.run.progress import Progress


def test_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    with Progress(total=3, slots=2, stream=stream) as p:
        assert not p.live
        p.started("m/a", [0], 8)
        p.step("m/a", 3)
        p.finished("m/a", "ok")
        p.finished("m/b", "crash", reused=True)
    assert stream.getvalue().splitlines() == ["[1/3] m/a: ok", "[2/3] m/b: crash (earlier result)"]
    assert (p.done, p.failed) == (2, 1)


def test_eta_from_mean_cell_time_and_slots():
    p = Progress(total=5, slots=2, stream=io.StringIO())
    assert p.eta_s() is None
    p.started("a", None, 1)
    time.sleep(0.05)
    p.finished("a", "ok")
    eta = p.eta_s()
    assert eta is not None and 0.05 <= eta <= 4 * 0.5 / 2  # 4 cells left at ~0.05 s each over 2 slots


def test_live_table_renders_running_cells():
    stream = io.StringIO()
    with Progress(total=2, slots=1, stream=stream, live=True) as p:
        p.started("qwen/h100x1/fsdp/lora8", [0], 10)
        p.step("qwen/h100x1/fsdp/lora8", 4)
        from rich.console import Console

        console = Console(file=io.StringIO(), width=200)
        console.print(p._render())
        text = console.file.getvalue()
    assert "qwen/h100x1/fsdp/lora8" in text and "4/10" in text and "cells 0/2 done" in text
