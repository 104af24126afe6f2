#!/usr/bin/env bash
# On the build machine: the Megatron stack that verl 0.9.1's Megatron engine needs (megatron-core, Megatron-Bridge,
# TransformerEngine + what they import), as ~55 MiB xz parts for the air-gapped host. See tools/gpu/megatron.md.
#   bash tools/gpu/megatron-parts.sh      -> .gpu/megatron/parts/megatron.tar.xz.partN (+ megatron.sha256)
set -euo pipefail
cd "$(dirname "$0")/../.."
t0=$(date +%s)
M=.gpu/megatron DL=.gpu/megatron/dl STAGE=.gpu/megatron/stage
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
mkdir -p "$DL" "$M/parts"
quiet() { grep -v -e 'is ignored: it is neither' -e 'Running pip as the .root. user' >&2 || true; }  # this machine's pip noise

# Exact pins, all installed --no-deps: their metadata conflicts with the verl site (bridge 0.5.1 wants
# transformers<5.9, a NeMo stack, ...), and verl itself installs Megatron-Bridge deps-free.
# pulp: modelopt 0.44.0 requires pulp<4.0 (it only imports it), so 3.3.2, the newest 3.x, not 4.2.0.
# TE 2.12.0: the newest TE whose core library runs on the hosts' CUDA 13.0 (cuBLAS 13.1.0.3). 2.13-2.16 call
# cublasLtGroupedMatrixLayoutInit_internal, which that cuBLAS lacks (2.16.1's import failed on an H200 host,
# 2026-11-28; checked here with nm against nvidia-cublas 13.1.0.3). Override with TE_VERSION=x.y.z.
TE=${TE_VERSION:-2.12.0}
PINS="megatron-core==0.18.0 megatron-bridge==0.5.1 nvidia-modelopt==0.44.0 pulp==3.3.2 einops==0.8.2
  onnx==1.23.2 onnxscript==0.7.2 onnx-ir==1.1.0 ml_dtypes==0.6.0 nvdlfw-inspect==0.2.2
  transformer-engine==$TE transformer-engine-cu13==$TE ninja==1.13.0"
# pip 23 does not widen a manylinux_2_28 target to older tags (ninja is manylinux2014): list them all.
plat="--platform manylinux2014_x86_64"; for n in $(seq 17 28); do plat="$plat --platform manylinux_2_${n}_x86_64"; done
need=""
for p in $PINS; do   # skip what is already downloaded (names in wheels use _ and may differ in case)
  n=$(echo "${p%%==*}" | tr 'A-Z-' 'a-z_'); v=${p##*==}
  ls "$DL" | tr 'A-Z' 'a-z' | grep -q "^${n}-${v}-" || need="$need $p"
done
# Build-only, for the host's `pip wheel --no-build-isolation` of the TE binding: the sdist's setup.py imports
# wheel.bdist_wheel; setup puts these first only if the host lacks wheel or setuptools (not on PYTHONPATH at run time).
BUILD_PINS="wheel==0.45.1 setuptools==80.9.0"
for p in $BUILD_PINS; do ls "$DL/build" 2>/dev/null | grep -q "^${p%%==*}-${p##*==}-" || need_b=1; done
[ -z "${need_b:-}" ] || python3 -m pip download -q --no-deps --only-binary=:all: -d "$DL/build" $BUILD_PINS 2> >(quiet)
[ -z "$need" ] || python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp $plat -d "$DL" $need 2> >(quiet)
# The TE torch binding exists only as an sdist; pip download would try to build its metadata (needs torch),
# so fetch the file named by PyPI's simple JSON API (PEP 691). It is compiled on the host against the host's torch.
SDIST=transformer_engine_torch-$TE.tar.gz
[ -f "$DL/$SDIST" ] || python3 - "$DL/$SDIST" <<'EOF'
import json, os, sys, urllib.request, hashlib
req = urllib.request.Request("https://pypi.org/simple/transformer-engine-torch/",
                             headers={"Accept": "application/vnd.pypi.simple.v1+json"})
f = next(f for f in json.load(urllib.request.urlopen(req))["files"] if f["filename"] == os.path.basename(sys.argv[1]))
data = urllib.request.urlopen(f["url"]).read()
assert hashlib.sha256(data).hexdigest() == f["hashes"]["sha256"], "sdist sha256 mismatch"
open(sys.argv[1], "wb").write(data)
EOF
t1=$(date +%s)

rm -rf "$STAGE"; mkdir -p "$STAGE"
# one TE version in the site: wheels of other TE versions left in the download folder stay out
stale=$(ls "$DL" | grep -E '^transformer_engine(_cu13)?-[0-9]' | grep -v -- "-$TE-" || true)
[ -z "$stale" ] || { mkdir -p "$DL/other"; for f in $stale; do mv "$DL/$f" "$DL/other/"; done; }
# pip 23 checks Requires-Python (bridge: >=3.12) against the running 3.11, not --python-version: ignore it.
python3 -m pip install -q --no-index --no-deps --no-compile --target "$STAGE/site" --python-version 3.12 \
  --implementation cp $plat --only-binary=:all: --ignore-requires-python "$DL"/*.whl 2> >(quiet)
# Never loaded by a torch run on x86-64 Linux: TE's JAX frontend, pulp's CBC solvers for other systems, tests.
# Console scripts in bin/ point at this machine's python: keep only ninja's real binary.
rm -rf "$STAGE"/site/transformer_engine/jax "$STAGE"/site/pulp/tests \
  "$STAGE"/site/pulp/solverdir/cbc/{win,osx,linux/i32,linux/arm64}
find "$STAGE/site/bin" -type f ! -name ninja -delete
python3 -m pip install -q --no-index --no-deps --no-compile --target "$STAGE/buildtools" "$DL"/build/*.whl 2> >(quiet)
rm -rf "$STAGE/buildtools/bin"
cp "$DL/$SDIST" "$STAGE/"
printf '%s\n' $PINS "transformer-engine-torch==$TE (sdist, built on the host)" "build only: $BUILD_PINS" > "$STAGE/pins.txt"
# Sourced on the host by later jobs: the megatron site goes right after the verl site ($HOME/site), so the
# verl site's copies (pydantic, omegaconf, ...) win, and ninja's binary is on PATH for torch's extension builder.
cat > "$STAGE/env.sh" <<'EOF'
_v=$HOME/site _m=$HOME/megatron-site/site _p=":${PYTHONPATH:-}:"
case $_p in
  *":$_m:"*) ;;
  *":$_v:"*) _p=${_p/":$_v:"/":$_v:$_m:"}; _p=${_p#:}; export PYTHONPATH=${_p%:} ;;
  *) export PYTHONPATH=$_m${PYTHONPATH:+:$PYTHONPATH} ;;
esac
export PATH=$_m/bin:$PATH
unset _v _m _p
EOF
du -sh "$STAGE/site"

rm -f "$M"/parts/megatron.tar.xz.part*
tar -C "$STAGE" -cf - . | xz -6 -T2 | split -b 55M -d -a 1 - "$M/parts/megatron.tar.xz.part"
(cd "$M/parts" && sha256sum megatron.tar.xz.part* | tee ../megatron.sha256)
ls -l "$DL" "$M/parts"
echo "downloads $((t1 - t0)) s, install + xz $(( $(date +%s) - t1 )) s; total $(du -ch "$M"/parts/megatron.tar.xz.part* | tail -1)"
