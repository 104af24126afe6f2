#!/usr/bin/env bash
# On the GPU host: the Megatron stack (tools/gpu/megatron.md) into $HOME/megatron-site, the TE torch binding built
# there once, the site put on PYTHONPATH right after the verl site, then an import smoke test.
#   bash tools/gpu/megatron-setup.sh --stash     each command whose transfer carries a megatron part (or the TE wheel)
#   source tools/gpu/megatron-setup.sh           after the verl site is installed (tools/gpu/setup.sh), all parts stashed
#   setsid nohup bash tools/gpu/megatron-setup.sh > $HOME/megatron-setup.log 2>&1 &    same, detached (the build
#                                                may outlast one 10-minute command; poll the log)
# MEGATRON_SMOKE=0 skips the smoke test (a later job that only needs the environment).
# The body is one { } block: bash parses it whole before running, so a later command's working-tree sync cannot
# change a detached run half-way through.
{
if [ "${1:-}" = --stash ]; then
  bash tools/gpu/stash.sh  # it keeps the megatron parts and a carried TE wheel like every other part
  return 0 2>/dev/null || exit 0
fi
set -e
ts() { date +%s; }
MS=$HOME/megatron-site
# Detached runs start from a bare shell: bring in the verl site (and env.sh) the way setup.sh does.
case ":${PYTHONPATH:-}:" in *":$HOME/site:"*) ;; *) source .gpu/bin/install.sh ;; esac

if [ ! -f "$MS/.unpacked" ]; then
  ls "$HOME"/parts/megatron.tar.xz.part* >/dev/null 2>&1 || { echo "megatron-setup: no megatron parts in $HOME/parts (stash them first)"; false; }
  t=$(ts); mkdir -p "$MS"
  cat "$HOME"/parts/megatron.tar.xz.part* | xz -d -T0 | tar -x -C "$MS" \
    || { echo "megatron-setup: unpack failed: a part is missing or truncated (compare .gpu/megatron/megatron.sha256)"; false; }
  # cold imports in every Ray worker otherwise recompile megatron/TE/modelopt bytecode
  python3 -m compileall -q -j 0 "$MS/site" >/dev/null 2>&1 || true
  touch "$MS/.unpacked"; echo "megatron-setup: unpacked in $(( $(ts) - t )) s"
fi
source "$MS/env.sh"   # megatron site after the verl site; ninja on PATH

