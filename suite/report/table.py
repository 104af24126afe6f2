"""Flatten results into report rows: one `ReportRow` per cell, plain numbers, no formatting. Pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace

from suite.gate.cells import pool
from suite.gate.objective import command_objective, objective_differences, objective_views
from suite.gate.reference import ratio, reference_id
from suite.gpus import GPUS
from suite.report.stats import median, median_interval, wilson_interval
from suite.results.phases import PLANNER_PHASES, planner_held_phases, planner_phase_peaks
from suite.results.provenance import version_differences
from suite.results.schema import Result
from suite.telemetry.startup import PHASE_LABELS as STARTUP_LABELS
from suite.telemetry.startup import phase_durations

# Axis columns in this order first; any other axis follows alphabetically.
KNOWN_AXES = ("lora_rank", "offload", "tp", "rollout_batch")

# verl timing_s/* keys grouped into the phases the report stacks. "other" is step minus these, so the
# stack adds up to the step time whatever extra phases a verl version reports.
PHASES: dict[str, tuple[str, ...]] = {
    "generation": ("gen",),
    "ref_logprob": ("ref", "old_log_prob"),
    "actor_update": ("update_actor",),
}
PHASE_LABELS = {
    "generation": "generation",
    "ref_logprob": "reference + old log-prob",
    "actor_update": "actor update",
    "other": "other",
}


@dataclass(frozen=True)
class ReportRow:
    id: str  # full cell id: from the axes, so matrices with other [base] settings share it; (gpu, matrix, id) is unique
    cell: str  # id without the model/hardware/backend prefix
    gpu: str
    n_gpus: int
    model: str
    backend: str
    matrix: str
    profile: str
    axes: dict[str, int | str]
    status: str  # "ok" only when every run is ok (the gate's rule)
    reason: str | None
    n_runs: int
    n_steps: int  # measured (post warm-up) steps, all ok runs pooled
    warmup_steps: int
    throughput: float | None  # median tokens/s/GPU over measured steps
    throughput_lo: float | None  # order-statistic 95 % interval of that median
    throughput_hi: float | None
    step_time: float | None  # median seconds
    response_length: float | None  # mean over measured steps, tokens
    peak_memory_gb: float | None  # NVML, worst GPU of the worst run, GiB
    torch_peak_gb: float | None  # torch max_memory_allocated, GiB
    predicted_memory_gb: float | None
    gpu_memory_gb: float | None  # device memory of the generation: where OOM cells are drawn
    accuracy: float | None
    accuracy_lo: float | None
    accuracy_hi: float | None
    accuracy_correct: int | None
    accuracy_total: int | None
    accuracy_initial: float | None
    phases: dict[str, float]  # mean seconds per measured step per PHASE_LABELS key
    startup_s: float | None  # median over runs: process start to the end of step 1
    startup: dict[str, float]  # median over runs of each start-up phase (telemetry.startup.phase_durations)
    per_step: list[list[tuple[int, float]]]  # per run: (step, throughput), warm-up included
    image_digest: str | None  # of the first run; run_provenance has every run's
    versions: dict[str, str]
    packages_checked: tuple[str, ...] | None  # of the first run: which packages `versions` looked up
    gpu_name: str | None
    run_provenance: list[dict[str, str | None]]  # per run: PROVENANCE_FIELDS -> value
    verdict: str | None = None
    verdict_detail: str | None = None
    host_peak_memory_gb: float | None = None  # the cell's process tree RSS, worst run, GiB
    predicted_host_memory_gb: float | None = None
    reference_cell: str | None = None  # short id the matrix names as its reference (`[matrix] reference`)
    reference_matrix: str | None = None  # the matrix that reference is a cell of, when not this row's own
    # verl's objective settings as the row's command runs them (suite.gate.objective.command_objective): what a
    # reference in another matrix is compared by
    objective_settings: dict[str, object] = field(default_factory=dict)
    # Set by `with_reference` from the other rows: the reference's full id when the report holds it (same
    # generation, GPU count, model and backend; the same matrix unless the matrix names another), and this
    # row's ratios to it (both rows ok).
    reference_id: str | None = None
    throughput_vs_reference: float | None = None
    peak_memory_vs_reference: float | None = None
    # Set by `with_reference`: the axes that change the objective (suite.gate.objective) in which this row
    # differs from its reference; non-empty means its ratios compare other work, not a faster way to do it.
    objective_differences: tuple[str, ...] = ()
    # Set by `with_reference`: the packages whose versions differ from the reference's run
    # (suite.results.provenance.version_differences); set means the ratio also measures the other stack.
    stack_differences: str | None = None
    sources: tuple[str, ...] = field(default=(), compare=False)
    # NVML peak of each step phase (the planner's names: rollout, sync, old_log_prob, ref_log_prob, actor_update),
    # max over the runs that recorded a timeline (suite.results.phases); {} without one
    phase_peaks_gb: dict[str, float] = field(default_factory=dict)
    # phases held in every run that recorded them (suite.results.phases.held_phases): their NVML peak is the level an
    # earlier phase left in torch's cache, so they are not where the peak arose
    held_phases: tuple[str, ...] = ()

    @property
    def peak_phase(self) -> str | None:
        """The phase whose NVML peak is the highest, where the runs recorded phases, of those not held (all, if
        every phase is)."""
        own = {k: v for k, v in self.phase_peaks_gb.items() if k not in self.held_phases} or self.phase_peaks_gb
        return max(own, key=lambda k: own[k]) if own else None

    @property
    def fits(self) -> bool:
        return self.status == "ok"

    @property
    def key(self) -> tuple[str, str, str]:
        """What names a row: (GPU generation it ran on, matrix, full cell id)."""
        return (self.gpu, self.matrix, self.id)

    @property
    def group(self) -> tuple[str, int, str, str, str]:
        """The rows that may be divided by one another: (generation, GPU count, model, backend, matrix)."""
        return (self.gpu, self.n_gpus, self.model, self.backend, self.matrix)

    @property
    def hardware(self) -> tuple[str, int, str, str]:
        """What a row and a reference in another matrix must share: (generation, GPU count, model, backend)."""
        return (self.gpu, self.n_gpus, self.model, self.backend)

    @property
    def reference_key(self) -> tuple[str, str, str] | None:
        """The `key` of the row's reference cell, wherever the matrix says it is; None without one."""
        if not self.reference_cell:
            return None
        return (self.gpu, self.reference_matrix or self.matrix, reference_id(self.id, self.reference_cell))

    @property
    def is_reference(self) -> bool:
        return self.reference_id is not None and self.reference_id == self.id and not self.reference_matrix


