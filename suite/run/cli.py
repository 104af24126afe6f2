"""`grpo-suite run`: plan a matrix and run its cells with a runtime, writing one result per cell.

The suite's own modules are imported inside the commands: `grpo-suite --help` and every other subcommand
register these parsers, and must not load the planner, telemetry and runtimes to do so."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import tempfile
from pathlib import Path

from suite.errors import EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, InputError


def register(sub: argparse._SubParsersAction) -> None:
    _register_run(sub)
    _register_cache(sub)


def _register_cache(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache",
        help="carry compiled kernels (vLLM's, inductor's and Triton's caches) to a fresh host: export, import, merge, show",
    )
    csub = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    where = "vLLM's cache directory (default: the one the cells use, under $GRPO_SUITE_CACHE)"
    e = csub.add_parser("export", help="pack this host's compile caches, with a manifest of the versions they need")
    e.add_argument("--out", required=True, help="archive to write (.tar.xz)")
    e.add_argument("--cache-dir", default=None, help=where)
    _kernel_dir_arguments(e)
    e.set_defaults(func=_cache_export)
    i = csub.add_parser("import", help="unpack an exported cache before the first cell (existing files kept)")
    i.add_argument("archive")
    i.add_argument("--cache-dir", default=None, help=where)
    _kernel_dir_arguments(i)
    i.add_argument(
        "--force", action="store_true", help="unpack even when vLLM, torch or Triton differs from this host's"
    )
    i.set_defaults(func=_cache_import)
    m = csub.add_parser(
        "merge",
        help="one archive of several hosts' exports (the first named wins a file two hold); refused across versions",
    )
    m.add_argument("archives", nargs="+", metavar="ARCHIVE")
    m.add_argument("--out", required=True, help="archive to write (.tar.xz); may be one of the inputs")
    m.set_defaults(func=_cache_merge)
    s = csub.add_parser("show", help="an archive's manifest, or what this host would export")
    s.add_argument(
        "path", nargs="?", default=None, help="archive or vLLM's cache directory (default: the cells' cache)"
    )
    _kernel_dir_arguments(s)
    s.set_defaults(func=_cache_show)


def _kernel_dir_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--inductor-dir",
        default=None,
        help="torch.compile's (inductor's) cache directory (default: the cells', $GRPO_SUITE_CACHE/torchinductor)",
    )
    p.add_argument(
        "--triton-dir", default=None, help="Triton's cache directory (default: the cells', $GRPO_SUITE_CACHE/triton)"
    )


def _cache_dirs(args: argparse.Namespace, cache_dir: str | None) -> dict[str, Path]:
    """Each part's directory, by archive name: the flags', else the cells' own."""
    from suite.run import compile_cache

    given = compile_cache.part_dirs(
        Path(cache_dir) if cache_dir else None,
        Path(args.inductor_dir) if args.inductor_dir else None,
        Path(args.triton_dir) if args.triton_dir else None,
    )
    return compile_cache.default_dirs() | given


def _gpu_name() -> str | None:
    from suite.telemetry.nvml import gpu_info, nvml_session

    with nvml_session() as nvml:  # None without NVML: the manifest then names no GPU
        info = gpu_info(nvml, None)
    return info.name if info else None


def _cache_export(args: argparse.Namespace) -> int:
    from suite.run import compile_cache

    d = _cache_dirs(args, args.cache_dir)
    m = compile_cache.export_cache(
        d[compile_cache.SUBDIR],
        Path(args.out),
        compile_cache.here_versions(),
        _gpu_name(),
        inductor_dir=d["torchinductor"],
        triton_dir=d["triton"],
    )
    print(f"{args.out}: {m.describe()}")
    return EXIT_OK