# the binding's .so sits in transformer_engine/wheel_lib/ (TE >= 2.x wheels) or at the top of the site
te_so() { find "$MS/site" -maxdepth 3 -name 'transformer_engine_torch*.so' | grep -q .; }
if ! te_so; then
  whl=$(ls "$HOME"/parts/transformer_engine_torch-*.whl 2>/dev/null | head -1)
  if [ -n "$whl" ]; then
    echo "megatron-setup: using the prebuilt $(basename "$whl"), no build"
  else
    # Prerequisites of the build, all reported at once: a missing one costs a whole run otherwise.
    miss=""
    command -v g++ >/dev/null || miss="$miss; g++ (C++17 compiler)"
    pyinc=$(python3 -c 'import sysconfig;print(sysconfig.get_paths()["include"])')
    [ -f "$pyinc/Python.h" ] || miss="$miss; Python.h in $pyinc (python3.12-dev)"
    command -v ninja >/dev/null || miss="$miss; ninja from the megatron site (without it the build is serial: 25-50 min)"
    # CUDA_HOME as torch finds it, but only a folder with headers (a wrapper script named nvcc misleads dirname)
    for c in "${CUDA_HOME:-}" /usr/local/cuda "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc || echo /x/x/x)")")")"; do
      [ -n "$c" ] && [ -f "$c/include/cuda.h" ] && { export CUDA_HOME=$c; break; }
    done
    # TE takes headers from the toolkit only; what it lacks (always cudnn.h and nccl.h, maybe more) comes from
    # torch's pip wheels (nvidia-cudnn-cu13, nvidia-nccl-cu13, ...) through CPLUS_INCLUDE_PATH.
    inc=$(python3 - <<'EOF'
import glob, importlib.util, os, sys
torch_site = os.path.dirname(os.path.dirname(importlib.util.find_spec("torch").origin))
roots = [torch_site] + [p for p in sys.path if p and p != torch_site]
system = [os.path.join(os.environ.get("CUDA_HOME") or "/usr/local/cuda", "include"), "/usr/include"]
found = []
for h in ("cuda.h", "cublasLt.h", "nvrtc.h", "cudnn.h", "nccl.h"):
    if any(os.path.isfile(os.path.join(d, h)) for d in system):
        continue  # the compiler finds it by itself
    hits = [os.path.dirname(f) for r in roots for f in glob.glob(os.path.join(r, "nvidia", "**", h), recursive=True)]
    d = hits[0] if hits else "MISSING:" + h
    if d not in found:
        found.append(d)
print(":".join(found))
EOF
)
    case $inc in *MISSING:*) miss="$miss; CUDA headers (${inc}) in ${CUDA_HOME:-no toolkit} or <torch site>/nvidia/";; esac
    python3 -c 'import torch.utils.cpp_extension, packaging' 2>/dev/null || miss="$miss; torch.utils.cpp_extension or packaging"
    [ -z "$miss" ] || { echo "megatron-setup: cannot build the TE torch binding, missing${miss#;}"; false; }
    # The sdist imports wheel.bdist_wheel and setuptools: the shipped pair only if the host lacks either.
    bt=""; python3 -c 'import setuptools, wheel.bdist_wheel' 2>/dev/null || bt=$MS/buildtools:
    # progress while it runs: grep -c '^\[' $MS/build.log  (ninja prints [n/N] per compiled file)
    echo "megatron-setup: building transformer_engine_torch with $(nproc) jobs (CUDA_HOME=$CUDA_HOME, headers $inc${bt:+, shipped setuptools/wheel})"
    t=$(ts); rm -rf "$MS/wheel"; mkdir -p "$MS/wheel"
    # FORCE_BUILD: no attempt to fetch a prebuilt wheel from GitHub; NO_LOCAL_VERSION: a "+git" version would
    # fail TE's check that the three TE dists have one version.
    MAX_JOBS=$(nproc) NVTE_PYTORCH_FORCE_BUILD=TRUE NVTE_NO_LOCAL_VERSION=1 CXX=g++ \
      CPLUS_INCLUDE_PATH=$inc${CPLUS_INCLUDE_PATH:+${inc:+:}$CPLUS_INCLUDE_PATH} PYTHONPATH=$bt$PYTHONPATH \
      python3 -m pip wheel -v --no-deps --no-build-isolation --no-index -w "$MS/wheel" \
        "$MS"/transformer_engine_torch-*.tar.gz > "$MS/build.log" 2>&1 \
      || { tail -40 "$MS/build.log"; echo "megatron-setup: build failed after $(( $(ts) - t )) s, log $MS/build.log"; false; }
    whl=$(ls "$MS"/wheel/transformer_engine_torch-*.whl)
    echo "megatron-setup: built $(basename "$whl") ($(du -h "$whl" | cut -f1)) in $(( $(ts) - t )) s"
    # ship it next time instead of rebuilding; a detached run's $OUT is gone: copy $MS/wheel/*.whl at a later poll
    [ -z "${OUT:-}" ] || cp "$whl" "$OUT/" 2>/dev/null || true
  fi
  # Unzipped, not `pip install --target`: pip skips a folder that already exists (transformer_engine/, from the TE
  # wheel), which silently left the .so out on 2026-11-28; --upgrade would replace all of TE's folder instead.
  python3 -m zipfile -e "$whl" "$MS/site"
  te_so || { echo "megatron-setup: no transformer_engine_torch .so in $MS/site after unpacking $whl"; false; }
fi

if [ "${MEGATRON_SMOKE:-1}" != 0 ]; then
  python3 - <<'EOF'
import time; t0 = time.time()
# torch first, as in every verl worker: torch loads its pip CUDA libraries (cuBLAS, ...) that TE's core links to
import torch; tt = time.time()
import transformer_engine.pytorch; t1 = time.time()
import megatron.core; t2 = time.time()
from megatron.bridge import AutoBridge; t3 = time.time()
import verl.workers.engine as E; print(E.MegatronEngine); t4 = time.time()
from importlib.metadata import version as v
print("megatron-setup: smoke ok:", ", ".join(f"{p} {v(p)}" for p in ("transformer-engine", "transformer-engine-cu13",
      "transformer_engine_torch", "megatron-core", "megatron-bridge", "nvidia-modelopt")))
print(f"megatron-setup: imports torch {tt-t0:.1f} s, TE {t1-tt:.1f} s, mcore {t2-t1:.1f} s, bridge {t3-t2:.1f} s, verl engine {t4-t3:.1f} s")
EOF
fi
set +e
}
