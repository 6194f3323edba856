#!/usr/bin/env python3
"""Run a command against a freshly started real gRPC interop server.

    with_server.py --server grpcio|tonic [--valgrind] [--tls | --mtls] [--servers N]
                   [--fault-proxy PROFILES] -- CMD [ARGS...]

Starts the server on a free loopback port (grpcio: cbindings-tests/interop_server.py;
tonic: the tonic-interop-server binary, path from --tonic-server or
$RGRPC_TONIC_SERVER), waits for its "LISTENING <port>" line, then runs CMD with
  RGRPC_TEST_TARGET=127.0.0.1:<port>     and {target} in ARGS replaced by it
  RGRPC_TEST_SERVER_PID=<pid>            (tests may kill the server on purpose)
With --tls, test certificates are made in a temporary directory
(make_test_certs.py; removed afterwards), the server serves TLS with
server.pem/server.key (valid for localhost, foo.test.google.fr, 127.0.0.1,
signed by ca.pem), and CMD also gets
  RGRPC_TEST_CERTS_DIR=<dir>             and {certs} in ARGS replaced by it
  RGRPC_TEST_TLS=tls
--mtls is --tls where the server also requires a client certificate signed
by ca.pem (RGRPC_TEST_TLS=mtls).
With --servers N (grpcio only), N servers run, on 127.0.0.1, 127.0.0.2, ...
(distinct loopback hosts), with server ids s1, s2, ... (what UnaryCall's
fill_server_id returns); RGRPC_TEST_TARGET is the first and CMD also gets
  RGRPC_TEST_TARGETS=ipv4:127.0.0.1:<p1>,127.0.0.2:<p2>,...
  RGRPC_TEST_SERVER_PIDS=<pid1>,<pid2>,...
With --fault-proxy PROFILES (a comma-separated list, e.g. storm,safe),
fault_proxy.py is started in front of the servers: for each profile one
listener per server, on that server's host, that forwards to it and injects
that profile's faults (see fault_proxy.py); CMD also gets, per profile,
  RGRPC_TEST_FAULT_TARGETS_<PROFILE>=ipv4:127.0.0.1:<q1>,127.0.0.2:<q2>,...
                                         (<PROFILE> upper case)
  RGRPC_TEST_FAULT_COUNTS=<file>         the proxy's counts of injected
                                         faults, "<profile> <what> <n>" lines
The proxy's seed is printed on stderr; RGRPC_FAULT_SEED=<n> repeats it.
With --valgrind, CMD runs under valgrind memcheck (suppressions:
valgrind.supp); any error or definite / indirect leak fails the test.
With --valgrind-strict (programs that call rgrpc_shutdown before they
exit), every leak kind is an error (possibly lost and still reachable
blocks too) and only valgrind-shutdown.supp is read (Rust's handle of the
process's main thread, and crossbeam-epoch's process-wide collector once a
host name was resolved: see the file): nothing of the library or its
threads may be left. Exits with CMD's exit code; the
server is always stopped.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# valgrind.supp: false positives of ring's AES-GCM assembly in TLS records
# (see the file); its entries need the deep stacks of --num-callers.
RING_SUPPRESSIONS = f"--suppressions={os.path.join(HERE, 'valgrind.supp')}"
VALGRIND = [
    "valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
    "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
    "--track-origins=no", "--fair-sched=yes",
    f"--suppressions={os.path.join(HERE, 'valgrind.supp')}", "--num-callers=40",
]
# For programs that end with rgrpc_shutdown: every leak kind counts; the
# only suppressions are those of valgrind-shutdown.supp (see the file).
VALGRIND_STRICT = [
    "valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
    "--show-leak-kinds=all", "--errors-for-leak-kinds=all",
    "--track-origins=no", "--fair-sched=yes",
    f"--suppressions={os.path.join(HERE, 'valgrind-shutdown.supp')}", "--num-callers=40",
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


def start_fault_proxy(profiles, addrs, counts_path):
    """Starts fault_proxy.py in front of `addrs` with `profiles`; returns
    (process, {profile: "ipv4:host:port,..."})."""
    cmd = [sys.executable, os.path.join(HERE, "fault_proxy.py"), "--counts", counts_path]
    for a in addrs:
        cmd += ["--backend", a]
    for p in profiles:
        cmd += ["--profile", p]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    targets = {p: [None] * len(addrs) for p in profiles}
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("LISTENING"):
            _, profile, index, hostport = line.split()
            targets[profile][int(index)] = hostport
        elif line.startswith("READY"):
            return proc, {p: "ipv4:" + ",".join(t) for p, t in targets.items()}
        elif not line and proc.poll() is not None:
            break
    proc.kill()
    sys.exit("with_server.py: fault_proxy.py did not start")


def make_certs():
    """Makes the test certificates in a new temporary directory; returns it
    (the caller removes it with remove_certs)."""
    sys.path.insert(0, HERE)
    import make_test_certs  # noqa: E402  (needs the cryptography package)

    directory = tempfile.mkdtemp(prefix="rgrpc-test-certs-")
    make_test_certs.make(directory)
    return directory


def remove_certs(directory):
    shutil.rmtree(directory, ignore_errors=True)


def tls_server_args(certs, mtls=False):
    """Server arguments (grpcio and tonic alike) to serve TLS with the test
    certificates in `certs`, requiring a client certificate when `mtls`."""
    args = ["--use_tls=true",
            "--tls_cert_file", os.path.join(certs, "server.pem"),
            "--tls_key_file", os.path.join(certs, "server.key")]
    if mtls:
        args += ["--tls_client_ca_file", os.path.join(certs, "ca.pem")]
    return args


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
    ap.add_argument("--valgrind-strict", action="store_true",
                    help="valgrind with every leak kind an error and no suppressions")
    ap.add_argument("--server-arg", action="append", default=[])
    ap.add_argument("--servers", type=int, default=1)
    ap.add_argument("--fault-proxy", default=None, metavar="PROFILES",
                    help="fault_proxy.py in front of the servers with these profiles (comma-separated)")
    tls = ap.add_mutually_exclusive_group()
    tls.add_argument("--tls", action="store_true", help="the server serves TLS with test certificates")
    tls.add_argument("--mtls", action="store_true", help="--tls, and client certificates are required")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("no command")
    if a.fault_proxy and (a.tls or a.mtls):
        ap.error("--fault-proxy speaks cleartext HTTP/2 only")
    certs = make_certs() if a.tls or a.mtls else None
    try:
        server_args = list(a.server_arg)
        if certs:
            server_args += tls_server_args(certs, a.mtls)
        procs = []
        addrs = []
        try:
            for i in range(a.servers):
                extra = list(server_args)
                if a.servers > 1:
                    if a.server != "grpcio":
                        sys.exit("with_server.py: --servers needs --server grpcio")
                    extra += ["--host", f"127.0.0.{i + 1}", "--server_id", f"s{i + 1}"]
                p, port = start_server(a.server, a.tonic_server, extra)
                procs.append(p)
                addrs.append(f"127.0.0.{i + 1}:{port}")
        except SystemExit:
            for p in procs:
                stop(p)
            raise
        proc = procs[0]
        target = addrs[0]
        env = dict(os.environ, RGRPC_TEST_TARGET=target, RGRPC_TEST_SERVER_PID=str(proc.pid),
                   RGRPC_TEST_SERVER_KIND=a.server,
                   RGRPC_TEST_TARGETS="ipv4:" + ",".join(addrs),
                   RGRPC_TEST_SERVER_PIDS=",".join(str(p.pid) for p in procs))
        if a.fault_proxy:
            counts_dir = tempfile.mkdtemp(prefix="rgrpc-fault-proxy-")
            counts = os.path.join(counts_dir, "counts")
            try:
                fault_proxy, fault_targets = start_fault_proxy(
                    a.fault_proxy.split(","), addrs, counts)
            except SystemExit:
                for p in procs:
                    stop(p)
                shutil.rmtree(counts_dir, ignore_errors=True)
                raise
            procs.insert(0, fault_proxy)  # stopped first
            env["RGRPC_TEST_FAULT_COUNTS"] = counts
            for profile, t in fault_targets.items():
                env["RGRPC_TEST_FAULT_TARGETS_" + profile.upper()] = t
        cmd = [c.replace("{target}", target) for c in cmd]
        if certs:
            env.update(RGRPC_TEST_CERTS_DIR=certs, RGRPC_TEST_TLS="mtls" if a.mtls else "tls")
            cmd = [c.replace("{certs}", certs) for c in cmd]
        if a.valgrind_strict:
            cmd = VALGRIND_STRICT + cmd
        elif a.valgrind:
            cmd = VALGRIND + cmd
        try:
            rc = subprocess.call(cmd, env=env, timeout=600)
        except subprocess.TimeoutExpired:
            print("with_server.py: command timed out", file=sys.stderr)
            rc = 124
        finally:
            for p in procs:
                stop(p)
            if a.fault_proxy:
                shutil.rmtree(counts_dir, ignore_errors=True)
    finally:
        if certs:
            remove_certs(certs)
    sys.exit(rc)


if __name__ == "__main__":
    main()
