"""GSM8K in verl's parquet layout, from the real `openai/gsm8k` dataset or generated offline.

Row layout (what verl's RL dataset and its gsm8k scorer read): `data_source="openai/gsm8k"`,
`prompt=[{"role": "user", "content": question + INSTRUCTION}]`, `ability="math"`,
`reward_model={"style": "rule", "ground_truth": "<number>"}`, `extra_info={split, index, answer, question}`.
The offline set keeps `data_source="openai/gsm8k"` so verl scores it with the same strict GSM8K scorer."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from suite.errors import InputError

INSTRUCTION = ' Let\'s think step by step and output the final answer after "####".'
DATA_SOURCE = "openai/gsm8k"
_GT = re.compile(r"####\s*(-?[\d,\.]+)")
# reasoning-gym's gsm_symbolic appends its own answer-format request; ours replaces it.
_RG_SUFFIX = re.compile(r"\s*Give the result as your final answer\. Do not include units\.\s*$")


def ground_truth(answer: str) -> str:
    """The number after the last '####' of a GSM8K answer, commas removed (as verl's scorer compares)."""
    found = _GT.findall(answer)
    if not found:
        raise ValueError(f"no '#### <number>' in answer: {answer[-80:]!r}")
    return found[-1].replace(",", "").rstrip(".")


def verl_row(question: str, answer: str, split: str, index: int) -> dict:
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": question.strip() + INSTRUCTION}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": ground_truth(answer)},
        "extra_info": {"split": split, "index": index, "answer": answer, "question": question},
    }


def verl_rows(records: Iterable[dict], split: str) -> Iterator[dict]:
    for i, rec in enumerate(records):
        yield verl_row(rec["question"], rec["answer"], split, i)


def write_parquet(rows: Iterable[dict], path: str | Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(rows)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    tmp.replace(p)
    return len(rows)


def load_gsm8k(source: str = DATA_SOURCE) -> dict[str, list[dict]]:
    """{"train": [...], "test": [...]} of {question, answer} from the hub id or a local copy: a directory
    holding train/test files (.parquet or .jsonl), as `datasets` would save or a user would download."""
    local = Path(source).expanduser()
    if local.exists():
        out = {}
        for split in ("train", "test"):
            files = sorted(local.glob(f"**/{split}*.parquet")) or sorted(local.glob(f"**/{split}*.jsonl"))
            if not files:
                raise InputError(f"no {split}*.parquet or {split}*.jsonl under {local}", field="source")
            out[split] = [r for f in files for r in _read_records(f)]
        return out
    try:
        import datasets

        ds = datasets.load_dataset(source, "main")
    except Exception as exc:  # the hub is unreachable on air-gapped machines: say what to do instead
        raise InputError(
            f"could not load {source!r} from the Hugging Face hub ({type(exc).__name__}: {str(exc)[:200]}); "
            "pass a local copy with --source DIR, or use --offline for a generated GSM8K-style set",
            field="source",
        ) from exc
    return {
        split: [{"question": r["question"], "answer": r["answer"]} for r in ds[split]] for split in ("train", "test")
    }


def _read_records(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return [{"question": r["question"], "answer": r["answer"]} for r in pq.read_table(path).to_pylist()]
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def offline_gsm8k(n_train: int, n_test: int, seed: int = 0) -> dict[str, list[dict]]:
    """GSM8K-derived problems generated offline by reasoning-gym's `gsm_symbolic` (templates of GSM8K test
    problems with fresh numbers), as {question, answer} with a GSM8K-style answer ending in '#### N'."""
    try:
        import reasoning_gym
    except ImportError as exc:
        raise InputError("the offline GSM8K set needs the PyPI package reasoning-gym", field="offline") from exc
    out = {}
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1_000_003)):
        ds = reasoning_gym.create_dataset("gsm_symbolic", size=n, seed=s)
        out[split] = [
            {
                "question": _RG_SUFFIX.sub("", x["question"]),
                "answer": _with_final(x["metadata"].get("answer_cot", ""), x["answer"]),
            }
            for x in ds
        ]
    return out


def _with_final(cot: str, answer: str) -> str:
    cot = cot.strip()
    return cot if _GT.search(cot) else f"{cot}\n#### {answer}".lstrip()


def write_gsm8k(out_dir: str | Path, splits: dict[str, list[dict]]) -> dict[str, int]:
    out = Path(out_dir)
    return {split: write_parquet(verl_rows(recs, split), out / f"{split}.parquet") for split, recs in splits.items()}
