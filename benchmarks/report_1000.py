"""Benchmark: `grpo-suite report` over 1,000 results (goal: < 5 s). Not a test; run it by hand:

    python benchmarks/report_1000.py [--results N] [--keep DIR]

Writes N synthetic result files (5 GPU generations x 4 models x 50 cells x 10 steps for N=1000) to a temp
folder, then times the whole command as a user runs it: reading and validating the JSON files, the tables,
~80 SVG plots and the four output files. Prints the best of 3 runs and the median."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from itertools import product
from pathlib import Path

GPUS = ("h100", "h200", "h20", "a100", "b200")
MODELS = ("qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-7b", "qwen2.5-32b")
AXES = list(product((8, 16, 32, 64, 128), ("none", "po"), (1, 2, 4, 8, 16)))  # rank, offload, rollout tp


def write_results(folder: Path, n: int) -> int:
    # the synthetic results are test data (tests/synthetic_results.py), not part of the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from synthetic_results import make_result

    count = 0
    for gpu, model in product(GPUS, MODELS):
        for rank, off, tp in AXES:
            if count >= n:
                return count
            oom = rank == 128 and off == "none" and tp == 1
            r = make_result(
                model=model,
                gpu=gpu,
                n_gpus=4,
                lora_rank=rank,
                offload=off,
                tp=tp,
                rollout_batch=64,
                status="oom" if oom else "ok",
                reason="CUDA out of memory" if oom else None,
            )
            path = folder / gpu / f"{count:04d}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(r.to_json(), encoding="utf-8")
            count += 1
    return count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="write the report here and keep it")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    t0 = time.perf_counter()
    from suite.cli import main as cli  # imports (pydantic, matplotlib, scipy) are part of a user's wait

    import_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "results"
        n = write_results(src, args.results)
        times = []
        for _ in range(args.repeat):
            out = args.keep or Path(tmp) / "report"
            t = time.perf_counter()
            code = cli(["report", str(src), "--out", str(out)])
            times.append(time.perf_counter() - t)
            if code != 0:
                print(f"report exited {code}", file=sys.stderr)
                return code
        size = sum(p.stat().st_size for p in out.iterdir())
    print(
        f"{n} results: best {min(times):.2f} s, median {statistics.median(times):.2f} s "
        f"(+ {import_s:.2f} s imports); output {size / 1e6:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
