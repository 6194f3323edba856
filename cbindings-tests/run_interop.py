#!/usr/bin/env python3
"""Run the rgrpc C interop client (examples-c/interop_client.c) against a real
interop server.

    run_interop.py --client PATH --server grpcio|tonic [--tonic-server PATH]
                   [--valgrind] [--tls] [--cases a,b,c]

Starts one server (with with_server.py's start logic), then runs the client
once per case, each in its own process so that a crash is attributed to its
case:
    CLIENT --server_host=127.0.0.1 --server_port=N --test_case=CASE
(under valgrind memcheck with --valgrind: any error or leak of any kind fails
the case — the client ends with rgrpc_shutdown, so not even a possibly lost or
still reachable block of the library may be left; suppressions: ring's TLS
false positives, Rust's handle of the main thread and crossbeam-epoch's
process-wide collector, see the .supp files). Under valgrind without --cases,
the cases run once together (--test_case=all, which checks each case passed)
instead of one process each: a process costs ~6 s of valgrind start-up, and
the same cases run one per process in the ASan build's ctest. Without --cases
it also checks, once each:
  * --test_case=all               runs every case and passes;
  * --use_tls=false               is accepted;
  * --use_test_ca                 is accepted, with a note that it is ignored
                                  without --use_tls;
  * --use_tls=true                fails the case with UNAVAILABLE, saying the
                                  server is not speaking TLS;
  * --use_tls --use_test_ca       without a CA file is refused with exit code 2;
  * an unsupported case           is refused with exit code 2.

With --tls, test certificates are made in a temporary directory
(make_test_certs.py), the server serves TLS with them, and every run adds
    --use_tls --use_test_ca --server_host_override=foo.test.google.fr
    --ca_file=<dir>/ca.pem
(still connecting to 127.0.0.1). The extra checks are then:
  * --test_case=all               runs every case and passes;
  * the test CA from GRPC_DEFAULT_SSL_ROOTS_FILE_PATH instead of --ca_file;
  * no override: 127.0.0.1 (an IP name of the certificate) is checked;
  * --server_host=localhost without override;
  * --server_host_override=wrong.example fails (UNAVAILABLE, "hostname");
  * without --use_test_ca (the default roots, GRPC_DEFAULT_SSL_ROOTS_FILE_PATH
    unset) the server is not trusted (UNAVAILABLE, "unknown authority");
  * a plaintext client (no --use_tls) fails.
GRPC_DEFAULT_SSL_ROOTS_FILE_PATH is removed from the client's environment
except where a check sets it.

Prints a summary table; exits 0 only if every case and check passed.
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import with_server  # noqa: E402

CASES = [
    "empty_unary", "large_unary", "client_compressed_unary", "server_compressed_unary",
    "client_streaming", "client_compressed_streaming", "server_streaming",
    "server_compressed_streaming", "ping_pong", "empty_stream", "custom_metadata", "status_code_and_message", "special_status_message",
    "unimplemented_method", "unimplemented_service", "cancel_after_begin",
    "cancel_after_first_response", "timeout_on_sleeping_server",
]
VALGRIND_ERROR_EXIT = 99  # with_server.VALGRIND's --error-exitcode


class Run:
    """One client process: exit code, output, duration."""

    def __init__(self, rc, out, err, seconds):
        self.rc, self.out, self.err, self.seconds = rc, out, err, seconds

    def lines(self, prefix):
        return [l for l in self.out.splitlines() if l.startswith(prefix)]

    def why(self):
        """A one-line explanation of a failed run."""
        fails = self.lines("FAIL ")
        if fails:
            return fails[0]
        if self.rc == VALGRIND_ERROR_EXIT:
            return "valgrind reported errors or leaks (see stderr above)"
        if self.rc == 124:
            return "timed out"
        if self.rc < 0:
            return f"killed by signal {-self.rc}"
        tail = (self.err.strip().splitlines() or ["no output"])[-1]
        return f"exit code {self.rc}: {tail}"


ROOTS_ENV = "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"
OVERRIDE = "foo.test.google.fr"


def run_client(args, client_args, port, base=None, host="127.0.0.1", env=None):
    """Runs the client with `base` (default: args.base, the TLS flags of
    --tls) and `client_args`; `env` adds to (None values: removes from) the
    environment, from which GRPC_DEFAULT_SSL_ROOTS_FILE_PATH is removed."""
    base = args.base if base is None else base
    cmd = [args.client, f"--server_host={host}", f"--server_port={port}"] + base + client_args
    run_env = {k: v for k, v in os.environ.items() if k != ROOTS_ENV}
    for k, v in (env or {}).items():
        if v is None:
            run_env.pop(k, None)
        else:
            run_env[k] = v
    timeout = 60
    if args.valgrind:
        cmd = with_server.VALGRIND_STRICT + [with_server.RING_SUPPRESSIONS] + cmd
        timeout = 600
    start = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout,
                           env=run_env)
        run = Run(p.returncode, p.stdout, p.stderr, time.monotonic() - start)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        run = Run(124, out, err, time.monotonic() - start)
    if args.verbose or run.rc not in (0, 2):
        sys.stderr.write(run.err)
    return run


# Each check returns (ok, run, detail); detail explains a failure (None:
# run.why()).

def check_case(args, port, case):
    run = run_client(args, [f"--test_case={case}"], port)
    return run.rc == 0 and run.lines(f"PASS {case}") == [f"PASS {case}"], run, None


def check_all(args, port):
    run = run_client(args, ["--test_case=all"], port)
    passed = [l.split()[1] for l in run.lines("PASS ")]
    if run.rc == 0 and passed != CASES:
        return False, run, f"passed {passed}, want {CASES}"
    return run.rc == 0, run, None


def check_flag_accepted(flag, note=None):
    def check(args, port):
        run = run_client(args, [flag, "--test_case=empty_unary"], port)
        if run.rc == 0 and note and note not in run.err:
            return False, run, f"stderr lacks the note {note!r}"
        return run.rc == 0 and run.lines("PASS empty_unary") != [], run, None
    return check


def check_refused(flags, message, env=None):
    def check(args, port):
        run = run_client(args, flags, port, env=env)
        if run.rc == 2 and message in run.err:
            return True, run, None
        return False, run, f"exit code {run.rc}, want 2 with {message!r} on stderr"
    return check


def check_passes(flags, base=None, host="127.0.0.1", env=None):
    """empty_unary passes with these flags (base: replaces args.base)."""
    def check(args, port):
        run = run_client(args, flags + ["--test_case=empty_unary"], port, base=base, host=host,
                         env=env(args) if callable(env) else env)
        return run.rc == 0 and run.lines("PASS empty_unary") != [], run, None
    return check


def check_fails(flags, *words, base=None, env=None):
    """empty_unary fails (exit code 1) with these flags, and its FAIL line
    contains each of `words`."""
    def check(args, port):
        run = run_client(args, flags + ["--test_case=empty_unary"], port, base=base,
                         env=env(args) if callable(env) else env)
        fails = run.lines("FAIL empty_unary")
        if run.rc == 1 and fails and all(w in fails[0] for w in words):
            return True, run, None
        return False, run, f"exit code {run.rc}, want 1 with a FAIL line containing {list(words)}"
    return check


def check_soak(case, iterations):
    """A soak case (run only when named) passes with a few iterations and
    says how they went on stderr."""
    def check(args, port):
        run = run_client(args, [f"--test_case={case}", f"--soak_iterations={iterations}",
                                "--soak_per_iteration_max_acceptable_latency_ms=5000",
                                "--soak_overall_timeout_seconds=300"], port)
        summary = f"{case}: {iterations} of {iterations} iterations"
        if run.rc == 0 and run.lines(f"PASS {case}") and summary in run.err:
            return True, run, None
        return False, run, f"exit code {run.rc}, want 0 with PASS {case} and {summary!r} on stderr"
    return check


def check_soak_bound(args, port):
    """An impossible latency bound fails every iteration: FAIL, exit 1."""
    run = run_client(args, ["--test_case=rpc_soak", "--soak_iterations=3",
                            "--soak_per_iteration_max_acceptable_latency_ms=0"], port)
    fails = run.lines("FAIL rpc_soak")
    ok = run.rc == 1 and fails and "3 of 3 iterations failed" in fails[0]
    return ok, run, None if ok else f"exit code {run.rc}, want 1 with 3 failed iterations"


EXTRA_CHECKS = [
    ("--test_case=all", check_all),
    ("rpc_soak, 20 iterations", check_soak("rpc_soak", 20)),
    ("channel_soak, 10 iterations", check_soak("channel_soak", 10)),
    ("rpc_soak latency bound", check_soak_bound),
    ("--use_tls=false accepted", check_flag_accepted("--use_tls=false")),
    ("--use_test_ca ignored without TLS", check_flag_accepted(
        "--use_test_ca", "ignored without --use_tls")),
    ("--use_tls=true to a plaintext server", check_fails(
        ["--use_tls=true"], "UNAVAILABLE", "plaintext")),
    ("--use_test_ca without a CA refused", check_refused(
        ["--use_tls", "--use_test_ca", "--test_case=empty_unary"], "needs --ca_file")),
    ("unsupported case refused", check_refused(
        ["--test_case=cacheable_unary"], "not supported yet")),
]


def _ca_file(args):
    return os.path.join(args.certs, "ca.pem")


TLS_EXTRA_CHECKS = [
    ("--test_case=all", check_all),
    ("roots from " + ROOTS_ENV, check_passes(
        ["--use_tls", "--use_test_ca", f"--server_host_override={OVERRIDE}"], base=[],
        env=lambda args: {ROOTS_ENV: _ca_file(args)})),
    ("no override: 127.0.0.1 checked", check_passes(
        ["--use_tls", "--use_test_ca"], base=[], env=lambda args: {ROOTS_ENV: _ca_file(args)})),
    ("--server_host=localhost", check_passes(
        ["--use_tls", "--use_test_ca"], base=[], host="localhost",
        env=lambda args: {ROOTS_ENV: _ca_file(args)})),
    ("wrong override fails", check_fails(
        ["--use_tls", "--use_test_ca", "--server_host_override=wrong.example"], "UNAVAILABLE",
        "hostname", base=[], env=lambda args: {ROOTS_ENV: _ca_file(args)})),
    ("default roots do not trust the test CA", check_fails(
        ["--use_tls", f"--server_host_override={OVERRIDE}"], "UNAVAILABLE", "unknown authority",
        base=[])),
    ("plaintext client fails", check_fails([], base=[])),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--client", default=os.path.join(ROOT, "build", "examples-c", "interop_client"))
    ap.add_argument("--server", default="grpcio", choices=["grpcio", "tonic"])
    ap.add_argument("--tonic-server", default=None)
    ap.add_argument("--valgrind", action="store_true")
    ap.add_argument("--tls", action="store_true",
                    help="the server serves TLS with test certificates; the client uses them")
    ap.add_argument("--cases", default=None, help="comma-separated subset of the cases (skips the extra checks)")
    ap.add_argument("--verbose", action="store_true", help="show the client's stderr for every run")
    args = ap.parse_args()
    if not os.access(args.client, os.X_OK):
        sys.exit(f"run_interop.py: client not found at {args.client} "
                 "(cmake --build build --target interop_client)")
    cases = CASES
    if args.cases:
        cases = [c.strip() for c in args.cases.split(",") if c.strip()]
        unknown = [c for c in cases if c not in CASES]
        if unknown:
            sys.exit(f"run_interop.py: unknown cases {unknown}; known: {CASES}")
    checks = [(c, lambda a, p, c=c: check_case(a, p, c)) for c in cases]
    if args.valgrind and not args.cases:
        checks = []
    if not args.cases:
        checks += TLS_EXTRA_CHECKS if args.tls else EXTRA_CHECKS

    args.certs = with_server.make_certs() if args.tls else None
    args.base = []
    server_args = []
    if args.tls:
        args.base = ["--use_tls", "--use_test_ca", f"--server_host_override={OVERRIDE}",
                     f"--ca_file={_ca_file(args)}"]
        server_args = with_server.tls_server_args(args.certs)
    results = []
    try:
        proc, port = with_server.start_server(args.server, args.tonic_server, server_args)
        try:
            for name, check in checks:
                if proc.poll() is not None:
                    results.append((name, False, None, f"server exited with {proc.returncode}"))
                    continue
                ok, run, detail = check(args, port)
                results.append((name, ok, run, "" if ok else detail or run.why()))
        finally:
            with_server.stop(proc)
    finally:
        if args.certs:
            with_server.remove_certs(args.certs)

    width = max(len(name) for name, *_ in results)
    mode = " over TLS" if args.tls else ""
    mode += " under valgrind" if args.valgrind else ""
    print(f"\ninterop: {args.client} against the {args.server} server{mode}")
    print(f"{'case':<{width}}  result  seconds  detail")
    for name, ok, run, detail in results:
        seconds = f"{run.seconds:7.2f}" if run else "      -"
        print(f"{name:<{width}}  {'PASS' if ok else 'FAIL':<6}  {seconds}  {detail}")
    failed = sum(1 for _, ok, *_ in results if not ok)
    print(f"{len(results) - failed} of {len(results)} passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
