"""Print this folder's results as the README's table: `python3 table.py` (run in this folder)."""

import glob
import json
import statistics
from pathlib import Path

print("| matrix | cell | vLLM | status | measured steps | tokens/s/GPU (median) | s/step (median) | response length |"
      " NVML peak GiB | torch peak GiB | start-up to step 1 end (s) | GPU |")
print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for f in sorted(glob.glob("*/*/*/*/*/result.json")):
    d = json.loads(Path(f).read_text())
    m = d["steps"][d["warmup_steps"]:]
    eager = "actor_rollout_ref.rollout.enforce_eager=True" in d["provenance"]["argv"]

    def med(key: str, m=m) -> str:
        return f"{statistics.median(s[key] for s in m):.1f}" if m else "-"
    peak = f"{max(d['peak_memory_gb']):.1f}" if d["peak_memory_gb"] else "-"
    torch_peak = d["torch_memory"].get("max_memory_allocated_gb")
    print(f"| {d['matrix']} | {d['id'].rsplit('/', 1)[-1]} | {'eager' if eager else 'CUDA graphs'} | {d['status']} |"
          f" {len(m)} | {med('throughput')} | {med('time_per_step')} | {med('response_length_mean')} | {peak} |"
          f" {f'{torch_peak:.1f}' if torch_peak else '-'} | {round(d['startup_s']) if d.get('startup_s') else '-'} |"
          f" {d['provenance'].get('cuda_visible_devices') or '-'} |")
