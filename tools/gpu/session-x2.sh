#!/usr/bin/env bash
# On a 2-GPU host (the only multi-GPU kind lent on 2026-11-28's third session), after `source tools/gpu/setup.sh`:
# the issue-3 one-GPU evidence still missing, as two lanes of three cells, one lane per GPU (no waiting for the
# slower cell of a round). Plans come from `bash tools/gpu/plans.sh` on the build machine (.gpu/plans/).
#   setsid nohup bash tools/gpu/session-x2.sh RUNS_DIR > $HOME/session.log 2>&1 &
source tools/gpu/lib.sh "${1:-$HOME/runs}"
lane 0 lane-gpu0 \
  $P/graphs.json "$runs/h100-graphs" lora32-off_none-tp1-rb16 \
  $P/graphs.json "$runs/h100-graphs" lora8-off_param+optimizer-tp1-rb16 \
  $P/graphs.json "$runs/h100-graphs" lora32-off_none-tp1-rb32
lane 1 lane-gpu1 \
  $P/train.json "$runs/h100" "*" \
  $P/bench-1.5b.json "$runs/h100" lora8-off_none-tp1-rb16 \
  $P/bench-1.5b.json "$runs/h100" full-off_none-tp1-rb16
wait
stamp "done"