def _cache_import(args: argparse.Namespace) -> int:
    from suite.run import compile_cache

    d = _cache_dirs(args, args.cache_dir)
    done = compile_cache.import_cache(
        Path(args.archive),
        d[compile_cache.SUBDIR],
        compile_cache.here_versions(),
        force=args.force,
        inductor_dir=d["torchinductor"],
        triton_dir=d["triton"],
    )
    print(f"{args.archive}: {done.manifest.describe()}; {done.added} files added, {done.kept} already there")
    for name, c in done.parts.items():
        print(f"  {name}/ -> {c.into}: {c.added} added, {c.kept} kept")
    return EXIT_OK


def _cache_merge(args: argparse.Namespace) -> int:
    import tempfile

    from suite.run import compile_cache

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".merge-", dir=out.parent) as work:  # beside out: caches grow large
        done = compile_cache.merge_caches([Path(a) for a in args.archives], out, Path(work))
    for archive, unpacked in done.inputs:
        print(f"{archive}: {unpacked.manifest.describe()}; {unpacked.added} files taken, {unpacked.kept} already held")
    print(f"{out}: {done.manifest.describe()}")
    return EXIT_OK


def _cache_show(args: argparse.Namespace) -> int:
    from suite.run import compile_cache

    path = Path(args.path) if args.path else None
    if path is not None and path.is_file():
        m, roots = compile_cache.read_manifest(path), {}
    elif path is None or path.is_dir():
        # what `cache export --cache-dir PATH` would pack, with the same inductor and Triton directories
        d = _cache_dirs(args, args.path)
        roots = {p.name: p.root(d[p.name]) for p in compile_cache.PARTS}
        path = d[compile_cache.SUBDIR]
        m = compile_cache.scan(
            path, compile_cache.here_versions(), inductor_dir=d["torchinductor"], triton_dir=d["triton"]
        )
    else:
        raise InputError(f"{path}: no such archive or cache directory", field="path")
    print(f"{path}: {m.describe()}")
    for part in compile_cache.PARTS:
        held = m.parts.get(part.name)
        source = f" from {roots[part.name]}" if part.name in roots else ""
        if held is None:
            if source:
                print(f"  {part.name}/: nothing at {roots[part.name]}")
            continue
        print(f"  {part.name}/{source}: {held.describe()}")
        for entry in held.entries if part.lists_entries else ():
            print(f"    {entry}")
    return EXIT_OK


def _register_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a matrix's cells (verl + vLLM) and write one result JSON per cell")
    _selection_arguments(p)
    p.add_argument("--runtime", default="host", help="host (default), docker, ray or slurm")
    p.add_argument("--out", default="runs", help="results directory (default: ./runs); one folder per cell")
    p.add_argument("--resume", action="store_true", help="run only cells without a final result")
    p.add_argument("--fail-fast", action="store_true", help="stop the matrix at the first failed cell")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="per-cell timeout, seconds")
    p.add_argument(
        "--parallel",
        default="1",
        metavar="auto|N",
        help="cells at once on disjoint GPUs (default 1; auto: floor(GPUs / GPUs per cell))",
    )
    p.add_argument(
        "--gpus",
        default=None,
        metavar="LIST",
        help="GPU indices the run may use, e.g. 0,1,2,3 (default: every GPU NVML sees)",
    )
    p.add_argument("--dry-run", action="store_true", help="print each cell's command; run nothing")
    p.add_argument("--address", default=None, help="Ray cluster address (ray runtime)")
    p.add_argument("--image", default=None, help="container image reference (docker / slurm runtimes)")
    p.add_argument(
        "--runtime-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra keyword option for the runtime (repeatable)",
    )
    p.add_argument(
        "--skip-predicted-oom",
        action="store_true",
        help="record cells the memory planner predicts to OOM as skipped instead of running them",
    )
    p.add_argument(
        "--order",
        default="plan",
        choices=("plan", "speed"),
        help="plan: the matrix's order (default); speed: the reference first, then the cells predicted to fit "
        "memory, fastest predicted first (grpo-suite speed predict)",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="S",
        help="start only the cells whose predicted wall times, one after another in --order, fit S seconds; "
        "the rest are listed and left for a later --resume",
    )
    p.add_argument("--data-root", default=None, help="directory holding train.parquet/test.parquet")
    p.add_argument("--no-verl-check", action="store_true", help="skip composing each cell with verl's config")
    p.add_argument(
        "--no-preflight",
        action="store_true",
        help="skip importing what the cells need before the first cell (host runtime)",
    )
    p.set_defaults(func=run)

    d = sub.add_parser(
        "doctor",
        help="check, before any GPU time, that this environment imports what a "
        "matrix's cells need (backend, LoRA, remove-padding, apex); exit 2 if not",
    )
    _selection_arguments(d)
    d.add_argument("--format", default="table", choices=("table", "json"), help="output format")
    d.set_defaults(func=doctor)


