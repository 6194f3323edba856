"""rgrpc.shutdown(): the library's global cleanup from Python (in a child
process, since it is final), against the grpcio test server."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from conftest import PKG_ROOT

SCRIPT = """
    import sys
    import rgrpc
    target = sys.argv[1]
    ch = rgrpc.insecure_channel(target)
    empty = ch.unary_unary("/grpc.testing.TestService/EmptyCall")
    assert empty(b"", timeout=10) == b""
    # A stream left open: shutdown closes the channel under it.
    held = ch.stream_stream("/grpc.testing.TestService/FullDuplexCall")(
        iter(()), timeout=30)
    assert rgrpc.shutdown() is None
    try:
        next(held)
        raise AssertionError("the held stream went on")
    except rgrpc.RpcError as e:
        assert e.code() in (rgrpc.StatusCode.CANCELLED, rgrpc.StatusCode.UNAVAILABLE), e.code()
    # Calls on the old channel and new channels are refused.
    try:
        empty(b"", timeout=5)
        raise AssertionError("a call after shutdown succeeded")
    except rgrpc.RpcError as e:
        assert e.code() != rgrpc.StatusCode.OK
    try:
        rgrpc.insecure_channel(target).unary_unary(
            "/grpc.testing.TestService/EmptyCall")(b"", timeout=5)
        raise AssertionError("a new channel worked after shutdown")
    except Exception as e:
        assert "shut down" in str(e), repr(e)
    assert rgrpc.shutdown() is None   # again: nothing happens
    ch.close()
    print("OK")
"""


def test_shutdown_ends_calls_and_refuses_new_ones(target):
    env = dict(os.environ, PYTHONPATH=PKG_ROOT)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), target],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "OK", (out.stdout, out.stderr[-2000:])
