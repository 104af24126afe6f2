"""Print this folder's results as its README's tables: `python3 table.py` (run in this folder)."""

import glob
import json
import statistics
from pathlib import Path

PHASES = [  # (column, milestone that ends it); each phase runs from the previous milestone
    ("imports", "imports_done"), ("Ray", "ray_started"), ("data", "data_loaded"), ("FSDP actor+ref", "actor_initialized"),
    ("vLLM processes + weights", "vllm_weights_loaded"), ("torch.compile", "vllm_compiled"),
    ("profile + graphs", "vllm_graphs_captured"), ("engine ready", "vllm_engine_ready"), ("to fit", "ready_to_fit"),
    ("step 1", "first_step"),
]
results = [json.loads(Path(f).read_text()) for f in sorted(glob.glob("h[12]00-*/*/result.json"))]


def num(v, fmt="{:.1f}"):
    return "-" if v is None else fmt.format(v)


print("| cell | status | measured steps | tokens/s/GPU (median) | s/step (median) | gen / old log-prob / ref / update s |"
      " NVML peak GiB (pred) | host tree peak GiB (pred) | host used peak GiB |")
print("|---|---|---:|---:|---:|---|---:|---:|---:|")
for d in results:
    m = [s for s in d["steps"] if s["step"] > d["warmup_steps"]]

    def med(key, m=m):
        return statistics.median(s[key] for s in m) if m else None

    def phase(k, m=m):
        # a phase the cell does not run (no old log-prob pass under bypass, no ref pass without KL) reads "-"
        return num(statistics.median(s["timing_s"][k] for s in m)) if m and k in m[0]["timing_s"] else "-"
    peak = max(d["peak_memory_gb"]) if d["peak_memory_gb"] else None
    print(f"| {d['id'].rsplit('/', 1)[-1]} | {d['status']} | {len(m)} | {num(med('throughput'), '{:.0f}')} |"
          f" {num(med('time_per_step'))} | {' / '.join(phase(k) for k in ('gen', 'old_log_prob', 'ref', 'update_actor'))} |"
          f" {num(peak)} ({num(d['predicted_memory_gb'])}) | {num(d['host_peak_memory_gb'])}"
          f" ({num(d['predicted_host_memory_gb'])}) | {num(d['host_system_peak_memory_gb'])} |")

print()
print("| cell | " + " | ".join(c for c, _ in PHASES) + " | total to step 1 end |")
print("|---|" + "---:|" * (len(PHASES) + 1))
for d in results:
    b = d.get("startup_breakdown_s") or {}
    if "ready_to_fit" not in b:  # a run cut off before fit says nothing about where start-up goes
        continue
    prev, cols = 0.0, []
    for _col, key in PHASES:
        cols.append(f"{b[key] - prev:.0f}" if key in b else "-")
        prev = b.get(key, prev)
    print(f"| {d['id'].rsplit('/', 1)[-1]} | " + " | ".join(cols) + f" | {num(b.get('first_step'), '{:.0f}')} |")
