#!/usr/bin/env bash
# The benchmark suite in one command (see bench/README.md):
#   installs what is missing (apt), builds what is missing, starts the C++
#   BenchmarkService server pinned to one CPU and the TCP echo server next
#   to it, runs every client through every scenario pinned to the other
#   CPU (latency scenarios three times, medians), and prints a side-by-side
#   table with each rgrpc figure as a ratio to the C++ client and to the
#   best peer. Loopback only; every run is bounded in count and time.
#
# Environment:
#   SERVER_CPU=0 CLIENT_CPU=1   CPUs to pin to (one CPU machine: both 0)
#   CLIENTS="rgrpc rgrpc_pool rgrpc_thr rgrpc_pull cpp tonic tonic_ct tcp"   which clients to run
#   SCENARIOS="unary_lat pingpong_lat unary_tput server_stream server_stream@1024 large_unary client_stream"
#                               (NAME@BYTES: the streamed messages carry BYTES of payload)
#   SERVER_SPIN_US=N            both servers poll N µs before sleeping (cpp_server
#                               and tcp_floor --spin-us; default 0: no spinning)
#   QUICK=1                     a short smoke run (counts / 10)
#   OUT=dir                     where results go (default build/bench-results)
#   NO_INSTALL=1                never call apt-get
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
OUT=${OUT:-$ROOT/build/bench-results}
CLIENTS=${CLIENTS:-"rgrpc rgrpc_pool rgrpc_thr rgrpc_pull cpp tonic tonic_ct tcp"}
SCENARIOS=${SCENARIOS:-"unary_lat pingpong_lat unary_tput server_stream server_stream@1024 large_unary client_stream"}
LAT_RUNS=3
say() { printf '\n== %s\n' "$*" >&2; }

# ---------------------------------------------------------------- install
need_pkgs=()
for p in cmake g++ libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
         libprotobuf-c-dev protobuf-c-compiler grpc-proto pkg-config python3 util-linux; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
# python3 may come from elsewhere (pyenv): only the command matters
if command -v python3 >/dev/null 2>&1; then
  need_pkgs=("${need_pkgs[@]/python3/}")
fi
need_pkgs=($(printf '%s\n' "${need_pkgs[@]}" | sed '/^$/d'))
if ((${#need_pkgs[@]})); then
  if [[ -n "${NO_INSTALL:-}" ]]; then
    echo "missing packages: ${need_pkgs[*]} (NO_INSTALL set)" >&2
  else
    say "apt-get install ${need_pkgs[*]}"
    SUDO=; [[ $(id -u) -ne 0 ]] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  fi
fi
command -v cargo >/dev/null 2>&1 || [[ -x $HOME/.cargo/bin/cargo ]] || {
  echo "cargo not found: install a Rust toolchain" >&2; exit 1; }
export PATH=$PATH:$HOME/.cargo/bin

# ---------------------------------------------------------------- build
# With add_subdirectory(bench) in the top-level CMakeLists the binaries are
# build/bench/*; otherwise bench/ is configured as a project of its own.
if grep -Eq '^[[:space:]]*add_subdirectory\([[:space:]]*bench[[:space:]]*\)' "$ROOT/CMakeLists.txt"; then
  BUILD=${BUILD_DIR:-$ROOT/build}
  SRC=$ROOT
  BIN=$BUILD/bench
else
  BUILD=${BUILD_DIR:-$ROOT/build/bench-standalone}
  SRC=$BENCH
  BIN=$BUILD
fi
mkdir -p "$OUT"
say "build ($BUILD)"
# (re)configure every time: cheap, and finds libgrpc++-dev installed since
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >"$OUT/configure.log" 2>&1 || {
  tail -40 "$OUT/configure.log" >&2; exit 1; }
targets="rgrpc_bench tcp_floor cpp_server cpp_client"
cmake --build "$BUILD" -j"$(nproc)" --target $targets >"$OUT/build.log" 2>&1 || {
  tail -40 "$OUT/build.log" >&2; exit 1; }
TONIC=$BENCH/tonic-client/target/release/tonic_client
if [[ " $CLIENTS " == *" tonic"* ]]; then
  if ! (cd "$BENCH/tonic-client" && cargo build --release --quiet) >>"$OUT/build.log" 2>&1; then
    echo "tonic client did not build (see $OUT/build.log): tonic columns left out" >&2
    CLIENTS=$(echo " $CLIENTS " | sed 's/ tonic_ct / /; s/ tonic / /')
  fi
fi

# ---------------------------------------------------------------- servers
ncpu=$(nproc)
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-$(( ncpu > 1 ? 1 : 0 ))}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)

start_server() { # VAR name command... : starts it, sets VAR to its port
  local var=$1 name=$2; shift 2
  local log=$OUT/$name.log
  : >"$log"
  taskset -c "$SERVER_CPU" "$@" >"$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    if grep -q '^LISTENING ' "$log"; then
      printf -v "$var" '%s' "$(awk '/^LISTENING /{print $2; exit}' "$log")"
      return 0
    fi
    sleep 0.1
  done
  echo "$name did not start: $(cat "$log")" >&2
  exit 1
}
SPIN=${SERVER_SPIN_US:-0}
start_server GRPC_PORT cpp_server "$BIN/cpp_server" --port 0 --spin-us "$SPIN"
start_server TCP_PORT tcp_floor_server "$BIN/tcp_floor" --server --port 0 --spin-us "$SPIN"
say "servers on CPU $SERVER_CPU (gRPC :$GRPC_PORT, TCP :$TCP_PORT, spin $SPIN µs), clients on CPU $CLIENT_CPU"

# ---------------------------------------------------------------- scenarios
div=1; [[ -n "${QUICK:-}" ]] && div=10
scenario_flags() { # NAME[@BYTES]
  local size=${1#*@}
  [[ $size == "$1" ]] && size=
  case ${1%@*} in
    server_stream) [[ -n $size ]] && echo -n "--resp-size $size " ;;
    client_stream) [[ -n $size ]] && echo -n "--req-size $size " ;;
  esac
  case ${1%@*} in
    unary_lat|pingpong_lat) echo "--calls $((20000/div)) --warmup $((2000/div)) --duration 5" ;;
    unary_tput)     echo "--concurrency 64 --calls $((200000/div)) --warmup $((5000/div)) --duration 10" ;;
    server_stream)  echo "--calls $((2000000/div)) --warmup $((20000/div)) --duration 10" ;;
    client_stream)  echo "--calls $((2000000/div)) --warmup $((20000/div)) --duration 10" ;;
    large_unary)    echo "--req-size 1048576 --resp-size 1048576 --calls $((300/div)) --warmup 10 --duration 10" ;;
  esac
}
client_cmd() { # client -> command prefix (port flags included)
  case $1 in
    rgrpc)     echo "env RGRPC_BENCH_TPUT=async $BIN/rgrpc_bench --port $GRPC_PORT" ;;
    rgrpc_pool) echo "env RGRPC_BENCH_TPUT=async_pool $BIN/rgrpc_bench --port $GRPC_PORT" ;;
    rgrpc_thr) echo "env RGRPC_BENCH_TPUT=threads $BIN/rgrpc_bench --port $GRPC_PORT" ;;
    rgrpc_pull) echo "env RGRPC_BENCH_STREAM=pull $BIN/rgrpc_bench --port $GRPC_PORT" ;;
    cpp)       echo "$BIN/cpp_client --port $GRPC_PORT" ;;
    tonic)     echo "$TONIC --port $GRPC_PORT" ;;
    tonic_ct)  echo "$TONIC --current-thread --port $GRPC_PORT" ;;
    tcp)       echo "$BIN/tcp_floor --port $TCP_PORT" ;;
  esac
}

