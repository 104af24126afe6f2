import json

from suite.telemetry.validation import count_file, first_and_last, flexible_answer


def dump(path, samples):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))


def sample(output, gts, score, **extra):
    # Keys as verl 0.9.1 RayPPOTrainer._write_generations writes them.
    return {"input": "q", "output": output, "gts": gts, "score": score, "step": 0, "reward": score, **extra}


def test_counts_strict_by_score_and_flexible_by_last_number(tmp_path):
    p = tmp_path / "val" / "0.jsonl"
    dump(p, [
        sample("so #### 42", "42", 1.0),
        sample("the answer is 42", "42", 0.0),  # flexible match only
        sample("#### 7", "8", 0.0),
    ])
    c = count_file(p)
    assert (c.step, c.correct, c.total, c.flexible_correct) == (0, 1, 3, 2)


def test_acc_field_wins_over_score(tmp_path):
    p = tmp_path / "5.jsonl"
    dump(p, [sample("x", "1", 0.5, acc=True), sample("x", "1", 1.0, acc=False)])
    c = count_file(p)
    assert (c.correct, c.total) == (1, 2)


def test_first_and_last_by_step_number_not_name(tmp_path):
    d = tmp_path / "val"
    dump(d / "0.jsonl", [sample("#### 1", "1", 1.0), sample("no", "1", 0.0)])
    dump(d / "10.jsonl", [sample("#### 1", "1", 1.0)] * 2)
    dump(d / "2.jsonl", [sample("no", "1", 0.0)] * 2)
    (d / "notes.jsonl").write_text("{}\n")
    first, last = first_and_last(d)
    assert (first.step, first.correct, first.total) == (0, 1, 2)
    assert (last.step, last.correct, last.total) == (10, 2, 2)
    assert last.accuracy().source.endswith("10.jsonl")


def test_partial_last_line_is_skipped(tmp_path):
    p = tmp_path / "3.jsonl"
    p.write_text(json.dumps(sample("#### 1", "1", 1.0)) + "\n" + '{"input": "q", "outp')
    c = count_file(p)
    assert (c.correct, c.total) == (1, 1)


def test_no_dumps(tmp_path):
    assert first_and_last(tmp_path / "missing") == (None, None)
    (tmp_path / "0.jsonl").write_text("")
    assert first_and_last(tmp_path) == (None, None)


def test_flexible_answer_matches_verl():
    assert flexible_answer("a 1, then 2.") == "2."
    assert flexible_answer("nothing") is None
    assert flexible_answer("x" * 400 + " 5") == "5"
    assert flexible_answer("9 " + "x" * 400) is None  # only the last 300 characters count
