#!/usr/bin/env bash
# On a 4-GPU host, after `source tools/gpu/setup.sh`: the issue-3 evidence still missing after 2026-11-28, in two
# rounds that fit one 30-minute device budget (cells with vLLM CUDA graphs take ~8 minutes, ~5.7 of them start-up).
# Plans come from `bash tools/gpu/plans.sh` on the build machine (.gpu/plans/). Each `grpo-suite run` gets a
# private /tmp per cell (verl's weight-transfer sockets would collide otherwise; suite/run/private_tmp.py).
#   setsid nohup bash tools/gpu/session.sh RUNS_DIR > $HOME/session.log 2>&1 &
source tools/gpu/lib.sh "${1:-$HOME/runs}"
# round 1: three 1-GPU bench cells not yet measured, and the SmolLM2 train run (accuracy before and after)
one 0 $P/graphs.json "$runs/h100-graphs" "${C0:-lora8-off_param+optimizer-tp1-rb16}" r1-gpu0 --timeout 1200
one 1 $P/graphs.json "$runs/h100-graphs" "${C1:-lora32-off_none-tp1-rb16}" r1-gpu1 --timeout 1200
one 2 $P/bench-1.5b.json "$runs/h100" "${C2:-lora8-off_none-tp1-rb16}" r1-gpu2 --timeout 1200
one 3 $P/train.json "$runs/h100" "*" r1-train --timeout 1200
wait
# round 2: rollout TP 1 vs 2 on two GPUs each
one 0,1 $P/2gpu.json "$runs/h100" lora32-off_none-tp1-rb32 r2-tp1 --timeout 1200
one 2,3 $P/2gpu.json "$runs/h100" lora32-off_none-tp2-rb32 r2-tp2 --timeout 1200
wait
stamp "done"
