"""Unary-unary RPCs: blocking, with_call, future; errors, deadlines,
metadata both ways, cancellation, callbacks (grpcio's rpc-patterns examples)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import rgrpc as grpc

from conftest import HERE, PKG_ROOT, wait_until
from every_response import check_every_response


def simple(pb, size=10, **kw):
    return pb.messages_pb2.SimpleRequest(response_size=size, **kw)


def failing(pb, code, message):
    return pb.messages_pb2.SimpleRequest(
        response_status=pb.messages_pb2.EchoStatus(code=code, message=message))


# --- the basic patterns ------------------------------------------------------


def test_sync_call(stub, pb):
    response = stub.UnaryCall(simple(pb, 42))
    assert isinstance(response, pb.messages_pb2.SimpleResponse)
    assert response.payload.body == bytes(42)


def test_empty_call(stub, pb):
    assert stub.EmptyCall(pb.empty_pb2.Empty()) == pb.empty_pb2.Empty()


def test_with_call_returns_response_and_call(stub, pb):
    response, call = stub.UnaryCall.with_call(simple(pb, 3), timeout=10)
    assert response.payload.body == bytes(3)
    assert call.code() is grpc.StatusCode.OK
    assert call.details() == ""
    assert call.initial_metadata() == ()
    assert call.trailing_metadata() == ()
    assert not call.is_active()
    assert isinstance(call, grpc.Call) and isinstance(call, grpc.Future)
    assert call.done() and not call.running() and not call.cancelled()
    assert call.result() == response
    assert call.exception() is None and call.traceback() is None
    assert call.add_callback(lambda: None) is False
    assert call.cancel() is False
    remaining = call.time_remaining()
    assert remaining is not None and 0 < remaining <= 10
    seen = []
    call.add_done_callback(seen.append)
    assert seen == [call]


def test_metadata_both_ways(stub, pb):
    md = (
        ("x-grpc-test-echo-initial", "initial-value"),
        ("x-grpc-test-echo-trailing-bin", b"\x00\x01\xfe\xff"),
        ("x-custom", "v1"),
        ("x-custom", "v2"),
        ("x-rgrpc-echo-all", "1"),
    )
    response, call = stub.UnaryCall.with_call(simple(pb), metadata=md)
    initial = dict(call.initial_metadata())
    assert initial["x-grpc-test-echo-initial"] == "initial-value"
    echoed = [v for k, v in call.initial_metadata() if k == "x-echo-x-custom"]
    assert echoed == ["v1", "v2"]  # repeated keys, in order
    trailing = call.trailing_metadata()
    assert ("x-grpc-test-echo-trailing-bin", b"\x00\x01\xfe\xff") in trailing
    # entries are (key, value) pairs with .key / .value
    assert all(m.key == m[0] and m.value == m[1] for m in trailing)


def test_bytes_value_for_ascii_key(stub, pb):
    _, call = stub.UnaryCall.with_call(
        simple(pb), metadata=(("x-a", b"bytes-ok"), ("x-rgrpc-echo-all", "1")))
    assert ("x-echo-x-a", "bytes-ok") in call.initial_metadata()


def test_user_agent_and_timeout_reach_server(stub, pb):
    _, call = stub.UnaryCall.with_call(
        simple(pb), timeout=30, metadata=(("x-rgrpc-echo-request-headers", "1"),))
    md = dict(call.initial_metadata())
    assert md["x-rgrpc-req-user-agent"].startswith("grpc-")  # "grpc-rust-rgrpc/..." or similar
    assert 25000 < int(md["x-rgrpc-req-time-remaining-ms"]) <= 30000
    assert md["x-rgrpc-req-path"] == "/grpc.testing.TestService/UnaryCall"


# --- errors --------------------------------------------------------------------


def test_error_is_rpc_error_and_call(stub, pb):
    with pytest.raises(grpc.RpcError) as info:
        stub.UnaryCall(failing(pb, 5, "no such thing"),
                       metadata=(("x-grpc-test-echo-trailing", "t"),
                                 ("x-grpc-test-echo-initial", "i")))
    e = info.value
    assert isinstance(e, grpc.Call) and isinstance(e, grpc.Future)
    assert e.code() is grpc.StatusCode.NOT_FOUND
    assert e.code().value == (5, "not found")
    assert e.details() == "no such thing"
    assert ("x-grpc-test-echo-trailing", "t") in e.trailing_metadata()
    assert ("x-grpc-test-echo-initial", "i") in e.initial_metadata()
    assert e.done() and not e.is_active()
    assert e.exception() is e
    with pytest.raises(grpc.RpcError):
        e.result()
    assert "NOT_FOUND" in str(e) and "no such thing" in repr(e)
    assert e.debug_error_string()


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK])
def test_every_status_code(stub, pb, code):
    with pytest.raises(grpc.RpcError) as info:
        stub.UnaryCall(failing(pb, code.value[0], "m-%s" % code.name))
    assert info.value.code() is code
    assert info.value.details() == "m-%s" % code.name


def test_unicode_details(stub, pb):
    with pytest.raises(grpc.RpcError) as info:
        stub.UnaryCall(failing(pb, 2, "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"))
    assert info.value.details() == "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"


def test_unimplemented_method(channel, pb):
    with pytest.raises(grpc.RpcError) as info:
        channel.unary_unary("/grpc.testing.TestService/NoSuchMethod")(b"")
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
    stub = pb.test_pb2_grpc.TestServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.UnimplementedCall(pb.empty_pb2.Empty())
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_invalid_method_details_give_the_librarys_reason(channel):
    """A call the library refuses to start (rgrpc_call_start /
    rgrpc_call_unary_async) is INTERNAL, with the library's reason for this
    method (rgrpc_channel_last_error), from every kind of call, on the
    main thread and on others (they start calls differently)."""
    def attempts():
        uu = channel.unary_unary("Foo bar")
        yield lambda: uu(b"")
        yield lambda: uu.with_call(b"")
        yield lambda: uu.future(b"")
        yield lambda: list(channel.unary_stream("Foo bar")(b""))
        yield lambda: channel.stream_unary("Foo bar")(iter([b""]))
        yield lambda: list(channel.stream_stream("Foo bar")(iter([b""])))

    def check():
        for attempt in attempts():
            with pytest.raises(grpc.RpcError) as info:
                attempt()
            assert info.value.code() is grpc.StatusCode.INTERNAL
            details = info.value.details()
            assert details.startswith("Invalid method: "), details
            assert '"Foo bar"' in details and "must start with '/'" in details, details
        return True

    assert check()
    box = []
    t = threading.Thread(target=lambda: box.append(check()))
    t.start()
    t.join(30)
    assert box == [True]


def test_deadline_exceeded(stub, pb):
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        stub.UnaryCall(simple(pb), timeout=0.2, metadata=(("x-rgrpc-sleep-ms", "3000"),))
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 2.0


def test_zero_and_negative_timeout(stub, pb):
    for t in (0, -1):
        with pytest.raises(grpc.RpcError) as info:
            stub.UnaryCall(simple(pb), timeout=t)
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


def test_invalid_metadata_is_internal(stub, pb):
    for md in ((("Bad-Key", "v"),), (("x-a", "caf\u00e9"),), (("x-a", "new\nline"),)):
        with pytest.raises(grpc.RpcError) as info:
            stub.UnaryCall(simple(pb), metadata=md)
        assert info.value.code() is grpc.StatusCode.INTERNAL
        assert "metadata" in info.value.details().lower()


def test_binary_metadata_needs_bytes(stub, pb):
    with pytest.raises(TypeError):
        stub.UnaryCall(simple(pb), metadata=(("x-bin", "text"),))


def test_serializer_errors(channel):
    def bad_serializer(_):
        raise ValueError("nope")

    mc = channel.unary_unary("/grpc.testing.TestService/UnaryCall",
                             request_serializer=bad_serializer)
    with pytest.raises(grpc.RpcError) as info:
        mc(object())
    assert info.value.code() is grpc.StatusCode.INTERNAL
    assert info.value.details() == "Exception serializing request!"


def test_deserializer_errors(channel):
    def bad(_):
        raise ValueError("nope")

    mc = channel.unary_unary("/grpc.testing.TestService/EmptyCall", response_deserializer=bad)
    with pytest.raises(grpc.RpcError) as info:
        mc(b"")
    assert info.value.code() is grpc.StatusCode.INTERNAL
    assert info.value.details() == "Exception deserializing response!"
    with pytest.raises(grpc.RpcError):
        mc.future(b"").result(timeout=10)


def test_raw_bytes_without_serializers(channel, pb):
    mc = channel.unary_unary("/grpc.testing.TestService/UnaryCall")
    raw = mc(simple(pb, 7).SerializeToString())
    assert isinstance(raw, bytes)
    assert pb.messages_pb2.SimpleResponse.FromString(raw).payload.body == bytes(7)


def test_method_as_bytes(channel, pb):
    mc = channel.unary_unary(b"/grpc.testing.TestService/EmptyCall",
                             request_serializer=pb.empty_pb2.Empty.SerializeToString,
                             response_deserializer=pb.empty_pb2.Empty.FromString,
                             _registered_method=True)
    assert mc(pb.empty_pb2.Empty()) == pb.empty_pb2.Empty()


def test_wait_for_ready_and_compression_kwargs_accepted(stub, pb):
    assert stub.UnaryCall(simple(pb, 1), wait_for_ready=True).payload.body == b"\0"
    assert stub.UnaryCall(simple(pb, 1), wait_for_ready=False).payload.body == b"\0"
    assert stub.UnaryCall(simple(pb, 1), compression=grpc.Compression.NoCompression)


def test_unavailable_when_nothing_listens(pb):
    from conftest import free_port

    with grpc.insecure_channel("127.0.0.1:%d" % free_port()) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.UnaryCall(simple(pb), timeout=5)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        f = stub.UnaryCall.future(simple(pb), timeout=5)
        assert f.exception(timeout=10).code() is grpc.StatusCode.UNAVAILABLE


# --- futures -------------------------------------------------------------------


def test_future_result(stub, pb):
    f = stub.UnaryCall.future(simple(pb, 5), timeout=10)
    assert isinstance(f, grpc.Future) and isinstance(f, grpc.Call)
    assert f.result(timeout=10).payload.body == bytes(5)
    assert f.done() and not f.running() and not f.cancelled()
    assert f.code() is grpc.StatusCode.OK
    assert f.exception() is None
    assert f.initial_metadata() == ()


def test_future_timeout_error(stub, pb):
    f = stub.UnaryCall.future(simple(pb), metadata=(("x-rgrpc-sleep-ms", "1500"),))
    with pytest.raises(grpc.FutureTimeoutError):
        f.result(timeout=0.1)
    with pytest.raises(grpc.FutureTimeoutError):
        f.exception(timeout=0.05)
    assert f.running() and f.is_active() and not f.done()
    assert f.result(timeout=10).payload.body == bytes(10)


def test_future_failure(stub, pb):
    f = stub.UnaryCall.future(failing(pb, 7, "denied"))
    e = f.exception(timeout=10)
    assert e is f and e.code() is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as info:
        f.result()
    assert info.value.details() == "denied"
    assert f.traceback() is not None


def test_future_cancel(stub, pb):
    f = stub.UnaryCall.future(simple(pb), metadata=(("x-rgrpc-sleep-ms", "5000"),))
    done = []
    f.add_done_callback(done.append)
    assert f.cancel() is True
    assert f.cancelled() and f.done() and not f.is_active()
    assert f.code() is grpc.StatusCode.CANCELLED
    assert f.details() == "Locally cancelled by application!"
    with pytest.raises(grpc.FutureCancelledError):
        f.result()
    with pytest.raises(grpc.FutureCancelledError):
        f.exception()
    assert done == [f]
    assert f.cancel() is False


def test_future_add_done_callback_runs_once(stub, pb):
    f = stub.UnaryCall.future(simple(pb, 2), metadata=(("x-rgrpc-sleep-ms", "100"),))
    seen = []
    ev = threading.Event()

    def cb(fut):
        seen.append((fut, fut.result().payload.body, threading.current_thread()))
        ev.set()

    f.add_done_callback(cb)
    assert ev.wait(10)
    assert seen[0][0] is f and seen[0][1] == bytes(2)
    late = []
    f.add_done_callback(late.append)  # already done: runs at once, here
    assert late == [f]
    time.sleep(0.05)
    assert len(seen) == 1


def test_future_add_callback(stub, pb):
    f = stub.UnaryCall.future(simple(pb), metadata=(("x-rgrpc-sleep-ms", "100"),))
    ev = threading.Event()
    assert f.add_callback(ev.set) is True
    assert ev.wait(10)
    assert f.add_callback(lambda: None) is False


def test_future_time_remaining(stub, pb):
    f = stub.UnaryCall.future(simple(pb), timeout=5, metadata=(("x-rgrpc-sleep-ms", "200"),))
    r = f.time_remaining()
    assert 4 < r <= 5
    f.result(timeout=10)
    f2 = stub.UnaryCall.future(simple(pb))
    assert f2.time_remaining() is None
    f2.result(timeout=10)


def test_future_deadline(stub, pb):
    f = stub.UnaryCall.future(simple(pb), timeout=0.2, metadata=(("x-rgrpc-sleep-ms", "3000"),))
    assert f.exception(timeout=10).code() is grpc.StatusCode.DEADLINE_EXCEEDED


def test_future_initial_metadata_before_result(stub, pb):
    f = stub.UnaryCall.future(simple(pb), metadata=(("x-grpc-test-echo-initial", "x"),))
    assert ("x-grpc-test-echo-initial", "x") in f.initial_metadata()
    f.result(timeout=10)


def test_many_futures_in_flight(stub, pb):
    futures = [stub.UnaryCall.future(simple(pb, i % 7)) for i in range(200)]
    for i, f in enumerate(futures):
        assert f.result(timeout=30).payload.body == bytes(i % 7)


def test_dropped_future_is_cancelled_not_leaked(stub, pb):
    from rgrpc import _runtime

    before = len(_runtime._registry)
    for _ in range(20):
        stub.UnaryCall.future(simple(pb), metadata=(("x-rgrpc-sleep-ms", "2000"),))
    assert wait_until(lambda: len(_runtime._registry) <= before, 5)


# --- threads -------------------------------------------------------------------


def test_calls_from_many_threads(stub, pb):
    errors = []

    def worker(n):
        try:
            for i in range(50):
                if i % 3 == 0:
                    r = stub.UnaryCall.future(simple(pb, n)).result(timeout=20)
                elif i % 3 == 1:
                    r, _ = stub.UnaryCall.with_call(simple(pb, n))
                else:
                    r = stub.UnaryCall(simple(pb, n))
                assert r.payload.body == bytes(n)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_done_callback_blocked_on_a_lock_does_not_block_other_calls(stub, pb):
    """A user callback waiting for a lock the main thread holds runs on a
    library thread; blocking calls made meanwhile still complete (no GIL or
    lock cycle)."""
    lock = threading.Lock()
    ran = threading.Event()

    def cb(_):
        with lock:
            ran.set()

    with lock:
        f = stub.UnaryCall.future(simple(pb))
        f.add_done_callback(cb)
        for _ in range(20):
            assert stub.UnaryCall(simple(pb, 1)).payload.body == b"\0"
        more = [stub.UnaryCall.future(simple(pb, 1)) for _ in range(10)]
        assert all(m.result(timeout=10) for m in more)
        assert not ran.is_set()
    assert ran.wait(10)


# --- the same on a worker thread (the direct, hand-off-free path) --------------


def on_worker(fn):
    box = []

    def run():
        try:
            box.append((True, fn()))
        except BaseException as e:  # passed to the test thread
            box.append((False, e))

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    ok, v = box[0]
    if not ok:
        raise v
    return v


def test_worker_thread_sync_and_with_call(stub, pb):
    assert on_worker(lambda: stub.UnaryCall(simple(pb, 9))).payload.body == bytes(9)
    response, call = on_worker(lambda: stub.UnaryCall.with_call(
        simple(pb, 2), timeout=10, metadata=(("x-grpc-test-echo-initial", "w"),
                                             ("x-grpc-test-echo-trailing", "t"))))
    assert response.payload.body == bytes(2)
    assert call.code() is grpc.StatusCode.OK and ("x-grpc-test-echo-initial", "w") in \
        call.initial_metadata() and ("x-grpc-test-echo-trailing", "t") in call.trailing_metadata()
    assert 0 < call.time_remaining() <= 10


def test_worker_thread_errors(stub, pb):
    with pytest.raises(grpc.RpcError) as info:
        on_worker(lambda: stub.UnaryCall(failing(pb, 11, "range"),
                                         metadata=(("x-grpc-test-echo-initial", "i"),)))
    assert info.value.code() is grpc.StatusCode.OUT_OF_RANGE
    assert info.value.details() == "range"
    assert ("x-grpc-test-echo-initial", "i") in info.value.initial_metadata()
    with pytest.raises(grpc.RpcError) as info:
        on_worker(lambda: stub.UnaryCall(simple(pb), timeout=0.1,
                                         metadata=(("x-rgrpc-sleep-ms", "2000"),)))
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(grpc.RpcError) as info:
        on_worker(lambda: stub.UnimplementedCall(pb.empty_pb2.Empty()))
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_worker_thread_empty_response(stub, pb):
    assert on_worker(lambda: stub.EmptyCall(pb.empty_pb2.Empty())) == pb.empty_pb2.Empty()
    assert on_worker(lambda: stub.UnaryCall(simple(pb, 0))).payload.body == b""


# --- every response arrives ------------------------------------------------------
#
# librgrpc once completed unary calls OK without their response under
# concurrency (a second reader took the response first); the binding papered
# over it. Now an OK status without the response is an INTERNAL error, so a
# library that loses one fails these tests.



def test_every_unary_response_arrives(stub, pb):
    check_every_response(stub, pb.messages_pb2, 10)


def test_every_unary_response_arrives_with_worker_threads(target, pb):
    """The same on the library's multi-threaded runtime (RGRPC_WORKER_THREADS=2,
    read when the runtime starts, so in a fresh interpreter), where the
    library's readers of one call really run at once."""
    code = textwrap.dedent("""
        import sys
        sys.path[:0] = [%(pkg)r, %(gen)r, %(tests)r]
        import rgrpc
        from rgrpc_testing import test_pb2_grpc, messages_pb2
        from every_response import check_every_response
        with rgrpc.insecure_channel(%(target)r) as ch:
            check_every_response(test_pb2_grpc.TestServiceStub(ch), messages_pb2, 10)
        print("OK")
    """) % {"pkg": PKG_ROOT, "gen": str(pb.cache_dir), "tests": HERE, "target": target}
    env = dict(os.environ, RGRPC_WORKER_THREADS="2")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "OK"
