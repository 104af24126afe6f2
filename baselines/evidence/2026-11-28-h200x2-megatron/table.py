"""Print this folder's results as its README's tables: `python3 table.py` (run in this folder)."""

import glob
import json
import statistics
from pathlib import Path

STEP_PHASES = ("gen", "old_log_prob", "ref", "update_actor", "update_weights", "step")
STARTUP = [("imports", "imports_done"), ("Ray", "ray_started"), ("data", "data_loaded"),
           ("actor+ref", "actor_initialized"), ("vLLM processes + weights", "vllm_weights_loaded"),
           ("torch.compile", "vllm_compiled"), ("profile + graphs", "vllm_graphs_captured"),
           ("engine ready", "vllm_engine_ready"), ("to fit", "ready_to_fit"), ("step 1", "first_step")]
results = [(f, json.loads(Path(f).read_text())) for f in sorted(glob.glob("*/**/result.json", recursive=True))]


def acc(d: dict, key: str) -> str:
    a = (d.get(key) or {}).get("gsm8k")
    return f"{a['correct']}/{a['total']}" if a else "-"


print("| folder | matrix | backend | cell | status | measured steps | tokens/s/GPU (median) | s/step (median) |"
      " NVML peak GiB | torch peak GiB | accuracy before | accuracy after |")
print("|---|---|---|---|---|---:|---:|---:|---:|---:|---|---|")
for f, d in results:
    m = d["steps"][d["warmup_steps"]:]
    med = {k: statistics.median(s[k] for s in m) for k in ("throughput", "time_per_step")} if m else {}
    peak = f"{max(d['peak_memory_gb']):.1f}" if d["peak_memory_gb"] else "-"
    tp = d["torch_memory"].get("max_memory_allocated_gb")
    reason = f" ({d['reason'][:60]}…)" if d["status"] != "ok" and d.get("reason") else ""
    print(f"| {f.split('/')[0]} | {d['matrix']} | {d['backend']} | {d['id'].split('/', 3)[3]} | {d['status']}{reason} |"
          f" {len(m)} | {med.get('throughput', 0):.1f} | {med.get('time_per_step', 0):.2f} | {peak} |"
          f" {f'{tp:.1f}' if tp else '-'} | {acc(d, 'accuracy_initial')} | {acc(d, 'accuracy')} |")

print()
print("| backend | cell | " + " | ".join(STEP_PHASES) + " |")
print("|---|---|" + "---:|" * len(STEP_PHASES))
for _f, d in results:
    m = d["steps"][d["warmup_steps"]:]
    if not m:
        continue
    cols = [f"{statistics.median(s['timing_s'].get(p, 0.0) for s in m):.2f}" for p in STEP_PHASES]
    print(f"| {d['backend']} | {d['id'].split('/', 3)[3]} | " + " | ".join(cols) + " |")

print()
print("| backend | cell | " + " | ".join(c for c, _ in STARTUP) + " | total to step 1 end |")
print("|---|---|" + "---:|" * (len(STARTUP) + 1))
for _f, d in results:
    b = d.get("startup_breakdown_s") or {}
    if "first_step" not in b:
        continue
    prev, cols = 0.0, []
    for _c, key in STARTUP:
        t = b.get(key)
        cols.append(f"{t - prev:.0f}" if t is not None else "-")
        prev = t if t is not None else prev
    print(f"| {d['backend']} | {d['id'].split('/', 3)[3]} | " + " | ".join(cols) + f" | {b['first_step']:.0f} |")
