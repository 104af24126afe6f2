#!/usr/bin/env bash
# A 2-GPU host with ~10 minutes of its time left after setup: one cell per GPU, at once.
#   setsid nohup bash tools/gpu/session-x2-short.sh RUNS_DIR > $HOME/session.log 2>&1 &
source tools/gpu/lib.sh "${1:-$HOME/runs}"
one 0 $P/graphs.json "$runs/h100-graphs" "${C0:-lora8-off_param+optimizer-tp1-rb16}" lane-gpu0 --timeout 900
one 1 $P/bench-1.5b.json "$runs/h100" "${C1:-lora8-off_none-tp1-rb16}" lane-gpu1 --timeout 900
wait
stamp "done"
