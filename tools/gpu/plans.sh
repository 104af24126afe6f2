#!/usr/bin/env bash
# On the build machine, before a GPU run: plan the run's matrices here (saves ~1 minute of host time
# importing verl three times) with the GPU host's paths baked in, into .gpu/plans/, plus the commit they came from.
#   bash tools/gpu/plans.sh
set -euo pipefail
H=/root  # the GPU hosts run as root
data=$H/.cache/grpo-suite/data/gsm8k-offline
out=.gpu/plans
mkdir -p "$out"
plan() { python3 -m suite plan "suite/matrices/$1.toml" --profile "$2" --format json --out "$H/runs/$3" --data-root "$data" --no-verl-check --predict-memory > "$out/$4.json"; echo "$out/$4.json: $(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))))" "$out/$4.json") cells"; }
plan h100-1gpu bench h100 bench
plan h100-1gpu-graphs bench h100-graphs graphs
plan h100-1gpu-1.5b bench h100 bench-1.5b
plan h100-2gpu bench h100 2gpu
plan h100-1gpu-oom bench h100-oom oom
plan smollm2-train train h100 train
plan h100-1gpu-megatron bench h100-megatron megatron-1gpu
plan h200-1gpu-7b-fa short h200-1gpu-7b-fa 7b-fa-short-h200
plan h100-1gpu-7b short h100-1gpu-7b 7b-short-h100
plan h100-1gpu-7b-fa short h100-1gpu-7b-fa 7b-fa-short-h100
plan h200-1gpu-14b-fa short h200-1gpu-14b-fa 14b-fa-short-h200
plan h100-1gpu-7b-fa-mb5 short h100-1gpu-7b-fa-mb5 7b-fa-mb5-short-h100
plan h100-1gpu-14b-bf16 short h100-1gpu-14b-bf16 14b-bf16-short-h100
plan h100-1gpu-7b-bf16 short h100-1gpu-7b-bf16 7b-bf16-short-h100
plan h100-1gpu-7b-pageable short h100-1gpu-7b-pageable 7b-pageable-short-h100
plan h200-1gpu-14b-pageable short h200-1gpu-14b-pageable 14b-pageable-short-h200
plan h100-1gpu-pageable short h100-1gpu-pageable pageable-short-h100
plan h100-1gpu-7b-registered short h100-1gpu-7b-registered 7b-registered-short-h100
plan h200-1gpu-14b-registered short h200-1gpu-14b-registered 14b-registered-short-h200
for m in h100-1gpu-7b h100-1gpu-14b h200-1gpu-7b h200-1gpu-14b h200-1gpu-7b-rmpad h200-1gpu-7b-bypass h200-1gpu-7b-nokl h200-1gpu-14b-pinned h200-1gpu-7b-flex h200-1gpu-14b-merge h200-1gpu-7b-fa h100-1gpu-7b-fa h100-1gpu-7b-fa-kv h100-1gpu-7b-fa-mb5 h200-1gpu-14b-fa h100-1gpu-14b-bf16 h100-1gpu-7b-bf16 h100-1gpu-7b-pageable h200-1gpu-14b-pageable h100-1gpu-7b-registered h200-1gpu-14b-registered; do plan $m bench $m ${m#*-1gpu-}-${m%%-*}; done
git rev-parse HEAD | tr -d '\n' > .gpu/commit; [ -z "$(git status --porcelain -uno)" ] || echo -n "-dirty" >> .gpu/commit
echo "commit $(cat .gpu/commit)"
