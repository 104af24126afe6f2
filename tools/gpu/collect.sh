#!/usr/bin/env bash
# On the GPU host: pack what the runs wrote (results, metrics, validation dumps, logs) into $OUT.
#   bash tools/gpu/collect.sh RUNS_DIR [NAME]
set -u
runs=${1:-runs}; name=${2:-runs}
tar -C "$(dirname "$runs")" --exclude='*/ckpt' --exclude='*.safetensors' -cJf "$OUT/$name.tar.xz" "$(basename "$runs")"
ls -la "$OUT"