def cell_name(full_id: str) -> str:
    parts = full_id.split("/")
    return "/".join(parts[3:]) if len(parts) >= 4 and parts[3] else full_id


def _phases(runs: Sequence[Result]) -> dict[str, float]:
    steps = [s for r in runs if r.status == "ok" for s in r.measured_steps()]
    if not steps or not any(s.timing_s for s in steps):
        return {}
    sums = dict.fromkeys(PHASE_LABELS, 0.0)
    for s in steps:
        named = 0.0
        for phase, keys in PHASES.items():
            v = sum(s.timing_s.get(k, 0.0) for k in keys)
            sums[phase] += v
            named += v
        total = s.timing_s.get("step", s.time_per_step)
        sums["other"] += max(0.0, total - named)
    return {k: v / len(steps) for k, v in sums.items()}


def _startup(runs: Sequence[Result]) -> dict[str, float]:
    per_run = [phase_durations(r.startup_breakdown_s) for r in runs if r.startup_breakdown_s]
    names = [n for n in STARTUP_LABELS if any(n in d for d in per_run)]
    return {n: median([d[n] for d in per_run if n in d]) for n in names}


def _torch_peak(runs: Sequence[Result]) -> float | None:
    peaks = []
    for r in runs:
        if r.torch_memory.max_memory_allocated_gb is not None:
            peaks.append(r.torch_memory.max_memory_allocated_gb)
        else:
            peaks += [s.torch_max_memory_allocated_gb for s in r.steps if s.torch_max_memory_allocated_gb]
    return max(peaks) if peaks else None


