#!/usr/bin/env bash
# On a 4-GPU host, for what is left of a device budget (about 10 minutes): plans made on the build machine
# (`.gpu/plans/*.json`, planned with --out /root/runs/<folder>), one cell per GPU, each its own `grpo-suite run`.
#   setsid nohup bash tools/gpu/session-short.sh RUNS_DIR > $HOME/session.log 2>&1 &
set -u
runs=${1:-$HOME/runs}
P=.gpu/plans
suite() { python3 -m suite "$@"; }
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
mkdir -p "$runs"
stamp "private /tmp probe: $(python3 -c 'from suite.run import private_tmp as p; print(p.probe())')"
one() {  # one GPU PLAN OUT CELL LOG
  ( stamp "$4 on GPU $1"; suite run "$2" --gpus "$1" --out "$3" --cells "$4" --timeout 900 --no-verl-check ) > "$runs/$5.log" 2>&1 &
}
one 3 $P/oom.json "$runs/h100-oom" lora8-off_none-tp1-rb16 oom
if python3 -c 'from suite.run import private_tmp as p; raise SystemExit(p.probe()[0] is None)'; then
  one 0 $P/bench.json "$runs/h100" lora8-off_none-tp1-rb16 eager
  one 1 $P/graphs.json "$runs/h100-graphs" lora8-off_none-tp1-rb16 graphs
  one 2 $P/graphs.json "$runs/h100-graphs" full-off_none-tp1-rb16 graphs-full
fi
wait
stamp "done"
