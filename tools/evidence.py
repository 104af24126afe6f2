"""Evidence of a GPU run whose cells did not finish: files kept as they came back, logs trimmed, a result
per cell made by the suite's own `ingest`, and the README tables generated from those files (never typed).

    python3 tools/evidence.py make SNAPSHOT OUT_DIR     # SNAPSHOT: the run's unpacked archive (runs/, session.log)
    python3 tools/evidence.py trim LOG > TRIMMED        # the trimming `make` applies to each log.txt
    python3 tools/evidence.py tables OUT_DIR [--readme] # print the tables (or rewrite the README's generated block)

Made for `baselines/evidence/2026-11-28-h100x4-packed/` (the run of `tools/gpu/session.sh` at suite commit
bd8afd7 on 4x H100, cut off mid-run when the host was stopped); the cells and launch stamps of that run are listed
in CELLS.
"""

from __future__ import annotations

import argparse
import json
import lzma
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from suite.telemetry.metrics import MetricsLog, read_metrics  # noqa: E402

YEAR = 2026
SESSION_FILES = ("session.log", "runs/wave-a.log", "runs/wave-b.log", "runs/nvml_overhead.txt")
SNAPSHOT_AT = "about 05:31 UTC"


@dataclass(frozen=True)
class EvidenceCell:
    path: str  # under SNAPSHOT/runs and OUT_DIR
    launched_by: str  # file of session/ whose `=== HH:MM:SS <stamp>` line started the `suite run` of this cell
    stamp: str
    alive: bool  # still running when the host was stopped (-> interrupted); else the log tells


CELLS = (
    EvidenceCell("h100/qwen2.5-0.5b/h100x1/fsdp/lora8-off_none-tp1-rb16", "wave-a.log", "wave a", True),
    EvidenceCell("h100/qwen2.5-0.5b/h100x1/fsdp/lora8-off_none-tp1-rb32", "wave-a.log", "wave a", True),
    EvidenceCell("h100/qwen2.5-0.5b/h100x1/fsdp/full-off_none-tp1-rb16", "wave-a.log", "wave a", True),
    EvidenceCell("h100-oom/qwen2.5-0.5b/h100x1/fsdp/lora8-off_none-tp1-rb16", "wave-b.log", "oom", False),
)

# --- trimming -----------------------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_TQDM = re.compile(r"(\d+)/(\d+) \[[\d:<?]+")
_ENGINE_WARNING = "engine is not available"


def trim(lines: list[str]) -> list[str]:
    """ANSI colour codes stripped; verl's `... engine is not available` UserWarning pairs and unfinished tqdm
    updates dropped (tqdm lines of `Training Progress` and finished bars are kept); every other line verbatim,
    in order. A last line says what was removed."""
    out: list[str] = []
    warnings = bars = 0
    for raw in lines:
        line = _ANSI.sub("", raw)
        if _ENGINE_WARNING in line:
            warnings += 1
            continue
        bar = _TQDM.findall(line)
        if bar and "|" in line and "Training Progress" not in line and bar[-1][0] != bar[-1][1]:
            bars += 1
            continue
        out.append(line)
    out.append(
        f"[tools/evidence.py trim] removed {warnings + bars} of {len(lines)} lines: {warnings} lines of "
        f"verl's '{_ENGINE_WARNING}' UserWarnings, {bars} unfinished tqdm progress updates; ANSI colour "
        "codes stripped; every other line verbatim"
    )
    return out


def read_lines(path: Path) -> list[str]:
    """Lines split at '\\n' only (tqdm's in-place '\\r' updates stay inside their line, as in the file)."""
    data = lzma.decompress(path.read_bytes()) if path.suffix == ".xz" else path.read_bytes()
    lines = data.decode("utf-8", errors="replace").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


# --- making the evidence folder -----------------------------------------------------------------------------


def _ingest(cell_dir: Path, log: Path, cell: EvidenceCell, out: Path) -> None:
    spec = json.loads((cell_dir / "cell.json").read_text())
    args = [
        sys.executable,
        "-m",
        "suite",
        "ingest",
        "--log",
        str(log),
        "--id",
        spec["full_id"],
        "--matrix",
        spec["matrix"],
        "--profile",
        spec["profile"],
        "--gpu",
        spec["gpu"],
        "--n-gpus",
        str(spec["n_gpus"]),
        "--nnodes",
        str(spec["nnodes"]),
        "--model",
        spec["model"],
        "--backend",
        spec["backend"],
        "--warmup",
        str(spec["warmup_steps"]),
        "--argv",
        shlex.join(spec["argv"]),
        "--out",
        str(out),
    ]
    metrics = cell_dir / "metrics.jsonl"
    if metrics.exists():
        args += ["--metrics", str(metrics)]
    if cell.alive:
        log_ = read_metrics(metrics)
        last = f"last step {log_.last_step} of {spec['total_steps']}" if log_.steps else "no step logged yet"
        args += [
            "--status",
            "interrupted",
            "--reason",
            f"cut off: the host was stopped while the cell ran; its files are a snapshot taken at "
            f"{SNAPSHOT_AT} ({last})",
        ]
    subprocess.run(args, check=True, cwd=REPO)


