#!/usr/bin/env bash
# A one-GPU host with the verl site and the megatron parts stashed (tools/gpu/megatron.md), after launch.sh: the TE
# torch binding builds on the CPUs while the GPU runs the FSDP twin (~8 min); then the Megatron twin, then Megatron
# with offload. If the Megatron stack cannot be had (build or smoke test fails) or its first cell is not ok, the GPU
# runs the SmolLM2 train run instead, so the session still measures something.
#   setsid nohup bash tools/gpu/session-1gpu-megatron.sh RUNS_DIR > $HOME/session.log 2>&1 &
source tools/gpu/lib.sh "${1:-$HOME/runs}"
# OUT unset: a detached build outlives the launching call's $OUT (poll.sh brings the wheel back)
( stamp "megatron setup"; env -u OUT bash tools/gpu/megatron-setup.sh; echo "megatron-setup: exit $?" ) > "$runs/megatron-setup.log" 2>&1 &
mpid=$!
lane 0 lane-fsdp $P/graphs.json "$runs/h100-graphs" "${C0:-full-off_none-tp1-rb16}"
wait $!
wait $mpid
if grep -q "smoke ok" "$runs/megatron-setup.log"; then
  MEGATRON_SMOKE=0 source tools/gpu/megatron-setup.sh  # the megatron site on PYTHONPATH for the cells
  stamp "megatron ready"
  lane 0 lane-megatron $P/megatron-1gpu.json "$runs/h100-megatron" "${C1:-full-off_none-tp1-rb16}"
  wait $!
  if any_ok "$runs/h100-megatron"; then
    lane 0 lane-megatron2 $P/megatron-1gpu.json "$runs/h100-megatron" "${C2:-full-off_param+optimizer-tp1-rb16}"
  else
    stamp "megatron cell not ok: the train run instead"
    lane 0 lane-train $P/train.json "$runs/h100" "*"
  fi
else
  stamp "megatron stack not ready ($(tail -1 "$runs/megatron-setup.log")): the train run instead"
  lane 0 lane-train $P/train.json "$runs/h100" "*"
fi
wait
stamp "done"
