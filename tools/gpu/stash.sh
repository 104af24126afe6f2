#!/usr/bin/env bash
# On the GPU host, once per transfer: keep every part this call carried in $HOME/parts.
mkdir -p "$HOME/parts"
for f in .gpu/parts/site.tar.xz.part* .gpu/gguf/smollm2.gguf.part* .gpu/cache.tar.xz; do
  [ -f "$f" ] && cp "$f" "$HOME/parts/" && echo "stashed $(basename "$f")"
done
ls "$HOME/parts" | tr '\n' ' '; echo
