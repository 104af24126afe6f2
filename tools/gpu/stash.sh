#!/usr/bin/env bash
# On the GPU host, once per transfer: keep every part this transfer carried in $HOME/parts.
mkdir -p "$HOME/parts"
for f in .gpu/parts/site.tar.xz.part* .gpu/gguf/smollm2.gguf.part* .gpu/cache.tar.xz .gpu/vllm-cache.tar.xz .gpu/fa-site.tar.xz \
         .gpu/megatron/parts/megatron.tar.xz.part* .gpu/megatron/transformer_engine_torch-*.whl; do
  [ -f "$f" ] && cp "$f" "$HOME/parts/" && echo "stashed $(basename "$f")"
done
ls "$HOME/parts" | tr '\n' ' '; echo
