#!/usr/bin/env bash
# On the GPU host, sourced once all parts are stashed: verl stack, suite cache (tokenizer, data), models.
#   source tools/gpu/setup.sh
set -e
source .gpu/bin/install.sh
export GRPO_SUITE_CACHE=$HOME/.cache/grpo-suite
export CUDA_DEVICE_ORDER=PCI_BUS_ID  # CUDA and NVML indices agree, so --gpus and the sampler mean the same GPU
mkdir -p "$GRPO_SUITE_CACHE"
[ -d "$GRPO_SUITE_CACHE/tokenizers" ] || tar -C "$GRPO_SUITE_CACHE" -xJf "$HOME/parts/cache.tar.xz"
if [ -d .whl ] && [ ! -d /tmp/extra-site ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/extra-site .whl/*.whl
fi
export PYTHONPATH=$PWD:/tmp/extra-site:$PYTHONPATH
# an earlier host's compile caches (poll.sh brings them back): vLLM's and the trainer's kernels, hit with the same
# vLLM, torch, Triton and shapes
[ -f "$HOME/parts/vllm-cache.tar.xz" ] && { python3 -m suite cache import "$HOME/parts/vllm-cache.tar.xz" || echo "setup: compile cache not imported"; }
t0=$(date +%s.%N)
# GPU_MODELS: the synthetic checkpoints a run needs (a 7B one is 15 GiB of the host's disk)
for m in ${GPU_MODELS:-synthetic:qwen2.5-0.5b synthetic:qwen2.5-1.5b}; do
  d=$GRPO_SUITE_CACHE/models/${m#synthetic:}
  [ -f "$d/grpo-suite-synthetic.json" ] || python3 -m suite model build "$m" --device cuda | tr -d '\n'; echo
done
smol=$GRPO_SUITE_CACHE/models/smollm2-135m-instruct
if [ ! -f "$smol/config.json" ] && ls "$HOME"/parts/smollm2.gguf.part* >/dev/null 2>&1; then
  mkdir -p /tmp/gguf && cat "$HOME"/parts/smollm2.gguf.part* > /tmp/gguf/SmolLM2-135M-Instruct.Q4_1.gguf
  python3 -m suite model import-gguf /tmp/gguf/SmolLM2-135M-Instruct.Q4_1.gguf --out "$smol" | tr -d '\n'; echo
fi
echo "setup: models ready in $(python3 -c "import time;print(round(time.time()-$t0,1))") s"
set +e
