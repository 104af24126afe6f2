#!/usr/bin/env bash
# On a 2-GPU host, after `source tools/gpu/setup.sh`: rollout TP 1 then TP 2 on the same two GPUs (~16 minutes).
#   setsid nohup bash tools/gpu/session-tp.sh RUNS_DIR > $HOME/session.log 2>&1 &
source tools/gpu/lib.sh "${1:-$HOME/runs}"
lane 0,1 lane-tp $P/2gpu.json "$runs/h100" lora32-off_none-tp1-rb32 $P/2gpu.json "$runs/h100" lora32-off_none-tp2-rb32
wait
stamp "done"