def _accuracy_sum(runs: Sequence[Result], name: str) -> tuple[int, int] | None:
    accs = [r.accuracy_initial[name] for r in runs if r.status == "ok" and name in r.accuracy_initial]
    return (sum(a.correct for a in accs), sum(a.total for a in accs)) if accs else None


PROVENANCE_FIELDS = ("image digest", "verl", "vllm", "torch", "GPU", "driver", "CUDA")


def _provenance(r: Result) -> dict[str, str | None]:
    p = r.provenance
    v = p.versions
    return dict(
        zip(
            PROVENANCE_FIELDS,
            (
                p.image_digest or p.image,
                v.get("verl"),
                v.get("vllm"),
                v.get("torch"),
                p.gpu_name,
                p.driver,
                p.cuda,
            ),
            strict=True,
        )
    )


def flatten(runs: Sequence[Result], sources: Sequence[str] = ()) -> ReportRow:
    """One row from all runs of one (matrix, cell id), pooled as the gate pools them."""
    cell = pool(runs)
    first = runs[0]
    tput = list(cell.throughput)
    ci = median_interval(tput)
    acc = cell.accuracy.get("gsm8k")
    acc_ci = wilson_interval(acc.correct, acc.total) if acc else None
    acc0 = _accuracy_sum(runs, "gsm8k")
    gen = GPUS.get(first.gpu)
    prov = first.provenance
    predicted = [r.predicted_memory_gb for r in runs if r.predicted_memory_gb is not None]
    host = [r.host_peak_memory_gb for r in runs if r.host_peak_memory_gb is not None]
    host_predicted = [r.predicted_host_memory_gb for r in runs if r.predicted_host_memory_gb is not None]
    memory_peaks, memory_held = _memory_phases(runs)
    return ReportRow(
        id=first.id,
        cell=cell_name(first.id),
        gpu=first.gpu,
        n_gpus=first.n_gpus,
        model=first.model,
        backend=first.backend,
        matrix=first.matrix,
        profile=first.profile,
        axes=dict(first.axes),
        status=cell.status,
        reason=cell.reason,
        n_runs=len(runs),
        n_steps=len(tput),
        warmup_steps=first.warmup_steps,
        throughput=median(tput) if tput else None,
        throughput_lo=ci.lo if ci else None,
        throughput_hi=ci.hi if ci else None,
        step_time=median(cell.time_per_step) if cell.time_per_step else None,
        response_length=sum(cell.response_length) / len(cell.response_length) if cell.response_length else None,
        peak_memory_gb=cell.peak_memory_worst_gb,
        torch_peak_gb=_torch_peak(runs),
        predicted_memory_gb=max(predicted) if predicted else None,
        gpu_memory_gb=gen.memory_gib if gen else None,
        accuracy=acc_ci.estimate if acc_ci else None,
        accuracy_lo=acc_ci.lo if acc_ci else None,
        accuracy_hi=acc_ci.hi if acc_ci else None,
        accuracy_correct=acc.correct if acc else None,
        accuracy_total=acc.total if acc else None,
        accuracy_initial=acc0[0] / acc0[1] if acc0 else None,
        phases=_phases(runs),
        startup_s=median(starts) if (starts := [r.startup_s for r in runs if r.startup_s is not None]) else None,
        startup=_startup(runs),
        # verl's step 0 is the validation before training and carries no throughput worth plotting
        per_step=[[(s.step, s.throughput) for s in r.steps if s.step > 0] for r in runs],
        image_digest=prov.image_digest,
        versions=dict(prov.versions),
        packages_checked=None if prov.packages_checked is None else tuple(prov.packages_checked),
        gpu_name=prov.gpu_name,
        run_provenance=[_provenance(r) for r in runs],
        host_peak_memory_gb=max(host) if host else None,
        predicted_host_memory_gb=max(host_predicted) if host_predicted else None,
        reference_cell=next((r.reference for r in runs if r.reference), None),
        reference_matrix=next((r.reference_matrix for r in runs if r.reference_matrix), None),
        objective_settings=command_objective(prov.argv),
        sources=tuple(sources),
        phase_peaks_gb=memory_peaks,
        held_phases=memory_held,
    )


