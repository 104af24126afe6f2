#!/usr/bin/env bash
# On the build machine: flash-attn's Python files (no CUDA build) and einops as .gpu/fa-site.tar.xz (~0.5 MB), for
# the GPU hosts, whose verl stack has no flash-attn. With FLASH_ATTENTION_TRITON_AMD_ENABLE=TRUE `import flash_attn`
# skips its CUDA module, and verl's logprobs_from_logits takes flash-attn's Triton cross entropy instead of its
# per-token loop (tools/gpu/logprob-probe.py measures both). The host's own triton (torch's) runs the kernel.
#   bash tools/gpu/fa-site.sh [flash-attn version]
set -euo pipefail
ver=${1:-2.8.3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# flash-attn's setup.py imports torch: build against the one installed here (CPU torch will do: nothing compiles);
# FORCE_BUILD keeps it from looking for a prebuilt CUDA wheel to download
FLASH_ATTENTION_SKIP_CUDA_BUILD=TRUE FLASH_ATTENTION_FORCE_BUILD=TRUE python3 -m pip wheel -q --no-deps --no-build-isolation --no-binary flash-attn \
  -w "$work/whl" "flash-attn==$ver"
python3 -m pip install -q --no-deps --no-compile --target "$work/site" "$work"/whl/flash_attn-*.whl einops
rm -rf "$work/site/hopper" "$work/site/bin"
mkdir -p .gpu && tar -C "$work/site" -cJf .gpu/fa-site.tar.xz .
ls -l .gpu/fa-site.tar.xz
