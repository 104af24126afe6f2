#!/usr/bin/env bash
# On the GPU host, in the command whose transfer carries the last part: stash it, snapshot the suite (later
# commands re-sync the working tree; the detached run must not import half-synced files), set up, start the run.
#   bash tools/gpu/launch.sh [SESSION_SCRIPT]
set -e
bash tools/gpu/stash.sh
rm -rf "$HOME/snap" && mkdir -p "$HOME/snap/.gpu"
cp -r suite tools benchmarks "$HOME/snap/" && cp -r .gpu/bin "$HOME/snap/.gpu/" && { [ -d .gpu/plans ] && cp -r .gpu/plans "$HOME/snap/.gpu/" || true; } && { [ -d .whl ] && cp -r .whl "$HOME/snap/" || true; }
cd "$HOME/snap"
# the snapshot has no .git: the commit it was made from comes along (`git rev-parse HEAD > .gpu/commit` here)
[ -f "$OLDPWD/.gpu/commit" ] && export GRPO_SUITE_GIT_COMMIT=$(cat "$OLDPWD/.gpu/commit") && echo "suite commit $GRPO_SUITE_GIT_COMMIT"
source tools/gpu/setup.sh
nvidia-smi --query-gpu=index,name,memory.used,memory.total,driver_version --format=csv
setsid nohup bash "${1:-tools/gpu/session.sh}" "$HOME/runs" > "$HOME/session.log" 2>&1 < /dev/null &
sleep 5; cat "$HOME/session.log"