def _memory_phases(runs: Sequence[Result]) -> tuple[dict[str, float], tuple[str, ...]]:
    """NVML peak per planner phase (max over the runs) and the phases held in every run with phases (step order),
    from one pass over the runs."""
    peaks: dict[str, float] = {}
    held: frozenset[str] | None = None
    for r in runs:
        mine = planner_phase_peaks(r)
        if not mine:
            continue
        for name, gib in mine.items():
            peaks[name] = max(peaks.get(name, gib), gib)
        theirs = planner_held_phases(r)
        held = theirs if held is None else held & theirs
    return peaks, tuple(k for k in PLANNER_PHASES if k in (held or ()))


def sort_key(row: ReportRow) -> tuple:
    return (row.gpu, row.model, row.n_gpus, row.backend, row.cell, row.matrix, row.id)


def several_matrices(rows: Iterable[ReportRow]) -> bool:
    """Whether rows come from more than one matrix: then tables name each row's matrix."""
    return len({r.matrix for r in rows}) > 1


def flatten_all(results: Iterable[tuple[str, Result]]) -> list[ReportRow]:
    """Rows from (source, result) pairs; results sharing a generation, matrix and cell id are runs of one cell
    (two matrices with one cell id are two rows; so is one planned cell run on two generations)."""
    by_id: dict[tuple[str, str, str], list[tuple[str, Result]]] = {}
    for src, r in results:
        by_id.setdefault((r.gpu, r.matrix, r.id), []).append((src, r))
    rows = []
    for runs in by_id.values():
        runs.sort(key=lambda t: (t[1].provenance.start_time or "", t[0]))
        rows.append(flatten([r for _, r in runs], [s for s, _ in runs]))
    return sorted(rows, key=sort_key)


def with_reference(rows: Sequence[ReportRow]) -> list[ReportRow]:
    """Each row with its reference's full id, when the rows hold that reference in the row's own group
    (never across generations, GPU counts, models or backends; across matrices only where the matrix names
    its reference's, `[matrix] reference_matrix`), and its throughput and NVML peak over the reference's. A
    ratio needs both cells ok: a failed cell's numbers are not what it costs. Each row also gets what changes
    the objective in which it differs from the reference (`objective_differences`): axes within a matrix, the
    verl settings across two (whose axes name other things), and the packages whose versions differ from the
    reference's (`stack_differences`)."""
    by_key = {r.key: r for r in rows}
    out = []
    for r in rows:
        ref = by_key.get(r.reference_key) if r.reference_key else None
        if ref is None or ref.hardware != r.hardware:
            out.append(
                replace(
                    r,
                    reference_id=None,
                    throughput_vs_reference=None,
                    peak_memory_vs_reference=None,
                    objective_differences=(),
                    stack_differences=None,
                )
            )
            continue
        both = r.fits and ref.fits
        out.append(
            replace(
                r,
                reference_id=ref.id,
                throughput_vs_reference=ratio(r.throughput, ref.throughput) if both else None,
                peak_memory_vs_reference=ratio(r.peak_memory_gb, ref.peak_memory_gb) if both else None,
                objective_differences=objective_differences(*row_objective_views(r, ref)),
                stack_differences=version_differences(
                    [(r.versions, r.packages_checked), (ref.versions, ref.packages_checked)]
                ),
            )
        )
    return out


def row_objective_views(row: ReportRow, ref: ReportRow) -> tuple[Mapping[str, object], Mapping[str, object]]:
    """A row's and its reference's objective views (suite.gate.objective.objective_views)."""
    return objective_views(
        (row.matrix, row.axes, lambda: row.objective_settings), (ref.matrix, ref.axes, lambda: ref.objective_settings)
    )


def with_verdicts(
    rows: Sequence[ReportRow], verdicts: dict[tuple[str, str, str], tuple[str, str | None]]
) -> list[ReportRow]:
    """Attach gate verdicts keyed by (gpu, matrix, full cell id): (verdict, detail)."""
    out = []
    for r in rows:
        v = verdicts.get(r.key)
        out.append(replace(r, verdict=v[0], verdict_detail=v[1]) if v else r)
    return out


def axis_names(rows: Iterable[ReportRow]) -> list[str]:
    names = {k for r in rows for k in r.axes}
    return [a for a in KNOWN_AXES if a in names] + sorted(names - set(KNOWN_AXES))


