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
mkdir -p "$runs"
stamp "nvml overhead"; python3 benchmarks/nvml_overhead.py > "$runs/nvml_overhead.txt" 2>&1

# GPUs 0-2: 1-GPU bench cells, three at a time.   GPU 3: the train run, then the out-of-memory cell.
(
  stamp "bench 0.5B"
  suite run $M/h100-1gpu.toml --profile bench --gpus 0,1,2 --parallel auto --data-root "$data" \
    --out "$runs/h100" --timeout 900 --cells "${CELLS_05:-*-rb16,lora8-off_none-tp1-rb32}"
  stamp "bench 1.5B"
  suite run $M/h100-1gpu-1.5b.toml --profile bench --gpus 0,1,2 --parallel auto --data-root "$data" \
    --out "$runs/h100" --timeout 900 --cells "${CELLS_15:-lora8-off_none-tp1-rb16,full-off_param+optimizer-tp1-rb16,lora32-off_param+optimizer-tp1-rb16}"
) > "$runs/wave-a.log" 2>&1 &
a=$!
(
  stamp "train smollm2"
  suite run $M/smollm2-train.toml --profile train --gpus 3 --out "$runs/h100" --timeout 1200
  stamp "oom"
  suite run $M/h100-1gpu-oom.toml --profile bench --gpus 3 --data-root "$data" --out "$runs/h100" --timeout 900
) > "$runs/wave-b.log" 2>&1 &
b=$!
wait $a $b
stamp "bench 2-GPU"
suite run $M/h100-2gpu.toml --profile bench --gpus 0,1,2,3 --parallel auto --data-root "$data" \
  --out "$runs/h100" --timeout 900 --cells "${CELLS_2G:-lora32-off_none-tp1-*,lora32-off_none-tp2-*}" > "$runs/wave-c.log" 2>&1
stamp "done"
