"""`grpo-suite memory predict MATRIX...` (predicted peak per cell, per phase, and host RAM per node) and
`grpo-suite memory validate RESULTS...` (predicted vs measured NVML peaks and host peaks)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("memory", help="predict per-GPU and host peak memory of cells; validate against measured peaks")
    msub = p.add_subparsers(dest="memory_command", metavar="SUBCOMMAND")

    pr = msub.add_parser(
        "predict", help="predicted peak memory per cell of matrices, with the per-phase totals and host RAM per node"
    )
    pr.add_argument("matrix", nargs="+", help="matrix TOML files (e.g. suite/matrices/*.toml)")
    pr.add_argument("--profile", default="bench", help="profile of the matrix (default: bench)")
    pr.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    pr.add_argument("--calibration", default=None, help="calibration TOML (default: suite/memory/calibration.toml)")
    pr.set_defaults(func=run_predict)

    va = msub.add_parser("validate", help="predicted vs measured peak (worst GPU, host) for stored results")
    va.add_argument("results", nargs="+", help="result JSON files or directories (e.g. baselines/h100)")
    va.add_argument("--tolerance", type=float, default=10.0, help="error band in percent (default: 10)")
    va.add_argument("--format", choices=("markdown", "json"), default="markdown")
    va.add_argument("--calibration", default=None, help="calibration TOML (default: suite/memory/calibration.toml)")
    va.add_argument("--fit", action="store_true", help="also print the runtime_gib that centres the errors")
    va.add_argument(
        "--processes",
        action="store_true",
        help="also compare the host model's processes with the RSS by process role the results recorded",
    )
    va.add_argument(
        "--phases",
        action="store_true",
        help="also compare each phase's predicted total with its NVML peak, for results with an NVML timeline",
    )
    va.set_defaults(func=run_validate)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _calibration(path: str | None):  # -> Calibration
    from suite.memory.calibration import default_calibration, load_calibration

    return load_calibration(path) if path else default_calibration()


def predicted_cells(matrix_path: str, profile: str, calibration=None) -> list:
    """The planned cells of one matrix (commands not composed with verl: memory needs none) annotated with
    predictions. The cells' file paths point into a throw-away directory."""
    import tempfile

    from suite.matrix import load_matrix
    from suite.memory.predict import annotate_cells
    from suite.plan.planner import plan_matrix

    m = load_matrix(matrix_path)
    with tempfile.TemporaryDirectory() as tmp:
        cells = plan_matrix(m, profile, out_dir=tmp, validate_with_verl=False)
    return annotate_cells(cells, calibration)


def run_predict(args: argparse.Namespace) -> int:
    import json

    from suite.memory.predict import cell_host_gib, predict_cell, predict_cell_host

    cal = _calibration(args.calibration)
    blocks: list[str] = []
    as_json: list[dict] = []
    for path in args.matrix:
        cells = predicted_cells(path, args.profile, cal)
        rows = []
        for c in cells:
            try:
                pred, host = predict_cell(c, cal), predict_cell_host(c, cal)
            except Exception:  # unknown architecture: annotate_cells left it unpredicted
                pred, host = None, None
            as_json.append(
                {
                    "matrix": c.matrix,
                    "full_id": c.full_id,
                    "status": c.status,
                    "reason": c.reason,
                    "predicted_memory_gb": c.predicted_memory_gb,
                    "phase": pred.phase if pred else None,
                    "fits": pred.fits if pred else None,
                    "capacity_gib": pred.capacity_gib if pred else None,
                    "phases": pred.phase_totals() if pred else None,
                    "breakdown": c.memory_breakdown,
                    "predicted_host_memory_gb": c.predicted_host_memory_gb,
                    "host_memory_gb": c.host_memory_gb,
                    "host_phase": host.phase if host else None,
                    "host_fits": host.fits(cell_host_gib(c)) if host else None,
                    "host_phases": host.phase_totals() if host else None,
                    "host_breakdown": c.host_memory_breakdown,
                    "host_processes": host.processes if host else None,
                }
            )
            totals = pred.phase_totals() if pred else {}
            rows.append(
                [
                    c.id,
                    c.status,
                    c.predicted_memory_gb,
                    pred.phase if pred else "-",
                    *(totals.get(k, "-") for k in PHASE_COLUMNS),
                    c.predicted_host_memory_gb if c.predicted_host_memory_gb is not None else "-",
                    _clip(c.reason or "", 100),
                ]
            )
        blocks.append(_render(cells, rows, args.format))
    if args.format == "json":
        print(json.dumps(as_json, indent=2))
    else:
        print("\n\n".join(blocks))
    return 0


