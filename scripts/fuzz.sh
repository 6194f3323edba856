#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ and runs each for a bounded time
# (default 6 s, or the first argument in seconds), starting from the
# committed seeds in fuzz/corpus/<target>/ (inputs found on the way are
# added there and ignored by git). Any crash fails the script; the input
# that crashed is left in fuzz/artifacts/<target>/ (reproduce it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none <target> <file>`).
#
# cargo-fuzz with libFuzzer on the stable toolchain: RUSTC_BOOTSTRAP=1
# lets stable rustc take the -Z flags cargo-fuzz passes for coverage, and
# --sanitizer none leaves out ASan (it needs nightly's -Zsanitizer; the
# core forbids unsafe code outside sys, so panics, the bugs a safe parser
# can have, are what the targets look for).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-6}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install -q --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1

# cargo fuzz has no --locked: check the committed fuzz/Cargo.lock first.
cargo fetch -q --locked
cargo fuzz build --sanitizer none
targets=$(cargo fuzz list)
bin=target/$(rustc -vV | sed -n 's/^host: //p')/release

failed=()
for t in $targets; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log=$(mktemp)
  # The built binary directly (cargo fuzz run would check the build again).
  if "$bin/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="artifacts/$t/" "corpus/$t" >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    printf 'fuzz: %-15s %9s runs %7s/s  ok\n' "$t" "${execs:-?}" "${rate:-?}"
  else
    echo "fuzz: $t FAILED:"
    grep -E 'panicked|^SUMMARY|Test unit written|^==[0-9]+== ERROR' -A2 "$log" | head -20
    failed+=("$t")
  fi
  rm -f "$log"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
