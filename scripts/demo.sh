#!/usr/bin/env bash
# The main demo: builds librgrpc and the C examples, starts a real gRPC
# server (the grpcio interop server), and runs the four RPC patterns,
# hello-world and the callback example against it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

echo "== building librgrpc and examples-c (CMake drives cargo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DRGRPC_BUILD_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" --target hello patterns callbacks

echo "== starting the grpcio interop server"
python3 cbindings-tests/with_server.py --server grpcio -- bash -c '
  set -e
  echo "server at $RGRPC_TEST_TARGET"
  echo; echo "== hello (one unary call)";          build/examples-c/hello "$RGRPC_TEST_TARGET"
  echo; echo "== the four patterns";               build/examples-c/patterns "$RGRPC_TEST_TARGET"
  echo; echo "== callbacks (future + push stream)"; build/examples-c/callbacks "$RGRPC_TEST_TARGET"
'
echo; echo "demo OK"