@dataclass(frozen=True)
class Group:
    """One table of the report: a GPU generation and a model."""

    gpu: str
    model: str
    rows: list[ReportRow]

    @property
    def key(self) -> str:
        return f"{self.gpu}/{self.model}"


def group_rows(rows: Sequence[ReportRow]) -> list[Group]:
    groups: dict[tuple[str, str], list[ReportRow]] = {}
    for r in sorted(rows, key=sort_key):
        groups.setdefault((r.gpu, r.model), []).append(r)
    return [Group(gpu, model, rs) for (gpu, model), rs in sorted(groups.items())]


@dataclass(frozen=True)
class Best:
    """One line of the best-cells table: the cells of one generation, GPU count, model, backend and matrix,
    the only set whose cells may be ranked against each other and against their reference."""

    gpu: str
    model: str
    # highest median throughput among cells that ran (status ok); with a reference in the report, among those
    # that do the reference's work (no objective differences)
    fastest: ReportRow | None
    most_accurate: ReportRow | None
    n_gpus: int = 1
    backend: str = ""
    matrix: str = ""
    reference: ReportRow | None = None  # the matrix's reference cell, when the report holds it
    # faster than `fastest` but with another objective than the reference (e.g. no KL loss); None otherwise
    fastest_other_objective: ReportRow | None = None

    @property
    def speedup(self) -> float | None:
        """The fastest cell's throughput over the reference's (x1.00 when the reference is the fastest)."""
        if self.fastest is None or self.reference is None or not self.reference.fits:
            return None
        return ratio(self.fastest.throughput, self.reference.throughput)

    @property
    def other_objective_speedup(self) -> float | None:
        if self.fastest_other_objective is None or self.reference is None or not self.reference.fits:
            return None
        return ratio(self.fastest_other_objective.throughput, self.reference.throughput)


def best_cells(groups: Sequence[Group]) -> list[Best]:
    rows: dict[tuple[str, int, str, str, str], list[ReportRow]] = {}
    for g in groups:
        for r in g.rows:
            rows.setdefault(r.group, []).append(r)
    by_key = {r.key: r for g in groups for r in g.rows}
    out = []

    def reference_of(rs: Sequence[ReportRow]) -> ReportRow | None:
        # the matrix's own reference cell, else the one it names in another matrix (found by `with_reference`)
        own = next((r for r in rs if r.is_reference), None)
        if own is not None:
            return own
        named = next((r for r in rs if r.reference_matrix and r.reference_id), None)
        return by_key.get(named.reference_key) if named and named.reference_key else None

    def order(key: tuple[str, int, str, str, str]) -> tuple:
        gpu, n_gpus, model, backend, matrix = key
        return (gpu, model, n_gpus, backend, matrix)  # the tables' order

    for (gpu, n_gpus, model, backend, matrix), rs in sorted(rows.items(), key=lambda kv: order(kv[0])):
        fit = [r for r in rs if r.fits and r.throughput is not None]
        acc = [r for r in rs if r.fits and r.accuracy is not None]
        ref = reference_of(rs)
        fastest_any = _fastest(fit)
        fastest = _fastest([r for r in fit if not r.objective_differences]) if ref else fastest_any
        other = fastest_any if fastest_any is not None and fastest_any is not fastest else None
        most_acc = max(acc, key=lambda r: (r.accuracy, r.accuracy_total or 0, _neg(r.id)), default=None)
        out.append(Best(gpu, model, fastest, most_acc, n_gpus, backend, matrix, ref, other))
    return out


def _fastest(rows: Sequence[ReportRow]) -> ReportRow | None:
    # ties broken by id so the choice is stable
    return max(rows, key=lambda r: (r.throughput, _neg(r.id)), default=None)


def _neg(s: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in s)


def pareto_front(rows: Sequence[ReportRow]) -> list[ReportRow]:
    """Cells no other cell beats on both throughput (higher) and NVML peak memory (lower)."""
    pts = [r for r in rows if r.fits and r.throughput is not None and r.peak_memory_gb is not None]
    front = []
    for r in pts:
        dominated = any(
            o.throughput >= r.throughput  # type: ignore[operator]
            and o.peak_memory_gb <= r.peak_memory_gb  # type: ignore[operator]
            and (o.throughput > r.throughput or o.peak_memory_gb < r.peak_memory_gb)  # type: ignore[operator]
            for o in pts
        )
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: (r.peak_memory_gb, r.id))


