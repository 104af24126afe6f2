#!/usr/bin/env bash
# A host with the verl site and the megatron parts stashed (tools/gpu/megatron.md), after launch.sh. GPU 0: the FSDP
# twin (~8 min) while the TE torch binding builds on the CPUs (~2 min), then the Megatron twin, then Megatron with
# offload. With a second GPU, the SmolLM2 train run (~14 min) runs there from the start. If the Megatron stack
# cannot be had (build or smoke test fails) or its first cell is not ok, GPU 0 runs something else that measures:
# the FSDP offload twin on a 2-GPU host, the train run on a 1-GPU host.
#   setsid nohup bash tools/gpu/session-megatron.sh RUNS_DIR > $HOME/session.log 2>&1 &
source tools/gpu/lib.sh "${1:-$HOME/runs}"
ngpu=$(nvidia-smi -L | wc -l)
# OUT unset: a detached build outlives the launching command's $OUT (poll.sh brings the wheel back)
( stamp "megatron setup"; env -u OUT bash tools/gpu/megatron-setup.sh; echo "megatron-setup: exit $?" ) > "$runs/megatron-setup.log" 2>&1 &
mpid=$!
[ "$ngpu" -lt 2 ] || lane 1 lane-train $P/train.json "$runs/h100" "*"
lane 0 lane-fsdp $P/graphs.json "$runs/h100-graphs" "${C0:-full-off_none-tp1-rb16}"
wait $!
wait $mpid
instead() {
  stamp "$1: GPU 0 runs something else"
  if [ "$ngpu" -lt 2 ]; then lane 0 lane-train $P/train.json "$runs/h100" "*"
  else lane 0 lane-fsdp2 $P/graphs.json "$runs/h100-graphs" "${C3:-full-off_param+optimizer-tp1-rb16}"; fi
}
if grep -q "smoke ok" "$runs/megatron-setup.log"; then
  MEGATRON_SMOKE=0 source tools/gpu/megatron-setup.sh  # the megatron site on PYTHONPATH for the cells
  stamp "megatron ready"
  lane 0 lane-megatron $P/megatron-1gpu.json "$runs/h100-megatron" "${C1:-full-off_none-tp1-rb16}"
  wait $!
  if any_ok "$runs/h100-megatron"; then
    lane 0 lane-megatron2 $P/megatron-1gpu.json "$runs/h100-megatron" "${C2:-full-off_param+optimizer-tp1-rb16}"
  else
    instead "megatron cell not ok"
  fi
else
  instead "megatron stack not ready ($(tail -1 "$runs/megatron-setup.log"))"
fi
wait
stamp "done"
