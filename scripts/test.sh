#!/usr/bin/env bash
# Runs every test: formatting and lints, Rust unit and integration tests
# (against a real tonic server and a raw HTTP/2 server), the fuzz targets
# for a bounded time, the header checks,
# and through CMake/ctest the C tests, examples and the interop client
# against real grpcio and tonic servers, under valgrind and again under
# ASan + UBSan, the exported symbols and the ABI check; then the library as
# its users get it: installed and linked by programs outside the tree
# (CMake, pkg-config), the Python binding (pytest), the Python wheel in a
# fresh venv without Rust, and the Node.js client.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
start=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - start ))s)"; }
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit, integration, header staleness; caller-driven runtime)"
cargo test --workspace --locked

step "Rust integration tests again on the multi-threaded runtime (RGRPC_WORKER_THREADS=2)"
# The whole workspace again (not `-p rgrpc-core`): the same package
# selection resolves the same features, so nothing is compiled again.
RGRPC_WORKER_THREADS=2 cargo test --workspace --locked --tests

step "fuzz targets, 6 s each from the committed seeds (cargo-fuzz/libFuzzer; any crash fails)"
scripts/fuzz.sh 6

step "tonic interop server binary"
cargo build -q --locked -p rgrpc-tonic-interop --bin tonic-interop-server

step "header is current (cbindgen, pinned)"
cargo run -q --locked -p rgrpc-gen-header -- --check

step "CMake build (C tests, examples, interop client)"
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DRGRPC_VALGRIND=ON \
  -DRGRPC_CARGO_TARGET_DIR="$target_dir" \
  -DRGRPC_TONIC_SERVER="$target_dir/debug/tonic-interop-server" >/dev/null
cmake --build build-test -j"$(nproc)"

step "ctest (C tests under valgrind, examples, interop vs grpcio and tonic, symbols, ABI)"
(cd build-test && ctest --output-on-failure -j2)

step "C tests, examples and interop again under ASan + UBSan (any report fails the test)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DRGRPC_SANITIZE=ON \
  -DRGRPC_CARGO_TARGET_DIR="$target_dir" \
  -DRGRPC_TONIC_SERVER="$target_dir/debug/tonic-interop-server" >/dev/null
cmake --build build-asan -j"$(nproc)"
(cd build-asan && ctest --output-on-failure -j2 -E '^abi_check$')

step "install and link like a C library (cmake --install, DESTDIR, find_package, pkg-config, add_subdirectory)"
python3 cbindings-tests/consumer_test.py --build-dir build-test

step "Python binding (pytest, against grpcio and tonic servers)"
RGRPC_LIBRARY="$PWD/build-test/lib/librgrpc.so" \
  RGRPC_TONIC_SERVER="$target_dir/debug/tonic-interop-server" \
  python3 -m pytest bindings/python/tests -q

step "Node.js client through koffi (unary, streaming, async; librgrpc found by its soname)"
LD_LIBRARY_PATH="$PWD/build-test/lib" \
  python3 cbindings-tests/with_server.py --server grpcio -- node --test bindings/node/test/

step "Python wheel (release build of librgrpc, auditwheel) used in a fresh venv without Rust"
scripts/wheel.sh "$work/wheelhouse"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --no-index --no-deps "$work"/wheelhouse/rgrpc-*manylinux*.whl
repo=$PWD
(cd "$work" && python3 "$repo/cbindings-tests/with_server.py" --server grpcio -- \
  env -i PATH=/usr/bin:/bin HOME="$work" "$work/venv/bin/python" \
  "$repo/bindings/python/tests/wheel_smoke.py" {target})
ls -l "$work"/wheelhouse/*.whl

step "all tests passed"
