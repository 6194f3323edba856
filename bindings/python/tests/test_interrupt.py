"""Ctrl-C (SIGINT) interrupts blocking calls on the main thread, the call is
cancelled, and the interpreter then exits cleanly with calls still in
flight."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import PKG_ROOT

SCRIPT = textwrap.dedent("""
    import signal, sys, time
    # Python leaves SIGINT ignored when it starts with it ignored (a test run
    # started as a background job of a non-interactive shell): install the
    # KeyboardInterrupt handler explicitly, as an interactive program has it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, %(pkg)r)
    sys.path.insert(0, %(gen)r)
    import rgrpc
    from rgrpc_testing import test_pb2_grpc, messages_pb2
    m = messages_pb2
    mode = sys.argv[1]
    ch = rgrpc.insecure_channel(%(target)r)
    stub = test_pb2_grpc.TestServiceStub(ch)
    stub.EmptyCall(__import__("rgrpc_testing.empty_pb2").empty_pb2.Empty())  # connected
    sleep = (("x-rgrpc-sleep-ms", "30000"),)
    slow_stream = m.StreamingOutputCallRequest(
        response_parameters=[m.ResponseParameters(size=1, interval_us=30000000)])

    def stuck_requests():
        yield m.StreamingInputCallRequest()
        time.sleep(60)

    background = stub.UnaryCall.future(m.SimpleRequest(), metadata=sleep)  # in flight at exit
    print("START", flush=True)
    t0 = time.monotonic()
    try:
        if mode == "unary":
            stub.UnaryCall(m.SimpleRequest(), metadata=sleep)
        elif mode == "with_call":
            stub.UnaryCall.with_call(m.SimpleRequest(), metadata=sleep)
        elif mode == "future":
            stub.UnaryCall.future(m.SimpleRequest(), metadata=sleep).result()
        elif mode == "server_stream":
            for _ in stub.StreamingOutputCall(slow_stream):
                pass
        elif mode == "initial_metadata":
            stub.StreamingOutputCall(m.StreamingOutputCallRequest(), metadata=sleep).initial_metadata()
        elif mode == "client_stream":
            stub.StreamingInputCall(stuck_requests())
        elif mode == "bidi":
            next(stub.FullDuplexCall(stuck_requests()))
        elif mode == "code":
            stub.StreamingOutputCall(slow_stream).code()
        print("RETURNED", flush=True)
    except KeyboardInterrupt:
        print("INTERRUPTED %%.3f" %% (time.monotonic() - t0), flush=True)
""")

MODES = ["unary", "with_call", "future", "server_stream", "initial_metadata",
         "client_stream", "bidi", "code"]


@pytest.mark.parametrize("mode", MODES)
def test_ctrl_c_interrupts_blocking_call(mode, target, pb):
    code = SCRIPT % {"pkg": PKG_ROOT, "gen": str(pb.cache_dir), "target": target}
    p = subprocess.Popen([sys.executable, "-c", code, mode], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "START"
        time.sleep(0.4)
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        line = p.stdout.readline().strip()
        reacted = time.monotonic() - sent
        rc = p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    err = p.stderr.read()
    assert line.startswith("INTERRUPTED"), (line, err)
    assert reacted < 2.0, reacted
    assert rc == 0, err
    assert "Traceback" not in err and "Fatal" not in err, err
