#!/usr/bin/env bash
# On a 2-GPU host, after `source tools/gpu/setup.sh`: the SmolLM2 train run on GPU 0 (~13 minutes) beside one-GPU
# bench cells on GPU 1 (~8 minutes each). Plans come from `bash tools/gpu/plans.sh` on the build machine.
# (the third GPU run of 2026-11-28 ran an earlier version of this lane layout: baselines/evidence/2026-11-28-h200x2/.)
#   setsid nohup bash tools/gpu/session-x2.sh RUNS_DIR > $HOME/session.log 2>&1 &
source tools/gpu/lib.sh "${1:-$HOME/runs}"
lane 0 lane-train $P/train.json "$runs/h100" "*"
lane 1 lane-gpu1 $P/graphs.json "$runs/h100-graphs" "${C0:-lora32-off_none-tp1-rb32}" \
  $P/bench-1.5b.json "$runs/h100" "${C1:-full-off_none-tp1-rb16}"
wait
stamp "done"