def make(snapshot: Path, out: Path) -> None:
    from suite.results.build import Observation, outcome
    from suite.telemetry.classify import read_log_lines

    (out / "session").mkdir(parents=True, exist_ok=True)
    for name in SESSION_FILES:
        shutil.copyfile(snapshot / name, out / "session" / Path(name).name)
    for cell in CELLS:
        src, dst = snapshot / "runs" / cell.path, out / cell.path
        dst.mkdir(parents=True, exist_ok=True)
        for name in ("cell.json", "metrics.jsonl"):
            if (src / name).exists():
                shutil.copyfile(src / name, dst / name)
        full = read_lines(src / "log.txt")
        trimmed = "\n".join(trim(full)) + "\n"
        (dst / "log.txt.xz").write_bytes(lzma.compress(trimmed.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME))
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "log.txt"
            log.write_text(trimmed, encoding="utf-8")
            # the trimmed log must tell what the full one tells
            assert outcome(Observation(), read_log_lines(log)) == outcome(Observation(), full), cell.path
            _ingest(dst, log, cell, dst / "result.json")
        print(f"{cell.path}: {json.loads((dst / 'result.json').read_text())['status']}")


# --- tables -------------------------------------------------------------------------------------------------

_TS = (
    re.compile(r"(?P<Y>\d{4})-(?P<m>\d\d)-(?P<d>\d\d)[ T](?P<H>\d\d):(?P<M>\d\d):(?P<S>\d\d)"),  # Ray, verl
    re.compile(r"\b(?:INFO|WARNING|ERROR|DEBUG|CRITICAL) (?P<m>\d\d)-(?P<d>\d\d) (?P<H>\d\d):(?P<M>\d\d):(?P<S>\d\d)"),
    re.compile(r"\[[IWEF](?P<m>\d\d)(?P<d>\d\d) (?P<H>\d\d):(?P<M>\d\d):(?P<S>\d\d)\."),  # glog / c10d
)

MILESTONES = (
    ("ray.init() called (verl imports done; Ray's token warning)", re.compile(r"authentication_token_setup")),
    ("Ray started", re.compile(r"Started a local Ray instance")),
    ("datasets loaded", re.compile(r"train and validate dataloader initialized")),
    ("worker group created", re.compile(r"create worker group")),
    ("actor + ref model initialized (FSDP)", re.compile(r"actor and ref model engine initialized")),
    ("vLLM server starting (its first warning)", re.compile(r"\[vllm\.py:\d+\] Enforce eager set")),
    ("checkpoint engine initialized (vLLM up)", re.compile(r"checkpoint engine manager initialized")),
    ("ready to fit", re.compile(r"all initialize finished, ready to fit")),
    ("first ERROR line", re.compile(r"\bERROR \d\d-\d\d ")),
)
READY = "ready to fit"


