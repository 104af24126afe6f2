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
results = [(f, json.loads(Path(f).read_text())) for f in sorted(glob.glob("host-*/**/result.json", recursive=True))]

print("| host | matrix | cell | status | measured steps | tokens/s/GPU (median) | s/step (median) | response length |"
      " NVML peak GiB | torch peak GiB | accuracy before (strict) |")
print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---|")
for f, d in results:
    m = d["steps"][d["warmup_steps"]:]

    def med(key: str, m=m) -> str:
        return f"{statistics.median(s[key] for s in m):.1f}" if m else "-"
    peak = f"{max(d['peak_memory_gb']):.1f}" if d["peak_memory_gb"] else "-"
    torch_peak = d["torch_memory"].get("max_memory_allocated_gb")
    before = d.get("accuracy_initial", {}).get("gsm8k")
    acc = f"{before['correct']}/{before['total']}" if before else "-"
    print(f"| {f.split('/')[0]} | {d['matrix']} | {d['id']} | {d['status']} | {len(m)} | {med('throughput')} |"
          f" {med('time_per_step')} | {med('response_length_mean')} | {peak} |"
          f" {f'{torch_peak:.1f}' if torch_peak else '-'} | {acc} |")

print()
print("| cell | " + " | ".join(c for c, _ in PHASES) + " | total to step 1 end |")
print("|---|" + "---:|" * (len(PHASES) + 1))
for _f, d in results:
    b = d.get("startup_breakdown_s") or {}
    if "first_step" not in b:
        continue
    prev, cols = 0.0, []
    for _col, key in PHASES:
        cols.append(f"{b[key] - prev:.0f}" if key in b else "-")
        prev = b.get(key, prev)
    print(f"| {d['id'].split('/')[0]}/{d['id'].rsplit('/', 1)[-1]} | " + " | ".join(cols) + f" | {b['first_step']:.0f} |")
