#!/usr/bin/env bash
# Runs every test: formatting and lints, Rust unit and integration tests
# (against a real tonic server and a raw HTTP/2 server), the header checks,
# and through CMake/ctest the C tests, examples and the interop client
# against real grpcio and tonic servers, under valgrind and again under
# ASan + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
start=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - start ))s)"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit, integration, header staleness; caller-driven runtime)"
cargo test --workspace --locked

step "Rust integration tests again on the multi-threaded runtime (RGRPC_WORKER_THREADS=2)"
RGRPC_WORKER_THREADS=2 cargo test --locked -p rgrpc-core --tests

step "tonic interop server binary"
cargo build -q --locked -p rgrpc-tonic-interop --bin tonic-interop-server

step "header is current (cbindgen, pinned)"
cargo run -q --locked -p rgrpc-gen-header -- --check

step "CMake build (C tests, examples, interop client)"
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DRGRPC_VALGRIND=ON \
  -DRGRPC_TONIC_SERVER="$PWD/target/debug/tonic-interop-server" >/dev/null
cmake --build build-test -j"$(nproc)"

step "ctest (C tests under valgrind, examples, interop vs grpcio and tonic)"
(cd build-test && ctest --output-on-failure -j2)

step "C tests, examples and interop again under ASan + UBSan (any report fails the test)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DRGRPC_SANITIZE=ON \
  -DRGRPC_TONIC_SERVER="$PWD/target/debug/tonic-interop-server" >/dev/null
cmake --build build-asan -j"$(nproc)"
(cd build-asan && ctest --output-on-failure -j2)

step "Python binding (pytest, against grpcio and tonic servers)"
RGRPC_LIBRARY="$PWD/build-test/lib/librgrpc.so" python3 -m pytest bindings/python/tests -q

step "all tests passed"
