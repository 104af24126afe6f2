#!/usr/bin/env bash
# One GPU, heavy model at the seed's shape: the reference cell (the 32B LoRA recipe per GPU), then the
# candidates, one after another on GPU 0 (solo: never packed, so each cell's numbers are its own).
#   GPU_MODELS=synthetic:qwen2.5-7b bash tools/gpu/launch.sh tools/gpu/session-heavy.sh, with HEAVY_PLAN (a plans.sh
#   name), HEAVY_CELLS ("ref cand..."), HEAVY_TIMEOUTS ("s s..."), HEAVY_BUDGET_S in the environment
source tools/gpu/lib.sh "${1:-$HOME/runs}"
# HEAVY_PROBE=1: first check that this torch honours PYTORCH_ALLOC_CONF=pinned_max_round_threshold_mb (the
# exact-size pinned blocks the 14B recipe needs to fit the host); where it does not, run HEAVY_FALLBACK_PLAN /
# HEAVY_FALLBACK_CELLS instead, so the host's time still measures something
if [ -n "${HEAVY_PROBE:-}" ]; then
  stamp "pinned probe"; python3 tools/gpu/pinned-probe.py 2>&1 | tee "$runs/pinned-probe.jsonl"
  if ! python3 tools/gpu/pinned-probe.py --honoured "$runs/pinned-probe.jsonl"; then
    stamp "pinned_max_round_threshold_mb is not honoured here: running ${HEAVY_FALLBACK_PLAN:-nothing} instead"
    [ -z "${HEAVY_FALLBACK_PLAN:-}" ] && { stamp "done"; exit 0; }
    HEAVY_PLAN=$HEAVY_FALLBACK_PLAN; HEAVY_CELLS=${HEAVY_FALLBACK_CELLS:?HEAVY_FALLBACK_CELLS with HEAVY_FALLBACK_PLAN}
    HEAVY_TIMEOUTS=${HEAVY_FALLBACK_TIMEOUTS:-$HEAVY_TIMEOUTS}
    # HEAVY_FALLBACK_MODELS: checkpoints only the fallback needs, built here rather than in setup (~20 s for 7B)
    for m in ${HEAVY_FALLBACK_MODELS:-}; do
      [ -f "$GRPO_SUITE_CACHE/models/${m#synthetic:}/grpo-suite-synthetic.json" ] \
        || python3 -m suite model build "$m" --device cuda | tr -d '\n'; echo
    done
  fi
fi
# HEAVY_COPY_PROBE=1: first time the ways to hold an offloaded copy on the host (tools/gpu/copy-probe.py, ~2 min,
# 8 GiB of GPU and host memory, freed before the cells): pinned and cached, pageable, registered, and the suite's
# HostBuffers on a DTensor, which registered_host_copies cells depend on
if [ -n "${HEAVY_COPY_PROBE:-}" ]; then
  stamp "copy probe"; python3 tools/gpu/copy-probe.py 2>&1 | tee "$runs/copy-probe.jsonl"; stamp "copy probe done"
fi
# flash-attn's Python files (tools/gpu/fa-site.sh) in /tmp/fa-site, where they came with the last site part
fa_site() {
  [ -f "$HOME/parts/fa-site.tar.xz" ] || return 1
  [ -d /tmp/fa-site/flash_attn ] || { mkdir -p /tmp/fa-site && tar -C /tmp/fa-site -xJf "$HOME/parts/fa-site.tar.xz"; }
}
# HEAVY_LOGPROB_PROBE=1: first time verl's log-prob step against the same maths vectorised (~40 s a probe), to tell how
# much of a step its per-token loop is on a host without flash-attn. HEAVY_LOGPROB_PROBE=beside: the same, in the
# background while the first cell starts: its imports, Ray and dataset load leave the GPU idle for ~90 s, and the
# probes (~30 GB of logits at most) are done well before vLLM measures free memory to size its KV cache
logprob_probes() {
  stamp "log-prob probe"; python3 tools/gpu/logprob-probe.py > "$runs/logprob-probe.jsonl" 2>&1
  # the same with flash-attn's Python files (tools/gpu/fa-site.sh), for the probe alone (cells see them only with HEAVY_FA_SITE)
  if fa_site; then
    stamp "log-prob probe, flash-attn Triton cross entropy"
    PYTHONPATH=/tmp/fa-site:$PYTHONPATH FLASH_ATTENTION_TRITON_AMD_ENABLE=TRUE python3 tools/gpu/logprob-probe.py \
      > "$runs/logprob-probe-triton.jsonl" 2>&1
  fi
  stamp "log-prob probes done"
}
case "${HEAVY_LOGPROB_PROBE:-}" in
  "") ;;
  beside) logprob_probes & ;;
  *) logprob_probes ;;