def _selection_arguments(p: argparse.ArgumentParser) -> None:
    """What `run` and `doctor` both take: the matrix, its profile, the cells."""
    p.add_argument("matrix", help="matrix TOML file, or a plan JSON (grpo-suite plan --format json)")
    p.add_argument("--profile", default="bench", help="profile of the matrix: bench (default) or train")
    p.add_argument(
        "--cells",
        default=None,
        metavar="PATTERN",
        help="glob(s) over cell id or full id, comma-separated (e.g. 'lora8-*')",
    )


def _preflight(cells: list) -> list:
    """Findings for the cells; an InputError (exit 2) listing every failed import with its fix."""
    from suite.run import preflight

    findings, python = preflight.check_cells(cells)
    bad = preflight.errors(findings)
    if bad:
        raise InputError(
            "this environment cannot import what the selected cells need (checked before any GPU "
            "time; --no-preflight skips the check):\n" + preflight.format_findings(bad, python=python),
            field="environment",
        )
    return findings


def _selected(cells: list, pattern: str | None) -> list:
    """The cells `--cells` picks; none is an input error that lists the cells there are."""
    from suite.run.runner import select

    selected = select(cells, pattern)
    if not selected:
        raise InputError(f"no cell matches {pattern!r}; cells: {', '.join(c.id for c in cells)}", field="--cells")
    return selected


def _scheduled(cells: list, order: str, budget_s: float | None) -> list:
    """The cells in `--order`, those past `--time-budget` left out (listed on stderr, no result written)."""
    from suite.speed.predict import predict_cells
    from suite.speed.schedule import schedule

    plan = schedule(cells, predict_cells(cells), order=order, budget_s=budget_s)
    budget = f" of {budget_s:g} s" if budget_s is not None else ""
    print(
        f"order {order}: {len(plan.start)} cells to start, predicted {plan.predicted_s:.0f} s{budget} one after another",
        file=sys.stderr,
    )
    for lo in plan.left_out:
        print(f"not started: {lo.cell.id}: {lo.reason}", file=sys.stderr)
    if not plan.start:
        raise InputError(f"no selected cell is predicted to fit {budget_s:g} s", field="--time-budget")
    return plan.start


def _gpu_info(gpu_ids: list[int] | None) -> object | None:
    from suite.telemetry.nvml import gpu_info, nvml_session

    with nvml_session() as nvml:
        return gpu_info(nvml, gpu_ids)


def doctor(args: argparse.Namespace) -> int:
    from suite.run import preflight, prepare

    with tempfile.TemporaryDirectory() as tmp:
        _, cells = prepare.plan(args.matrix, args.profile, Path(tmp), verl_check=False)
    selected = _selected(cells, args.cells)
    findings, python = preflight.check_cells(selected)
    gpu_ids = prepare.host_gpu_ids()
    findings += preflight.gpu_findings(selected, _gpu_info(gpu_ids), len(gpu_ids) if gpu_ids else None)
    if args.format == "json":
        print(json.dumps({"python": python, "findings": [dataclasses.asdict(f) for f in findings]}, indent=2))
    else:
        print(preflight.format_findings(findings, python=python) or "no runnable cell selected")
    return EXIT_USAGE if preflight.errors(findings) else EXIT_OK


