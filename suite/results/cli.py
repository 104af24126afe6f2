"""`grpo-suite ingest` (a verl run made outside the suite -> result JSON) and `grpo-suite results validate`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

STATUSES = ("ok", "oom", "crash", "timeout", "interrupted")  # what a run that was started can end as


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="turn an existing verl run (file-logger JSONL) into a result JSON")
    p.add_argument(
        "--metrics",
        default=None,
        help="verl file-logger output (VERL_FILE_LOGGER_PATH); omit only for a run that never wrote "
        "one (then --log is required)",
    )
    p.add_argument("--log", default=None, help="the run's console log: failure class and reason")
    p.add_argument("--validation-dir", default=None, help="trainer.validation_data_dir: exact accuracy counts")
    p.add_argument("--id", required=True, help="cell id, e.g. qwen2.5-0.5b/h100x1/fsdp/lora8-off_none-tp1-rb16")
    p.add_argument("--matrix", default="ingested", help="matrix name (default: ingested)")
    p.add_argument("--profile", default="train", help="bench or train (default: train)")
    p.add_argument("--gpu", default="unknown", help="GPU generation key, e.g. h100")
    p.add_argument("--n-gpus", type=int, default=1, help="world size (default 1)")
    p.add_argument("--nnodes", type=int, default=1)
    p.add_argument("--model", default="unknown", help="HF id, path or synthetic:<arch>")
    p.add_argument("--backend", default="fsdp", help="fsdp or megatron (default fsdp)")
    p.add_argument("--warmup", type=int, default=0, help="warm-up steps excluded from statistics (default 0)")
    p.add_argument(
        "--exit-code", type=int, default=None, help="the run's exit code; without it the status is inferred from --log"
    )
    p.add_argument(
        "--status",
        default=None,
        choices=STATUSES,
        help="the run's status when neither its exit code nor its log can tell it, e.g. interrupted "
        "for a run cut off by its machine going away (needs --reason)",
    )
    p.add_argument("--reason", default=None, help="why, with --status (recorded as the result's reason)")
    p.add_argument("--argv", default=None, help="the run's command line (recorded in provenance)")
    p.add_argument(
        "--started-at",
        default=None,
        help="when the run's process started, ISO 8601 in the log's clock (e.g. 2026-12-04T04:00:13Z): recorded "
        "as provenance.start_time, and with --log the start-up milestones are recovered from the times the "
        "log's lines carry (startup_breakdown_s)",
    )
    p.add_argument("--out", default=None, help="write here (atomically) instead of stdout")
    p.set_defaults(func=ingest)

    v = sub.add_parser("results", help="result files: validate against the schema")
    vs = v.add_subparsers(dest="results_command", metavar="ACTION")
    val = vs.add_parser("validate", help="check result JSON files against the schema (exit 2 on the first bad)")
    val.add_argument("files", nargs="+")
    val.set_defaults(func=validate)


def ingest(args: argparse.Namespace) -> int:
    import shlex
    from pathlib import Path

    from suite.errors import InputError
    from suite.results import provenance as prov
    from suite.results.build import CellInfo, Observation, build_result
    from suite.results.io import write_result

    if args.metrics is None and not args.log:
        raise InputError("give --metrics, or --log for a run that wrote no metrics", field="--metrics")
    metrics = Path(args.metrics) if args.metrics is not None else None
    if metrics is not None and not metrics.is_file():
        raise InputError("file not found", source=str(metrics), field="--metrics")
    if args.reason is not None and args.status is None:
        raise InputError(
            "--reason needs --status (otherwise the reason comes from --exit-code / --log)", field="--reason"
        )
    if args.status not in (None, "ok") and not args.reason:
        raise InputError(f"--status {args.status} needs --reason: say why", field="--status")
    if args.status is not None and args.exit_code is not None:
        raise InputError("give --status or --exit-code, not both", field="--status")
    if args.log and not Path(args.log).is_file():
        raise InputError("file not found", source=args.log, field="--log")
    if args.validation_dir and not Path(args.validation_dir).is_dir():
        raise InputError("directory not found", source=args.validation_dir, field="--validation-dir")
    if args.n_gpus < 1:
        raise InputError(f"bad value {args.n_gpus}; allowed: >= 1", field="--n-gpus")
    started = _started_at(args.started_at) if args.started_at else None
    breakdown = None
    if started is not None and args.log:
        from suite.telemetry.startup import milestones_from_timestamps

        lines = Path(args.log).read_text(errors="replace").splitlines()
        breakdown = milestones_from_timestamps(lines, started)
    info = CellInfo(
        id=args.id,
        matrix=args.matrix,
        profile=args.profile,
        gpu=args.gpu,
        n_gpus=args.n_gpus,
        nnodes=args.nnodes,
        model=args.model,
        backend=args.backend,
        warmup_steps=args.warmup,
    )
    obs = Observation(
        metrics_path=metrics,
        log_path=Path(args.log) if args.log else None,
        validation_dir=Path(args.validation_dir) if args.validation_dir else None,
        exit_code=args.exit_code,
        status=args.status,
        reason=args.reason,
        startup_breakdown=breakdown,
    )
    # The run's own environment is unknown: record none rather than the ingesting shell's.
    provenance = prov.collect(
        argv=shlex.split(args.argv) if args.argv else [],
        env={},
        runtime="ingest",
        model_source=args.model,
        start_time=_iso(started) if started is not None else None,
    )
    extra = {"ingested_at": prov.now_iso(), "metrics": str(metrics.resolve()) if metrics else "none"}
    # The run's host is unknown too (the ingesting machine's name would be wrong); git_commit is the suite
    # that made this result (ingested it).
    from suite.gpus import GPUS
    from suite.results.consistency import id_parts

    parsed = id_parts(args.id)
    if parsed is not None and parsed[0] != args.gpu and parsed[0] in GPUS and args.gpu in GPUS:
        extra["planned_gpu"] = parsed[0]  # --gpu is the card it ran on; the id keeps the plan's generation
    # versions unknown too: none looked up, so none reads as not installed
    provenance = provenance.model_copy(update={"versions": {}, "packages_checked": None, "host": None, "extra": extra})
    result = build_result(info, obs, provenance)
    if not result.steps and result.status == "ok":
        raise InputError(
            "no training step with perf/throughput and perf/time_per_step", source=str(metrics), field="--metrics"
        )
    if args.out:
        write_result(args.out, result)
    else:
        print(result.to_json())
    return 0


def _started_at(text: str) -> datetime:
    """Naive UTC: the log's clock on the suite's hosts."""
    from datetime import UTC, datetime

    from suite.errors import InputError

    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"bad value {text!r}; allowed: an ISO 8601 time, e.g. 2026-12-04T04:00:13Z", field="--started-at"
        ) from None
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo is not None else t


def _iso(t: datetime) -> str:
    from datetime import UTC

    return t.replace(tzinfo=UTC).isoformat(timespec="seconds")  # as provenance.now_iso writes times


def validate(args: argparse.Namespace) -> int:
    from suite.results.io import read_result

    for f in args.files:
        r = read_result(f)
        print(f"{f}: ok ({r.id}, {r.status}, {len(r.steps)} steps)")
    return 0