def timestamp(line: str) -> datetime | None:
    for pat in _TS:
        m = pat.search(line)
        if m:
            g = m.groupdict()
            return datetime(int(g.get("Y") or YEAR), int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"]), int(g["S"]))
    return None


def launch_time(out: Path, cell: EvidenceCell) -> datetime:
    for line in (out / "session" / cell.launched_by).read_text().splitlines():
        m = re.match(r"=== (\d\d):(\d\d):(\d\d) (.*)$", line)
        if m and m.group(4) == cell.stamp:
            return datetime(YEAR, 11, 28, int(m.group(1)), int(m.group(2)), int(m.group(3)))
    raise ValueError(f"no '=== HH:MM:SS {cell.stamp}' line in {cell.launched_by}")


def milestone_times(lines: list[str]) -> dict[str, datetime]:
    seen: dict[str, datetime] = {}
    for line in lines:
        for name, pat in MILESTONES:
            if name not in seen and pat.search(line) and (t := timestamp(line)) is not None:
                seen[name] = t
    return seen


def _f(v: float | None, nd: int = 2) -> str:
    return "" if v is None else f"{v:.{nd}f}"


def step_table(out: Path) -> list[str]:
    rows = [
        "| cell | step | warm-up | timing_s/step | timing_s/gen | timing_s/update_actor | perf/throughput "
        "(tok/s/GPU) | response_length/mean | step − timed phases (s) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in CELLS:
        metrics = out / cell.path / "metrics.jsonl"
        log = read_metrics(metrics) if metrics.exists() else MetricsLog()
        warmup = json.loads((out / cell.path / "cell.json").read_text())["warmup_steps"]
        for s in log.steps:
            untimed = s.timing_s["step"] - sum(v for k, v in s.timing_s.items() if k != "step")
            rows.append(
                f"| {Path(cell.path).name} | {s.step} | {'yes' if s.step <= warmup else ''} | "
                f"{_f(s.timing_s.get('step'))} | {_f(s.timing_s.get('gen'))} | "
                f"{_f(s.timing_s.get('update_actor'))} | {_f(s.throughput, 1)} | "
                f"{_f(s.response_length_mean, 1)} | {_f(untimed)} |"
            )
    return rows


def result_table(out: Path) -> list[str]:
    from suite.results.io import read_result

    rows = [
        "| cell | matrix | status | steps logged | measured (after 2 warm-up) | median tok/s/GPU | "
        "median s/step | reason |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for cell in CELLS:
        r = read_result(out / cell.path / "result.json")
        m = r.measured_steps()
        tput = _f(statistics.median(s.throughput for s in m), 1) if m else ""
        sps = _f(statistics.median(s.time_per_step for s in m)) if m else ""
        rows.append(
            f"| `{cell.path}` | {r.matrix} | `{r.status}` | {len(r.steps)} | {len(m)} | {tput} | {sps} | "
            f"{r.reason or ''} |"
        )
    return rows


def startup_table(out: Path) -> list[str]:
    names = [Path(c.path).name + (" (oom cell)" if c.path.startswith("h100-oom") else "") for c in CELLS]
    rows = ["| milestone (host clock, UTC) | " + " | ".join(names) + " |", "|---" + "|---" * len(CELLS) + "|"]
    data = []
    for cell in CELLS:
        t0 = launch_time(out, cell)
        seen = milestone_times(read_lines(out / cell.path / "log.txt.xz"))
        metrics = out / cell.path / "metrics.jsonl"
        steps = read_metrics(metrics).steps if metrics.exists() else []
        if READY in seen and steps:
            seen["step 1 ends (ready to fit + its timing_s/step)"] = seen[READY] + timedelta(
                seconds=steps[0].time_per_step
            )
            seen["last logged step ends (ready to fit + Σ timing_s/step)"] = seen[READY] + timedelta(
                seconds=sum(s.time_per_step for s in steps)
            )
        data.append((t0, seen))
    order = (
        ["`suite run` launched (session stamp)"]
        + [n for n, _ in MILESTONES]
        + ["step 1 ends (ready to fit + its timing_s/step)", "last logged step ends (ready to fit + Σ timing_s/step)"]
    )
    for name in order:
        cells = []
        for t0, seen in data:
            t = t0 if name.startswith("`suite run`") else seen.get(name)
            cells.append("" if t is None else f"{t:%H:%M:%S} (+{(t - t0).total_seconds():.0f} s)")
        if any(cells):
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def tables(out: Path) -> str:
    nvml = (out / "session" / "nvml_overhead.txt").read_text().rstrip("\n")
    parts = [
        "Per-step numbers of the cells that logged steps (verl's file logger, parsed by `suite.telemetry.metrics`):",
        "",
        *step_table(out),
        "",
        "Per cell, from its `result.json` (made by `grpo-suite ingest`; medians over steps after warm-up):",
        "",
        *result_table(out),
        "",
        "Start-up, from the timestamps in each `log.txt.xz` (seconds since the session's stamp for the `suite run` "
        "that started the cell; the verl process starts a few seconds after it):",
        "",
        *startup_table(out),
        "",
        "`session/nvml_overhead.txt` (`benchmarks/nvml_overhead.py` on GPU 3, before the OOM cell):",
        "",
        "```",
        nvml,
        "```",
    ]
    return "\n".join(parts) + "\n"


BEGIN = "<!-- BEGIN generated by `python3 tools/evidence.py tables DIR --readme`; do not edit -->"
END = "<!-- END generated -->"


def readme_block(readme: str) -> str:
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[start:end].strip("\n") + "\n"


def write_readme_block(out: Path) -> None:
    p = out / "README.md"
    text = p.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    p.write_text(text[:start] + "\n" + tables(out) + text[end:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("snapshot", type=Path)
    m.add_argument("out", type=Path)
    t = sub.add_parser("trim")
    t.add_argument("log", type=Path)
    g = sub.add_parser("tables")
    g.add_argument("out", type=Path)
    g.add_argument("--readme", action="store_true", help="rewrite the generated block of OUT/README.md")
    a = ap.parse_args(argv)
    if a.cmd == "make":
        make(a.snapshot, a.out)
    elif a.cmd == "trim":
        sys.stdout.write("\n".join(trim(read_lines(a.log))) + "\n")
    elif a.readme:
        write_readme_block(a.out)
    else:
        sys.stdout.write(tables(a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