@dataclass(frozen=True)
class CrossRow:
    model: str
    n_gpus: int
    backend: str
    cell: str
    by_gpu: dict[str, ReportRow]  # generation -> row
    reference: str

    @property
    def matrices(self) -> list[str]:
        return sorted({r.matrix for r in self.by_gpu.values()})

    def ratio(self, gpu: str) -> float | None:
        ref, row = self.by_gpu.get(self.reference), self.by_gpu.get(gpu)
        if not ref or not row or not ref.throughput or row.throughput is None:
            return None
        return row.throughput / ref.throughput


def _pairings(per_gen: dict[str, list[ReportRow]]) -> list[dict[str, ReportRow]]:
    """One generation -> row mapping per line of the cross table. Matrices are usually per generation, so a
    cell pairs across them by its axes; where a generation holds the cell in several matrices (other [base]
    settings), each of those matrices gets its own line, with the other generations' row of the same
    matrix, or their only row."""
    if all(len(v) == 1 for v in per_gen.values()):
        return [{g: v[0] for g, v in per_gen.items()}]
    names = sorted({r.matrix for v in per_gen.values() if len(v) > 1 for r in v})
    out = []
    for name in names:
        line = {}
        for g, v in per_gen.items():
            pick = [r for r in v if r.matrix == name] if len(v) > 1 else v
            if pick:
                line[g] = pick[0]
        out.append(line)
    return out


def cross_generation(rows: Sequence[ReportRow], reference: str = "h100") -> tuple[list[str], list[CrossRow]]:
    """Cells (same model, GPU count, backend and axes) present on several generations."""
    by_key: dict[tuple[str, int, str, str], dict[str, list[ReportRow]]] = {}
    for r in sorted(rows, key=sort_key):
        by_key.setdefault((r.model, r.n_gpus, r.backend, r.cell), {}).setdefault(r.gpu, []).append(r)
    lines = [(k, line) for k, per_gen in sorted(by_key.items()) for line in _pairings(per_gen) if len(line) > 1]
    gens = sorted({g for _, line in lines for g in line}, key=lambda g: (g != reference, g))
    return gens, [CrossRow(m, n, b, c, line, reference) for (m, n, b, c), line in lines]


def provenance_summary(rows: Iterable[ReportRow]) -> dict[str, dict[str, int]]:
    """For each provenance field, each distinct value and how many runs carry it (sorted)."""
    fields: dict[str, dict[str, int]] = {k: {} for k in PROVENANCE_FIELDS}
    for r in rows:
        for run in r.run_provenance:
            for name in PROVENANCE_FIELDS:
                key = run.get(name) or "unknown"
                fields[name][key] = fields[name].get(key, 0) + 1
    # a field no run recorded says nothing; one that some runs lack shows "unknown" for those
    return {k: dict(sorted(v.items())) for k, v in fields.items() if set(v) != {"unknown"}}


_RECORD_SKIP = {
    "axes",
    "phases",
    "versions",
    "per_step",
    "run_provenance",
    "sources",
    "objective_settings",
    "packages_checked",
    "phase_peaks_gb",
    "held_phases",
}


def to_record(row: ReportRow) -> dict:
    """A flat dict for results.json / results.csv: axes and phases become their own columns."""
    d = {f.name: getattr(row, f.name) for f in fields(ReportRow) if f.name not in _RECORD_SKIP}
    for k in sorted(row.axes):
        d[f"axis_{k}"] = row.axes[k]
    for k in PHASE_LABELS:
        d[f"phase_{k}_s"] = row.phases.get(k)
    for k in sorted(row.versions):
        d[f"version_{k}"] = row.versions[k]
    d["objective_differences"] = list(row.objective_differences)
    d["peak_phase"] = row.peak_phase
    d["held_phases"] = ";".join(row.held_phases)
    for k in PLANNER_PHASES:
        d[f"memory_{k}_gb"] = row.phase_peaks_gb.get(k)
    return d
