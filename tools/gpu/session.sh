#!/usr/bin/env bash
# On a 4-GPU host, after `source tools/gpu/setup.sh`: the issue-3 evidence still missing after 2026-11-28, as three
# lanes that end within ~16 minutes (a CUDA-graph cell takes ~8 minutes, ~6 of them start-up; the SmolLM2 train run
# ~13: 16 steps of ~24 s, two validations, start-up). Plans come from `bash tools/gpu/plans.sh` on the build machine
# (.gpu/plans/). Each `grpo-suite run` gives each cell a private /tmp (verl's weight-transfer sockets would
# collide otherwise; suite/run/private_tmp.py).
#   setsid nohup bash tools/gpu/session.sh RUNS_DIR > $HOME/session.log 2>&1 &
source tools/gpu/lib.sh "${1:-$HOME/runs}"
# rollout TP 1 then TP 2 on the same two GPUs (a fair pair), two 1-GPU bench cells, the train run
lane 0,1 lane-tp $P/2gpu.json "$runs/h100" lora32-off_none-tp1-rb32 $P/2gpu.json "$runs/h100" lora32-off_none-tp2-rb32
lane 2 lane-gpu2 $P/graphs.json "$runs/h100-graphs" "${C0:-lora32-off_none-tp1-rb32}" \
  $P/bench-1.5b.json "$runs/h100" "${C1:-full-off_none-tp1-rb16}"
lane 3 lane-train $P/train.json "$runs/h100" "*"
wait
stamp "done"
