#!/usr/bin/env bash
# On a 4-GPU host, after `source tools/gpu/setup.sh`: the issue-3 evidence runs, packed onto disjoint GPUs.
# Meant to run detached (setsid) so it outlives one device call; progress in $HOME/session.log.
#   setsid nohup bash tools/gpu/session.sh RUNS_DIR > $HOME/session.log 2>&1 &
set -u
runs=${1:-$HOME/runs}
data=$GRPO_SUITE_CACHE/data/gsm8k-offline
M=suite/matrices
suite() { python3 -m suite "$@"; }
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
# cells of several matrices in one queue: plan each to JSON, keep the chosen ids, run the union as one plan
pick() {  # pick OUT.json MATRIX PROFILE PATTERN
  suite plan "$2" --profile "$3" --format json --out "$runs/h100" --data-root "$data" > "$1.all" &&
  python3 - "$1" "$4" <<'PY'
import fnmatch, json, sys
out, pats = sys.argv[1], sys.argv[2].split(",")
cells = [c for c in json.load(open(out + ".all")) if any(fnmatch.fnmatchcase(c["id"], p) for p in pats)]
json.dump(cells, open(out, "w"))
print(out, [c["id"] for c in cells])
PY
}
mkdir -p "$runs"
stamp "plan"
pick "$runs/a05.json" $M/h100-1gpu.toml bench \
  "${CELLS_05:-lora8-off_none-tp1-rb16,lora8-off_param+optimizer-tp1-rb16,lora32-off_none-tp1-rb16,full-off_none-tp1-rb16,lora8-off_none-tp1-rb32}"
pick "$runs/a15.json" $M/h100-1gpu-1.5b.toml bench "${CELLS_15:-lora8-off_none-tp1-rb16}"
python3 -c "import json,sys; json.dump(json.load(open(sys.argv[1])) + json.load(open(sys.argv[2])), open(sys.argv[3], 'w'))" \
  "$runs/a05.json" "$runs/a15.json" "$runs/wave-a.json"
pick "$runs/wave-c.json" $M/h100-2gpu.toml bench "${CELLS_2G:-lora32-off_none-tp1-rb32,lora32-off_none-tp2-rb32}"

# One 30-minute device budget holds two rounds of cells, so: GPUs 0-2 take the six 1-GPU bench cells (two rounds
# of three); GPU 3 takes the sampler-overhead benchmark, the out-of-memory cell (its own output folder: its cell
# id equals a bench cell's, its base settings do not) and the train run; then the two 2-GPU cells side by side.
( stamp "wave a"; suite run "$runs/wave-a.json" --gpus 0,1,2 --parallel auto --out "$runs/h100" --timeout 900 --no-verl-check
) > "$runs/wave-a.log" 2>&1 &
a=$!
(
  stamp "nvml overhead"
  CUDA_VISIBLE_DEVICES=3 python3 benchmarks/nvml_overhead.py > "$runs/nvml_overhead.txt" 2>&1; cat "$runs/nvml_overhead.txt"
  stamp "oom"
  CUDA_VISIBLE_DEVICES=3 suite run $M/h100-1gpu-oom.toml --profile bench --data-root "$data" --out "$runs/h100-oom" --timeout 600 --no-verl-check
  stamp "train smollm2"
  CUDA_VISIBLE_DEVICES=3 suite run $M/smollm2-train.toml --profile train --out "$runs/h100" --timeout 1200 --no-verl-check
) > "$runs/wave-b.log" 2>&1 &
b=$!
wait $a $b
stamp "wave c: 2-GPU cells"
suite run "$runs/wave-c.json" --gpus 0,1,2,3 --parallel auto --out "$runs/h100" --timeout 900 --no-verl-check > "$runs/wave-c.log" 2>&1
stamp "done"
