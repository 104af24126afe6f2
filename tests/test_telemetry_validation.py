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
    dump(
        p,
        [
            sample("so #### 42", "42", 1.0),
            sample("the answer is 42", "42", 0.0),  # flexible match only
            sample("#### 7", "8", 0.0),
        ],
    )
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


def test_compressed_dumps_are_read_like_plain_ones(tmp_path):
    # evidence folders keep verl's dumps xz-compressed (baselines/evidence/...); a step appears once either way
    import lzma

    from suite.telemetry.validation import dump_files, first_and_last

    rows = [{"input": "q", "output": "#### 1" if i < 3 else "no", "gts": "1", "score": float(i < 3)} for i in range(8)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    with lzma.open(tmp_path / "0.jsonl.xz", "wt", encoding="utf-8") as fh:
        fh.write(text)
    (tmp_path / "12.jsonl").write_text(text.replace('"score": 0.0', '"score": 1.0'))
    (tmp_path / "notes.jsonl").write_text("{}\n")
    (tmp_path / "3.jsonl.gz").write_text("not read")
    assert [p.name for p in dump_files(tmp_path)] == ["0.jsonl.xz", "12.jsonl"]
    first, last = first_and_last(tmp_path)
    assert (first.step, first.correct, first.total) == (0, 3, 8)
    assert (last.step, last.correct, last.total) == (12, 8, 8)


def test_the_real_compressed_smollm2_dump():
    from pathlib import Path

    from suite.telemetry.validation import first_and_last

    d = (
        Path(__file__).resolve().parents[1]
        / "baselines"
        / "evidence"
        / "2026-11-28-h200x2"
        / "host-a"
        / "h100"
        / "smollm2-135m-instruct"
        / "h100x1"
        / "fsdp"
        / "full-off_none-tp1-rb32"
        / "validation"
    )
    first, last = first_and_last(d)
    assert first == last and (first.step, first.correct, first.total) == (0, 0, 256)
    assert first.flexible_correct == 2
