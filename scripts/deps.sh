#!/usr/bin/env bash
# Installs what the demo and the tests need, only when missing:
# Debian packages (cmake, protobuf-c, the official test protos, valgrind)
# and Python packages (grpcio for the test server).
set -euo pipefail

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
command -v protoc-c >/dev/null || need_apt+=(protobuf-c-compiler)
[ -e /usr/include/protobuf-c/protobuf-c.h ] || need_apt+=(libprotobuf-c-dev)
[ -e /usr/share/grpc-proto/grpc/testing/test.proto ] || need_apt+=(grpc-proto)
command -v valgrind >/dev/null || need_apt+=(valgrind)
command -v g++ >/dev/null || need_apt+=(g++)
command -v openssl >/dev/null || need_apt+=(openssl)
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