PHASE_COLUMNS = ("rollout", "weight_sync", "old_log_prob", "ref_log_prob", "actor_update")


def _render(cells: list, rows: list[list], fmt: str) -> str:
    from tabulate import tabulate

    if not cells:
        return "no cells"
    first = cells[0]
    from suite.gpus import get_gpu

    cap = get_gpu(first.gpu).memory_gib
    from suite.memory.predict import cell_host_gib

    fit = sum(c.status == "ok" for c in cells)
    oom = sum(c.status == "predicted-oom" for c in cells)
    host_oom = sum(c.status == "predicted-host-oom" for c in cells)
    nodes = f"{first.nnodes} nodes x {first.gpus_per_node}" if first.nnodes > 1 else f"{first.n_gpus}x"
    title = (
        f"{first.matrix}: {first.model} on {nodes} {first.gpu} ({cap:.1f} GiB each, host {cell_host_gib(first):g} "
        f"GiB per node), {first.backend}, profile {first.profile}"
    )
    head = ["cell", "status", "peak GiB", "peak phase", "rollout", "sync", "old logp", "ref logp", "update"]
    head += ["host GiB", "reason"]
    table = tabulate(rows, headers=head, tablefmt="github" if fmt == "markdown" else "simple")
    counts = f"{fit} predicted to fit, {oom} predicted OOM, {host_oom} predicted host OOM, {len(cells)} cells"
    return f"{title}\n\n{table}\n\n{counts}"


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


def run_validate(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from suite.errors import EXIT_OK, EXIT_REGRESSION, InputError
    from suite.memory.phase_validate import markdown as phases_markdown
    from suite.memory.phase_validate import phase_rows
    from suite.memory.processes import markdown as processes_markdown
    from suite.memory.processes import process_rows
    from suite.memory.validate import markdown, suggest_runtime_gib, summarize, validate_results
    from suite.results.collect import load_results

    cal = _calibration(args.calibration)
    # result files and the runs of baseline files, a store's evidence folder left out; a file in a folder that
    # does not read is skipped with a warning on stderr (a named path must read)
    collected = load_results(args.results, baselines=True, skip_evidence=True, on_error="skip")
    found = [(str(p), r) for p, r in collected]
    if not found:
        raise InputError(f"no result JSON files under {' '.join(args.results)}")
    rows = validate_results(found, cal)
    summary = summarize(rows, args.tolerance / 100)
    if args.format == "json":
        out = {
            "rows": [
                asdict(r) | {"error": r.error, "host_error": r.host_error, "torch_error": r.torch_error} for r in rows
            ],
            "summary": asdict(summary)
            | {
                "fraction_within": summary.fraction_within,
                "goal_met": summary.goal_met,
                "host_fraction_within": summary.host_fraction_within,
            },
        }
        if args.fit:
            out["suggested_runtime_gib"] = suggest_runtime_gib(summary, cal)
        if args.processes:
            out["processes"] = [asdict(p) for p in process_rows(found, cal)]
        if args.phases:
            out["phases"] = [asdict(p) | {"error": p.error} for p in phase_rows(found, cal)]
        print(json.dumps(out, indent=2))
    else:
        print(markdown(rows, summary))
        if args.fit:
            print(
                f"\nsuggested [overhead].runtime_gib: {suggest_runtime_gib(summary, cal)} "
                f"(now {cal.overhead.runtime_gib}; median residual {summary.median_residual_gib})"
            )
        if args.processes:
            print("\n" + processes_markdown(process_rows(found, cal)))
        if args.phases:
            print("\n" + phases_markdown(phase_rows(found, cal)))
    return EXIT_OK if summary.goal_met else EXIT_REGRESSION