esac
# HEAVY_FA_SITE=1: the cells too run with flash-attn's Python files (verl takes its Triton cross entropy, as in the
# suite's images); their results record it (provenance.env FLASH_ATTENTION_TRITON_AMD_ENABLE, versions flash-attn)
no_fa_pythonpath=$PYTHONPATH
if [ -n "${HEAVY_FA_SITE:-}" ] && fa_site; then
  export PYTHONPATH=/tmp/fa-site:$PYTHONPATH FLASH_ATTENTION_TRITON_AMD_ENABLE=TRUE; fa_on=1
  stamp "cells run with flash-attn's Triton cross entropy (/tmp/fa-site)"
fi
# a cell that fails with flash-attn's files on the path (anything but ok, oom or timeout) runs once more without
# them, with the time left: the host's time still measures the cell on the stack it knows. The failed attempt's
# folder is kept as <cell>.fa (the plan's verl arguments name the cell's own folder, so the retry runs there)
status_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("status", ""))' "$1" 2>/dev/null; }
stamp "host: $(nproc) cores; $(free -g | awk '/^Mem/ {print $2 " GiB RAM, " $7 " GiB available"}'); disk: $(df -h "$HOME" | awk 'NR==2 {print $2 " total, " $4 " free"}')"
# a cell is "ID" of HEAVY_PLAN or "PLAN:ID" of another plan (a candidate matrix read against HEAVY_PLAN's reference)
matrix_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["matrix"])' "$1"; }
# default: the 2026-12-03 run (7B reference, then the first candidate and the eager twin of the reference)
read -r -a cells <<< "${HEAVY_CELLS:-lora32-off_param+optimizer-tp1-rb45-gmu0.3-mnbt1536-graphs-mb15-gc lora32-off_none-tp1-rb45-gmu0.3-mnbt8192-graphs-mb25-gc lora32-off_param+optimizer-tp1-rb45-gmu0.3-mnbt1536-eager-mb15-gc}"
read -r -a limits <<< "${HEAVY_TIMEOUTS:-900}"
end=$(( $(date +%s) + ${HEAVY_BUDGET_S:-1500} ))  # what the host is held for: no cell may outlast it
(
  for i in "${!cells[@]}"; do
    t=${limits[$i]:-${limits[-1]}}; left=$(( end - $(date +%s) ))
    [ "$left" -lt "$t" ] && t=$left
    [ "$t" -lt 300 ] && { stamp "${cells[$i]} not started: $t s left"; continue; }
    cell=${cells[$i]##*:}; plan=$P/${HEAVY_PLAN:-7b-h200}.json
    [ "$cell" != "${cells[$i]}" ] && plan=$P/${cells[$i]%%:*}.json
    name=$(matrix_of "$plan")
    stamp "$cell of $name on GPU 0 (timeout $t s)"
    suite run "$plan" --gpus 0 --out "$runs/$name" --cells "$cell" --no-verl-check --no-preflight --timeout "$t"
    dir=$(find "$runs/$name" -type d -name "$cell" | head -1)
    st=$(status_of "$dir/result.json")
    left=$(( end - $(date +%s) ))
    if [ -n "${fa_on:-}" ] && [ -n "$dir" ] && [[ ! "$st" =~ ^(ok|oom|timeout)$ ]] && [ "$left" -ge 300 ]; then
      stamp "$cell ended '${st:-no result}' with flash-attn's files: again without them (timeout $left s)"
      rm -rf "$dir.fa" && mv "$dir" "$dir.fa"
      env -u FLASH_ATTENTION_TRITON_AMD_ENABLE PYTHONPATH="$no_fa_pythonpath" python3 -m suite run "$plan" --gpus 0 --out "$runs/$name" \
        --cells "$cell" --no-verl-check --no-preflight --timeout "$left"
    fi
    free -g | awk '/^Mem/ {print "host RAM after: " $3 " GiB used"}'
  done
) > "$runs/lane0.log" 2>&1
# HEAVY_ACTIVATION_PROBE=1: with the time the cells left (>= 90 s), the logits rows of benchmarks/activation_probe.py
# on this GPU under verl's autocast, eager and compiled entropy, at 4096 tokens and at the 7B cells' log-prob micro
# batch (15 x 1211 packed tokens); a row that runs out of memory is recorded as such and the others kept
if [ -n "${HEAVY_ACTIVATION_PROBE:-}" ] && [ $(( end - $(date +%s) )) -ge 90 ]; then
  for t in 4096 18165; do
    left=$(( end - $(date +%s) - 10 )); [ "$left" -lt 30 ] && break
    stamp "activation probe, $t tokens (timeout $left s)"
    timeout "$left" python3 benchmarks/activation_probe.py --device cuda --tokens "$t" --out "$runs/activation-probe/t$t" \
      > "$runs/activation-probe-t$t.log" 2>&1
  done
fi
stamp "done"
