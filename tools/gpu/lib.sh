# Sourced by the session scripts on the GPU host: runs dir, plans, and one detached `grpo-suite run` per GPU block.
#   source tools/gpu/lib.sh RUNS_DIR
set -u
runs=${1:-$HOME/runs}
P=.gpu/plans
suite() { python3 -m suite "$@"; }
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
private_tmp_ok() { python3 -c 'from suite.run import private_tmp as p; raise SystemExit(p.probe()[0] is None)'; }
one() {  # one GPUS PLAN OUT CELLS LOG [run options]: in the background, its output in $runs/LOG.log
  local gpus=$1 plan=$2 out=$3 cells=$4 log=$5; shift 5
  ( stamp "$cells on GPU $gpus"; suite run "$plan" --gpus "$gpus" --out "$out" --cells "$cells" --no-verl-check "$@"
  ) > "$runs/$log.log" 2>&1 &
}
lane() {  # lane GPUS LOG (PLAN OUT CELL)...: cells one after another on the same GPUs, in the background
  local gpus=$1 log=$2; shift 2
  # The first run's preflight (imports, ~20-30 s) stands for the lane: the host's minutes are few.
  ( pre=""; while [ $# -ge 3 ]; do
      stamp "$3 on GPU $gpus"
      suite run "$1" --gpus "$gpus" --out "$2" --cells "$3" --no-verl-check --timeout 1200 $pre
      pre=--no-preflight; shift 3
    done ) > "$runs/$log.log" 2>&1 &
}
any_ok() {  # any_ok DIR: some result.json under DIR says ok
  python3 -c 'import json,pathlib,sys; raise SystemExit(not any(json.loads(p.read_text()).get("status") == "ok" for p in pathlib.Path(sys.argv[1]).rglob("result.json")))' "$1" 2>/dev/null
}
mkdir -p "$runs"
# The host's memory every 5 s (MiB used, available) in $runs/host-memory.log: each poll brings it back, so a host
# that stops answering still leaves its memory up to the last poll
( while true; do echo "$(date -u +%H:%M:%S) $(free -m | awk '/^Mem/ {print $3, $7}')"; sleep 5; done ) \
  > "$runs/host-memory.log" 2>&1 &
host_memory_log=$!
trap 'kill "$host_memory_log" 2>/dev/null' EXIT
stamp "private /tmp probe: $(python3 -c 'from suite.run import private_tmp as p; print(p.probe())')"
