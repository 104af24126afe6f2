#!/usr/bin/env bash
# On the GPU host: wait up to N seconds (or until the run prints "done"), then show where it stands.
#   bash tools/gpu/poll.sh 500
if [ ! -f "$HOME/session.log" ]; then
  # A fresh host: the one that ran the cells was stopped (a gap > 30 s between commands). Waiting here would
  # only use up the host's time (230 s did on 2026-11-28); say so at once.
  echo "poll: no run on this host ($HOME/session.log missing): the earlier host is gone; start again"
  exit 3
fi
end=$(( $(date +%s) + ${1:-300} ))
while [ "$(date +%s)" -lt "$end" ] && ! grep -qE '^=== [0-9:]+ done$' "$HOME/session.log" 2>/dev/null; do sleep 10; done
cat "$HOME/session.log"
for f in "$HOME"/runs/*.log; do echo "--- $f"; tail -c 1500 "$f"; done
find "$HOME/runs" -name result.json | while read -r r; do
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['status'], d['id'], len(d['steps']), 'steps', (d.get('reason') or '')[:150])" "$r"
done
for f in "$HOME"/runs/*/*/*/*/*/metrics.jsonl; do [ -f "$f" ] && echo "$(wc -l < "$f") lines $f"; done 2>/dev/null
[ -f "$HOME/runs/host-memory.log" ] && echo "host memory (MiB used, available): $(tail -1 "$HOME/runs/host-memory.log")"
nvidia-smi --query-gpu=index,memory.used,utilization.gpu --format=csv,noheader
# Bring back what exists after every poll: a host that gets no command for > 30 s is stopped,
# and with it every result not yet copied out (this happened once; see tools/gpu/README.md).
[ -n "${OUT:-}" ] && [ -d "$HOME/runs" ] && tar -C "$HOME" --exclude='*/ckpt' -cJf "$OUT/runs.tar.xz" runs session.log 2>/dev/null
# The compile caches come back too (`grpo-suite cache export`: vLLM's, its model info, inductor's and Triton's, with the versions
# they need); carried as .gpu/vllm-cache.tar.xz (the name from when it held vLLM's alone), a later fresh host
# imports it (setup.sh) instead of compiling again. In a subshell: nothing here may keep the runs above from coming
# back.
if [ -n "${OUT:-}" ] && [ -d "$HOME/.cache/grpo-suite/vllm/torch_compile_cache" ] && [ -d "$HOME/snap" ]; then
  ( source "$HOME/snap/.gpu/bin/install.sh" >/dev/null 2>&1; cd "$HOME/snap" && GRPO_SUITE_CACHE=$HOME/.cache/grpo-suite \
      python3 -m suite cache export --out "$OUT/vllm-cache.tar.xz" ) || echo "poll: compile cache not brought back"
  # over 16 MB (the kernels' caches grow with every shape compiled) vLLM's part alone comes back, as before them
  if [ -f "$OUT/vllm-cache.tar.xz" ] && [ "$(stat -c %s "$OUT/vllm-cache.tar.xz")" -gt 16000000 ]; then
    echo "poll: compile caches over 16 MB: vLLM's alone"
    ( source "$HOME/snap/.gpu/bin/install.sh" >/dev/null 2>&1; cd "$HOME/snap" && GRPO_SUITE_CACHE=$HOME/.cache/grpo-suite \
        python3 -m suite cache export --out "$OUT/vllm-cache.tar.xz" --inductor-dir /nonexistent --triton-dir /nonexistent ) \
      || rm -f "$OUT/vllm-cache.tar.xz"
    [ -f "$OUT/vllm-cache.tar.xz" ] && [ "$(stat -c %s "$OUT/vllm-cache.tar.xz")" -gt 16000000 ] && rm -f "$OUT/vllm-cache.tar.xz" && echo "poll: compile cache over 16 MB, not brought back"
  fi
fi
# A TE torch binding built here (tools/gpu/megatron-setup.sh) comes back too, in pieces under $OUT's 16 MiB a file:
# `cat te-whl.part* > .gpu/megatron/<name>` on the build machine (the name is in te-whl.name).
for w in "$HOME"/megatron-site/wheel/transformer_engine_torch-*.whl; do
  [ -n "${OUT:-}" ] && [ -f "$w" ] && basename "$w" > "$OUT/te-whl.name" && split -b 15M -d "$w" "$OUT/te-whl.part"
done; true
