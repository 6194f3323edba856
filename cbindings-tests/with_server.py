#!/usr/bin/env python3
"""Run a command against a freshly started real gRPC interop server.

    with_server.py --server grpcio|tonic [--valgrind] -- CMD [ARGS...]

Starts the server on a free loopback port (grpcio: cbindings-tests/interop_server.py;
tonic: the tonic-interop-server binary, path from --tonic-server or
$RGRPC_TONIC_SERVER), waits for its "LISTENING <port>" line, then runs CMD with
  RGRPC_TEST_TARGET=127.0.0.1:<port>     and {target} in ARGS replaced by it
  RGRPC_TEST_SERVER_PID=<pid>            (tests may kill the server on purpose)
With --valgrind, CMD runs under valgrind memcheck; any error or definite /
indirect leak fails the test. Exits with CMD's exit code; the server is
always stopped.
"""
import argparse
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

VALGRIND = [
    "valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
    "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
    "--track-origins=no", "--fair-sched=yes",
]


def start_server(kind, tonic_path, extra):
    if kind == "grpcio":
        cmd = [sys.executable, os.path.join(HERE, "interop_server.py"), "--port", "0"] + extra
    elif kind == "tonic":
        path = tonic_path or os.environ.get("RGRPC_TONIC_SERVER") or os.path.join(
            ROOT, "target", "release", "tonic-interop-server")
        if not os.path.exists(path):
            sys.exit(f"with_server.py: tonic server binary not found at {path} "
                     "(cargo build --release -p rgrpc-tonic-interop)")
        cmd = [path, "--port", "0"] + extra
    else:
        sys.exit(f"with_server.py: unknown server {kind}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    line = ""
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("LISTENING"):
            return proc, int(line.split()[1])
        if not line and proc.poll() is not None:
            break
    proc.kill()
    sys.exit(f"with_server.py: {kind} server did not start (last line {line!r})")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="grpcio", choices=["grpcio", "tonic"])
    ap.add_argument("--tonic-server", default=None)
    ap.add_argument("--valgrind", action="store_true")
    ap.add_argument("--server-arg", action="append", default=[])
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("no command")
    proc, port = start_server(a.server, a.tonic_server, a.server_arg)
    target = f"127.0.0.1:{port}"
    env = dict(os.environ, RGRPC_TEST_TARGET=target, RGRPC_TEST_SERVER_PID=str(proc.pid),
               RGRPC_TEST_SERVER_KIND=a.server)
    cmd = [c.replace("{target}", target) for c in cmd]
    if a.valgrind:
        cmd = VALGRIND + cmd
    try:
        rc = subprocess.call(cmd, env=env, timeout=600)
    except subprocess.TimeoutExpired:
        print("with_server.py: command timed out", file=sys.stderr)
        rc = 124
    finally:
        stop(proc)
    sys.exit(rc)


if __name__ == "__main__":
    main()
