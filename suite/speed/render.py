"""Text tables of `grpo-suite speed predict` and `speed validate` (tabulate)."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate

from suite.speed.fit import SpeedRow, SpeedSummary
from suite.speed.predict import CellSpeed
from suite.speed.work import PHASES

SHORT = {"gen": "gen", "old_log_prob": "old logp", "ref": "ref", "update_actor": "update", "other": "other"}


def _f(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def predict_table(rows: Sequence[CellSpeed], *, window_s: float | None = None, fmt: str = "table") -> str:
    if not rows:
        return "no cells"
    head = ["cell", "memory", "s/step", "tokens/s/GPU", "vs ref", "KV waves"]
    head += [f"{SHORT[p]} s" for p in PHASES] + ["run s (steps)"]
    if window_s is not None:
        head.append(f"fits {window_s:g} s")
    body = []
    for r in rows:
        p = r.prediction
        name = f"{r.id} (reference)" if r.is_reference else r.id
        line = [
            name,
            r.memory_status,
            _f(p.step_s if p else None),
            _f(p.tokens_per_s_per_gpu if p else None, "{:.0f}"),
            _f(r.vs_reference, "x{:.2f}"),
            _f(p.kv_waves if p else None, "{:.2f}"),
            *(_f(p.phases_s[ph] if p else None) for ph in PHASES),
            f"{_f(r.run_s, '{:.0f}')} ({r.total_steps})",
        ]
        if window_s is not None:
            line.append("-" if r.run_s is None else ("yes" if r.fits(window_s) else "no"))
        body.append(line)
    table = tabulate(body, headers=head, tablefmt="github" if fmt == "markdown" else "simple", disable_numparse=True)
    matrices = sorted({r.matrix for r in rows})
    by_reason: dict[str, list[str]] = {}
    for r in rows:
        if r.reason:
            by_reason.setdefault(r.reason, []).append(r.id)
    notes = [
        f"{ids[0]}: {why}" if len(ids) == 1 else f"{len(ids)} cells ({ids[0]}, ...): {why}"
        for why, ids in by_reason.items()
    ]
    out = f"{', '.join(matrices)}: predicted speed, fastest first\n\n{table}"
    best = next((r for r in rows if r.prediction and r.memory_status == "ok"), None)
    if best is not None and best.prediction is not None:
        ratio = f", {_f(best.vs_reference, 'x{:.2f}')} the reference" if best.vs_reference else ""
        out += (
            f"\n\nfastest cell predicted to fit memory: {best.id}, "
            f"{best.prediction.tokens_per_s_per_gpu:.0f} tokens/s/GPU{ratio}"
        )
    if window_s is not None:
        fit = [r for r in rows if r.fits(window_s) and r.memory_status == "ok"]
        out += f"\n\n{len(fit)} of {len(rows)} cells predicted to fit memory and a {window_s:g} s window"
    return out + ("\n\n" + "\n".join(notes) if notes else "")


def validate_table(rows: Sequence[SpeedRow], summary: SpeedSummary, *, leave_one_out: bool) -> str:
    head = ["run", "model", "GPU", "flash-attn", "steps", "s/step measured", "predicted", "error"]
    head += [f"{SHORT[p]} m/p" for p in PHASES] + ["run s m/p"]
    body = [
        [
            r.key,
            r.model,
            r.gpu,
            "yes" if r.flash_attn else "no",
            r.steps,
            f"{r.measured_s:.1f}",
            f"{r.predicted_s:.1f}",
            f"{r.error:+.1%}",
            *(f"{r.measured_phases_s[p]:.1f}/{r.predicted_phases_s[p]:.1f}" for p in PHASES),
            f"{_f(r.measured_run_s, '{:.0f}')}/{r.predicted_run_s:.0f}",
        ]
        for r in rows
    ]
    how = "each cell left out of the fit" if leave_one_out else "the committed constants"
    return (
        tabulate(body, headers=head, tablefmt="github", disable_numparse=True)
        + f"\n\n{summary.n} runs ({how}): median |error| {summary.median_abs_error:.1%}, worst "
        f"{summary.worst_error:+.1%}, {summary.within_10} within 10 %, {summary.within_20} within 20 %"
        + (
            f"; run wall time ({summary.runs} runs that ended ok): median |error| {summary.run_median_abs_error:.1%}"
            if summary.run_median_abs_error is not None
            else ""
        )
    )