def _runtime_options(args: argparse.Namespace) -> dict[str, object]:
    opts: dict[str, object] = {}
    for item in args.runtime_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"bad value {item!r}; allowed: KEY=VALUE", field="--runtime-option")
        opts[key.replace("-", "_")] = value
    if args.address is not None:
        opts["address"] = args.address
    if args.image is not None:
        opts["image"] = args.image
    if args.dry_run:
        opts["dry_run"] = True
    return opts


def run(args: argparse.Namespace) -> int:
    from suite.run import prepare
    from suite.run.progress import Progress
    from suite.run.runner import RunOptions, run_cells
    from suite.run.runtime import make_runtime
    from suite.run.slots import parse_gpu_ids, parse_parallel
    from suite.run.summary import table

    parallel = parse_parallel(args.parallel)
    gpu_ids = parse_gpu_ids(args.gpus) if args.gpus else None
    if args.timeout is not None and args.timeout <= 0:
        raise InputError(f"bad value {args.timeout}; allowed: seconds > 0", field="--timeout")
    runtime = make_runtime(args.runtime, **_runtime_options(args))
    out_dir = Path(args.out).expanduser().resolve()
    matrix, cells = prepare.plan(
        args.matrix, args.profile, out_dir, data_root=args.data_root, verl_check=not args.no_verl_check
    )
    if gpu_ids is None and runtime.pins_gpus:
        gpu_ids = prepare.host_gpu_ids()
    options = RunOptions(
        cells=args.cells,
        resume=args.resume,
        fail_fast=args.fail_fast,
        timeout_s=args.timeout,
        parallel=parallel,
        gpu_ids=gpu_ids,
        skip_predicted_oom=args.skip_predicted_oom,
        dry_run=args.dry_run,
    )
    selected = _selected(cells, args.cells)
    if args.order != "plan" or args.time_budget is not None:
        selected = _scheduled(selected, args.order, args.time_budget)
    if runtime.local and not args.dry_run and not args.no_preflight:
        _preflight(selected)  # before models and data are built: those take minutes too
    if not args.dry_run and any(c.status != "invalid" for c in selected):
        prepare.ensure_inputs(matrix, selected, data_root=args.data_root)
    if runtime.local and (
        note := prepare.generation_note([c.gpu for c in selected], prepare.host_device_name(gpu_ids))
    ):
        print(f"warning: {note}", file=sys.stderr)

    def _term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _term)
    # A shell without job control starts background commands (`grpo-suite run ... &`, nohup scripts, CI
    # steps) with SIGINT ignored, and Python then never raises KeyboardInterrupt: `kill -INT` must still
    # stop the cells and record them.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    slots = prepare.max_slots(selected, gpu_ids, parallel)
    if slots > 1 and not runtime.concurrent_safe:
        # verl's weight-transfer sockets of two cells on one host collide (suite/run/private_tmp.py)
        print(
            f"warning: --parallel {args.parallel} needs a private /tmp per cell, and this host cannot give one "
            f"({runtime.concurrency_note}); running one cell at a time. --runtime-option private_tmp=off "
            "packs cells anyway.",
            file=sys.stderr,
        )
        options = dataclasses.replace(options, parallel=1)
        slots = 1
    try:
        with Progress(total=len(selected), slots=slots, live=None if not args.dry_run else False) as progress:
            summary = run_cells(selected, out_dir, runtime, options, progress=None if args.dry_run else progress)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    if args.dry_run:
        return EXIT_OK
    print(table(summary.outcomes))
    print(
        f"\nresults: {out_dir} ({sum(o.result is not None for o in summary.outcomes)} result files; "
        f"{len(summary.failed)} failed, {len(summary.not_run)} not run)"
    )
    if summary.interrupted:
        print("interrupted: cells in flight were stopped and recorded; run again with --resume", file=sys.stderr)
        return 130
    return EXIT_REGRESSION if summary.failed else EXIT_OK
