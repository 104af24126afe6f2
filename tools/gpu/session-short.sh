#!/usr/bin/env bash
# On a 4-GPU host, for the last ~10 minutes of the host's time: plans made on the build machine
# (`.gpu/plans/*.json`, planned with --out /root/runs/<folder>), one cell per GPU, each its own `grpo-suite run`.
#   setsid nohup bash tools/gpu/session-short.sh RUNS_DIR > $HOME/session.log 2>&1 &
source tools/gpu/lib.sh "${1:-$HOME/runs}"
one 3 $P/oom.json "$runs/h100-oom" lora8-off_none-tp1-rb16 oom --timeout 900
if private_tmp_ok; then
  one 0 $P/bench.json "$runs/h100" lora8-off_none-tp1-rb16 eager --timeout 900
  one 1 $P/graphs.json "$runs/h100-graphs" lora8-off_none-tp1-rb16 graphs --timeout 900
  one 2 $P/graphs.json "$runs/h100-graphs" full-off_none-tp1-rb16 graphs-full --timeout 900
fi
wait
stamp "done"
