#!/usr/bin/env python3
"""Runs grpcio's own client-facing unit tests with ``rgrpc.patch_grpcio()``
applied at start: the tests' servers are grpcio's, in the same process, and
their client calls go through rgrpc. Not part of the pytest suite: it needs
a snapshot of the grpc repository (a bare git directory, e.g. the one the
search tool's ``fetch`` brings to /work/.mirror/).

    python3 tests/grpcio_unit/run.py [--git-dir DIR] [--rev REV] [--aio]
        [--no-patch] [--timeout S] [--markdown] [FILE ...]

It extracts ``src/python/grpcio_tests/tests/unit`` from the snapshot into a
temporary directory (with an empty ``tests/__init__.py``: grpcio's imports
its own test loader), then runs each file in a fresh interpreter with
unittest and prints, per file, the tests passed / failed / errors / skipped
and the most frequent failure reasons (the exception's last line).
``--no-patch`` runs the same files on plain grpcio (the baseline).

``--aio`` runs ``tests_aio/unit`` instead (grpc.aio clients against grpcio
aio servers on the same event loop); their stubs are generated from the
snapshot's ``src/proto/grpc/testing`` protos with grpcio-tools.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(os.path.dirname(HERE))

DEFAULT_GIT_DIRS = (
    "/work/.mirror/grpc+grpc/repo",
    "/work/.mirror/sergiitk+grpc/repo",  # a fork: grpc/grpc's snapshot is too large to fetch
    "/work/.mirror/asheshvidyut+grpc/repo",
)
UNIT = "src/python/grpcio_tests/tests/unit"
AIO_UNIT = "src/python/grpcio_tests/tests_aio/unit"
PROTOS = ("src/proto/grpc/testing/empty.proto", "src/proto/grpc/testing/messages.proto",
          "src/proto/grpc/testing/test.proto")

#: The client-facing test files (each starts grpcio servers in process).
DEFAULT_FILES = (
    "_rpc_part_1_test.py",
    "_rpc_part_2_test.py",
    "_metadata_test.py",
    "_metadata_code_details_test.py",
    "_metadata_flags_test.py",
    "_invocation_defects_test.py",
    "_channel_ready_future_test.py",
    "_channel_connectivity_test.py",
    "_channel_close_test.py",
    "_compression_test.py",
    "_interceptor_test.py",
    "_invalid_metadata_test.py",
    "_empty_message_test.py",
    "_error_message_encoding_test.py",
    "_resource_exhausted_test.py",
    "_reconnect_test.py",
    "_local_credentials_test.py",
    "_abort_test.py",
    "_dynamic_stubs_test.py",
    "_contextvars_propagation_test.py",
    "_channel_args_test.py",
    "_credentials_test.py",
    "_auth_context_test.py",
    "_session_cache_test.py",
    "_api_test.py",
    "_dns_resolver_test.py",  # resolves loopback46.unittest.grpc.io: needs DNS
)

#: grpc.aio's client-facing test files (grpcio aio servers in process).
DEFAULT_AIO_FILES = (
    "call_test.py",
    "channel_test.py",
    "channel_argument_test.py",
    "channel_ready_test.py",
    "close_channel_test.py",
    "compatibility_test.py",
    "compression_test.py",
    "connectivity_test.py",
    "done_callback_test.py",
    "metadata_test.py",
    "secure_call_test.py",
    "timeout_test.py",
    "wait_for_connection_test.py",
    "wait_for_ready_test.py",
    "abort_test.py",
    "client_unary_unary_interceptor_test.py",
    "client_unary_stream_interceptor_test.py",
    "client_stream_unary_interceptor_test.py",
    "client_stream_stream_interceptor_test.py",
    "multithread_test.py",
)

# Run in the child: patch, then unittest on one module; a JSON summary on
# the last line of stdout.
CHILD = r'''
import json, sys, traceback, unittest
sys.path.insert(0, %(pkg)r)
sys.path.insert(0, %(root)r)
made = [0]
if %(patch)r:
    import rgrpc
    import rgrpc._channel

    rgrpc.patch_grpcio()
    _init = rgrpc._channel.Channel.__init__

    def _counting_init(self, *a, **k):  # proves the tests' channels are rgrpc's
        made[0] += 1
        _init(self, *a, **k)

    rgrpc._channel.Channel.__init__ = _counting_init
module = %(module)r
suite = unittest.defaultTestLoader.loadTestsFromName(module)


class Result(unittest.TextTestResult):
    pass


runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=Result)
res = runner.run(suite)


def reason(text):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1][:200] if lines else "?"


def tid(t):
    return getattr(t, "test_case", t).id()  # subtests count as their test


bad = set(tid(t) for t, _ in res.failures + res.errors)
out = {
    "run": res.testsRun,
    "bad_tests": len(bad),
    "failures": [[str(t), reason(tb)] for t, tb in res.failures],
    "errors": [[str(t), reason(tb)] for t, tb in res.errors],
    "skipped": len(res.skipped),
    "expected_failures": len(res.expectedFailures),
    "unexpected_successes": len(res.unexpectedSuccesses),
    "rgrpc_channels": made[0],
}
sys.stdout.write("\nRGRPC_SUMMARY " + json.dumps(out) + "\n")
sys.stdout.flush()
import os
os._exit(0)  # do not wait for threads a hung test left behind
'''


def find_git_dir(explicit):
    if explicit:
        return explicit
    for d in DEFAULT_GIT_DIRS:
        if os.path.isdir(d):
            return d
    sys.exit("no grpc snapshot: fetch github:grpc/grpc (or a fork) and pass --git-dir")


def extract(git_dir, rev, dest, aio=False):
    paths = [UNIT] + ([AIO_UNIT] + list(PROTOS) if aio else [])
    data = subprocess.run(["git", "-C", git_dir, "archive", "--format=tar", rev] + paths,
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest)
    root = os.path.join(dest, "src", "python", "grpcio_tests")
    # grpcio's package __init__ files import its own test loader
    for pkg in ("tests", "tests_aio") if aio else ("tests",):
        with open(os.path.join(root, pkg, "__init__.py"), "w") as f:
            f.write("")
    if aio:
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", dest,
                        "--python_out=" + root, "--grpc_python_out=" + root] + list(PROTOS),
                       check=True)
    return root


def run_file(root, name, patch, timeout, aio=False):
    module = ("tests_aio.unit." if aio else "tests.unit.") + name[:-3]
    code = CHILD % {"pkg": PKG_ROOT, "root": root, "patch": patch, "module": module}
    try:
        p = subprocess.run(["nice", sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=timeout, cwd=root)
    except subprocess.TimeoutExpired as e:
        return {"timeout": True, "stderr": (e.stderr or b"")[-3000:] if isinstance(
            e.stderr, bytes) else (e.stderr or "")[-3000:]}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("RGRPC_SUMMARY "):
            s = json.loads(line[len("RGRPC_SUMMARY "):])
            s["stderr"] = p.stderr
            return s
    return {"crash": True, "rc": p.returncode, "stderr": p.stderr[-3000:]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--git-dir")
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--no-patch", action="store_true")
    ap.add_argument("--aio", action="store_true", help="run tests_aio/unit")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    ap.add_argument("--keep", action="store_true", help="keep the extracted files")
    ap.add_argument("--logs", help="directory for each file's unittest output")
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    git_dir = find_git_dir(args.git_dir)
    commit = subprocess.run(["git", "-C", git_dir, "rev-parse", args.rev], check=True,
                            capture_output=True, text=True).stdout.strip()
    tmp = tempfile.mkdtemp(prefix="rgrpc-grpcio-unit-")
    rows = []
    try:
        root = extract(git_dir, args.rev, tmp, args.aio)
        print("grpc tests from %s at %s, %s" % (git_dir, commit[:12],
              "plain grpcio" if args.no_patch else "rgrpc.patch_grpcio()"), flush=True)
        for name in args.files or (DEFAULT_AIO_FILES if args.aio else DEFAULT_FILES):
            if not os.path.exists(os.path.join(root, "tests_aio" if args.aio else "tests",
                                               "unit", name)):
                print("%s: not in this snapshot" % name, flush=True)
                continue
            s = run_file(root, name, not args.no_patch, args.timeout, args.aio)
            if args.logs:
                os.makedirs(args.logs, exist_ok=True)
                with open(os.path.join(args.logs, name + ".log"), "w") as f:
                    f.write(s.get("stderr", ""))
            if s.get("timeout") or s.get("crash"):
                what = "timed out" if s.get("timeout") else "crashed (rc %s)" % s.get("rc")
                last = [l for l in s.get("stderr", "").splitlines() if l.strip()][-1:] or [""]
                rows.append((name, "-", "-", "-", "-", what + ": " + last[0][:150]))
            else:
                nf, ne = len(s["failures"]), len(s["errors"])
                passed = s["run"] - s.get("bad_tests", nf + ne) - s["skipped"] - s[
                    "expected_failures"]
                reasons = collections.Counter(r for _, r in s["failures"] + s["errors"])
                why = "; ".join("%s (%d)" % (r, n) for r, n in reasons.most_common(3))
                rows.append((name, passed, nf, ne, s["skipped"], why))
            print("%s: passed %s, failed %s, errors %s, skipped %s %s" % (
                rows[-1][:5] + (("- " + rows[-1][5]) if rows[-1][5] else "",)), flush=True)
            if "rgrpc_channels" in s and not args.no_patch:
                # proof that the tests' channels were rgrpc's
                print("  (rgrpc channels made: %d)" % s["rgrpc_channels"], flush=True)
    finally:
        if args.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.markdown:
        print("\n| file | passed | failed | errors | skipped | main reasons |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print("| %s | %s | %s | %s | %s | %s |" % (
                r[0], r[1], r[2], r[3], r[4], r[5].replace("|", "\\|")))


if __name__ == "__main__":
    main()
