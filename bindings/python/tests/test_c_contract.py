"""The parts of include/rgrpc.h's contract the binding relies on, checked at
the ctypes level against a real server, including the library bugs the
binding found (fixed since; these tests keep them fixed)."""

from __future__ import annotations

import threading
import time
from ctypes import byref, c_void_p

import pytest

from rgrpc._lib import UNARY_DONE_CB, Result, lib

M = b"/grpc.testing.TestService/UnaryCall"


@pytest.fixture
def native_channel(target):
    ch = c_void_p()
    err = c_void_p()
    assert lib.rgrpc_channel_new(target.encode(), None, None, byref(ch), byref(err)) == 0
    yield ch.value
    lib.rgrpc_channel_close(ch.value)
    lib.rgrpc_channel_free(ch.value)


# Recorders (and so their ctypes callbacks) live as long as the module: the
# library may call a callback after the test that registered it ended (see
# the xfail below), and calling a collected CFUNCTYPE crashes the process.
_KEEP = []


class Recorder(object):
    def __init__(self):
        self.lock = threading.Lock()
        self.got = {}
        self.cb = UNARY_DONE_CB(self._cb)
        _KEEP.append(self)

    def _cb(self, key, st, data, n):
        with self.lock:
            self.got[key] = (lib.rgrpc_status_get_code(st), n)

    def wait_for(self, n, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if len(self.got) >= n:
                    return True
            time.sleep(0.005)
        return False


def request(pb, size=4):
    return pb.messages_pb2.SimpleRequest(response_size=size).SerializeToString()


def test_unary_async_callback_gets_response(native_channel, pb):
    rec = Recorder()
    calls = []
    for i in range(50):
        req = request(pb, 1 + i % 5)
        call = c_void_p()
        assert lib.rgrpc_call_unary_async(native_channel, M, None, req, len(req), rec.cb,
                                          i + 1, byref(call)) == 0
        calls.append(call.value)
    for c in calls:
        assert lib.rgrpc_call_wait(c, 10000) == Result.OK
        lib.rgrpc_call_free(c)
    assert {k: v for k, v in rec.got.items()} == {
        i + 1: (0, len(pb.messages_pb2.SimpleResponse(
            payload=pb.messages_pb2.Payload(body=bytes(1 + i % 5))).SerializeToString()))
        for i in range(50)}


def test_wait_returns_after_callback_when_call_ends_at_start(native_channel, pb):
    rec = Recorder()
    early = 0
    for i in range(100):
        opts = lib.rgrpc_call_options_new()
        lib.rgrpc_call_options_set_timeout_ms(opts, 0)
        req = request(pb)
        call = c_void_p()
        assert lib.rgrpc_call_unary_async(native_channel, M, opts, req, len(req), rec.cb, i + 1,
                                          byref(call)) == 0
        lib.rgrpc_call_options_free(opts)
        assert lib.rgrpc_call_wait(call.value, -1) == Result.OK
        with rec.lock:
            early += (i + 1) not in rec.got
        lib.rgrpc_call_free(call.value)
    assert rec.wait_for(100)  # every callback does come, late or not
    assert early == 0, "%d of 100 waits returned before the callback" % early


def test_recv_after_unary_async_returns_response(native_channel, pb):
    req = request(pb, 7)
    call = c_void_p()
    assert lib.rgrpc_call_unary_async(native_channel, M, None, req, len(req),
                                      UNARY_DONE_CB(), None, byref(call)) == 0
    assert lib.rgrpc_call_wait(call.value, 10000) == Result.OK
    buf = c_void_p()
    rc = lib.rgrpc_call_recv(call.value, byref(buf))
    if rc == Result.OK:
        lib.rgrpc_buffer_free(buf.value)
    lib.rgrpc_call_free(call.value)
    assert rc == Result.OK


def test_cancel_from_another_thread_ends_blocked_recv(native_channel, pb):
    m = pb.messages_pb2
    req = m.StreamingOutputCallRequest(
        response_parameters=[m.ResponseParameters(size=1, interval_us=5_000_000)]
    ).SerializeToString()
    call = c_void_p()
    assert lib.rgrpc_call_start(native_channel, b"/grpc.testing.TestService/StreamingOutputCall",
                                None, byref(call)) == 0
    assert lib.rgrpc_call_send(call.value, req, len(req), 1) == 0
    timer = threading.Timer(0.2, lib.rgrpc_call_cancel, args=(call.value,))
    timer.start()
    buf = c_void_p()
    assert lib.rgrpc_call_recv(call.value, byref(buf)) == Result.END_OF_STREAM
    st = c_void_p()
    assert lib.rgrpc_call_finish(call.value, byref(st)) == Result.RPC_FAILED
    assert lib.rgrpc_status_get_code(st.value) == 1
    lib.rgrpc_status_free(st.value)
    # The cancel woke us up but may still be running on the timer thread: a
    # function called at the same time as rgrpc_call_free is a use after
    # free (the binding frees a call only when no Python code can use it).
    timer.join()
    lib.rgrpc_call_free(call.value)


# --- freeing a call while another thread is inside a function on it ---------
#
# rgrpc_call is reference-counted: rgrpc_call_free while another thread is
# blocked in a function on the call cancels it, and that thread returns at
# once with the result documented for a freed call; it must not touch the
# handle again. The binding frees calls on whatever thread drops the last
# reference, also inside the call's own library callbacks.

_OUT = b"/grpc.testing.TestService/StreamingOutputCall"
_DUPLEX = b"/grpc.testing.TestService/FullDuplexCall"


def _blocked_call(native_channel, pb, method):
    """A started call whose response will not come for 10 s (server
    streaming: asked for one slow message; full duplex: sent nothing)."""
    call = c_void_p()
    assert lib.rgrpc_call_start(native_channel, method, None, byref(call)) == 0
    if method == _OUT:
        m = pb.messages_pb2
        req = m.StreamingOutputCallRequest(response_parameters=[
            m.ResponseParameters(size=1, interval_us=10_000_000)]).SerializeToString()
        assert lib.rgrpc_call_send(call.value, req, len(req), 1) == 0
    return call.value


def _recv(p):
    buf = c_void_p()
    rc = lib.rgrpc_call_recv(p, byref(buf))
    if rc == Result.OK:  # pragma: no cover - reported by the assertion
        lib.rgrpc_buffer_free(buf.value)
    return rc, None


def _initial_metadata(p):
    md = c_void_p()
    rc = lib.rgrpc_call_initial_metadata(p, byref(md))
    return rc, md.value  # nothing written after a free: the view would dangle


def _finish(p):
    st = c_void_p()
    rc = lib.rgrpc_call_finish(p, byref(st))
    code = None
    if st.value:  # the status outlives the call
        code = lib.rgrpc_status_get_code(st.value)
        lib.rgrpc_status_free(st.value)
    return rc, code


def _wait(p):
    return lib.rgrpc_call_wait(p, 20_000), None


@pytest.mark.parametrize("method", [_OUT, _DUPLEX], ids=["server_stream", "full_duplex"])
@pytest.mark.parametrize("op,expected", [
    (_recv, (Result.END_OF_STREAM, None)),
    (_initial_metadata, (Result.CANCELLED, None)),
    (_finish, (Result.RPC_FAILED, 1)),
    (_wait, (Result.OK, None)),
], ids=["recv", "initial_metadata", "finish", "wait"])
def test_free_while_another_thread_is_blocked_in_the_call(native_channel, pb, method, op,
                                                         expected):
    for _ in range(3):
        p = _blocked_call(native_channel, pb, method)
        box = []

        def blocked():
            t0 = time.monotonic()
            box.append((op(p), time.monotonic() - t0))  # and never touches p again

        t = threading.Thread(target=blocked)
        t.start()
        time.sleep(0.2)
        assert not box, "the operation did not block: %r" % (box,)
        lib.rgrpc_call_free(p)  # the other thread is inside a function on it
        t.join(5)
        assert not t.is_alive(), "the blocked thread did not return after the free"
        (got, took), = box
        assert got == expected
        assert took < 3