RESULTS=$OUT/results.jsonl
: >"$RESULTS"
for sc in $SCENARIOS; do
  runs=1
  base=${sc%@*}
  [[ $base == unary_lat || $base == pingpong_lat ]] && runs=$LAT_RUNS
  for r in $(seq "$runs"); do
    for c in $CLIENTS; do
      # rgrpc_pool and rgrpc_thr differ from rgrpc only in unary_tput,
      # rgrpc_pull only in server_stream
      [[ ($c == rgrpc_thr || $c == rgrpc_pool) && $base != unary_tput ]] && continue
      [[ $c == rgrpc_pull && $base != server_stream ]] && continue
      set +e
      line=$(taskset -c "$CLIENT_CPU" timeout 120 $(client_cmd "$c") --scenario "$base" $(scenario_flags "$sc") 2>"$OUT/$c.$sc.$r.err")
      rc=$?
      set -e
      if [[ $rc -eq 0 ]]; then
        echo "{\"client\":\"$c\",\"label\":\"$sc\",\"run\":$r,\"result\":$line}" >>"$RESULTS"
        printf '%-10s %-14s run %d: %s\n' "$c" "$sc" "$r" "$line" >&2
      elif [[ $rc -eq 3 ]]; then
        :
      else
        echo "{\"client\":\"$c\",\"label\":\"$sc\",\"run\":$r,\"failed\":$rc,\"error\":$(tail -1 "$OUT/$c.$sc.$r.err" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().strip()))')}" >>"$RESULTS"
        printf '%-10s %-14s run %d: FAILED (exit %d): %s\n' "$c" "$sc" "$r" "$rc" "$(tail -1 "$OUT/$c.$sc.$r.err")" >&2
      fi
    done
  done
done

# ---------------------------------------------------------------- table
say "results ($RESULTS)"
{
  python3 "$BENCH/table.py" "$RESULTS"
  echo
  echo "rgrpc $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' + uncommitted src/ changes');" \
       "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), server on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU;" \
       "server spin ${SPIN} µs; load average $LOAD_BEFORE before, $(cut -d' ' -f1 /proc/loadavg) after (other work on the machine skews every figure); $(date -u +%Y-%m-%d)."
} | tee "$OUT/table.md"
