import json
import time

from suite.telemetry.watch import MetricsWatcher


def test_watcher_reports_steps_and_first_step_time(tmp_path):
    path = tmp_path / "metrics.jsonl"
    seen = []
    w = MetricsWatcher(path, seen.append, poll_s=0.02).start()
    t0 = time.monotonic()
    with path.open("wb", buffering=0) as fh:
        fh.write(json.dumps({"step": 0, "data": {"val-core/openai/gsm8k/acc/mean@1": 0.1}}).encode() + b"\n")
        fh.write(b'{"step": 1, "data": {"perf/time_per_step": 1.0')  # a line written in two parts
        time.sleep(0.1)
        fh.write(b', "perf/throughput": 5}}\n')
        fh.write(json.dumps({"step": 2, "data": {"perf/time_per_step": 1.0}}).encode() + b"\n")
    w.stop()
    assert seen == [1, 2]
    assert w.last_step == 2
    assert w.first_line_time is not None and w.first_step_time >= w.first_line_time >= t0


def test_watcher_follows_a_truncated_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": i, "data": {"perf/time_per_step": 1}}) + "\n" for i in (1, 2, 3)))
    seen = []
    w = MetricsWatcher(path, seen.append, poll_s=10)
    w.poll()
    path.write_text(json.dumps({"step": 1, "data": {"perf/time_per_step": 1}}) + "\n")  # verl restarted
    w.poll()
    assert seen == [1, 2, 3, 1]


def test_a_failing_callback_does_not_stop_the_watcher(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"step": 1, "data": {"perf/time_per_step": 1}}) + "\n")

    def boom(step):
        raise RuntimeError("display broke")

    w = MetricsWatcher(path, boom)
    w.poll()
    assert w.last_step == 1


def test_watcher_records_when_each_step_was_first_seen(tmp_path):
    path = tmp_path / "metrics.jsonl"
    w = MetricsWatcher(path, poll_s=10)
    path.write_text(json.dumps({"step": 1, "data": {"perf/time_per_step": 1}}) + "\n")
    before = time.monotonic()
    w.poll()
    with path.open("a") as fh:
        fh.write(json.dumps({"step": 0, "data": {"val-core/x/acc/mean@1": 0.5}}) + "\n")  # no step time: not a step
        fh.write(json.dumps({"step": 2, "data": {"perf/time_per_step": 1}}) + "\n")
    time.sleep(0.01)
    w.poll()
    assert set(w.step_seen) == {1, 2}
    assert before <= w.step_seen[1] < w.step_seen[2] <= time.monotonic()
    path.write_text(json.dumps({"step": 1, "data": {"perf/time_per_step": 1}}) + "\n")  # verl restarted
    first = w.step_seen[1]
    w.poll()
    assert w.step_seen[1] == first  # the first sighting stays
