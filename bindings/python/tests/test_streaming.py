"""Server streaming, client streaming and bidi streaming, with generators,
early break, cancellation, errors, and the Call/Future face of response
iterators (grpcio's rpc-patterns examples)."""

from __future__ import annotations

import queue
import threading
import time

import pytest

import rgrpc as grpc

from conftest import wait_until


def out_req(pb, sizes, interval_us=0, status=None):
    req = pb.messages_pb2.StreamingOutputCallRequest(
        response_parameters=[pb.messages_pb2.ResponseParameters(size=s, interval_us=interval_us)
                             for s in sizes])
    if status is not None:
        req.response_status.code, req.response_status.message = status
    return req


def in_req(pb, n):
    return pb.messages_pb2.StreamingInputCallRequest(payload=pb.messages_pb2.Payload(body=bytes(n)))


def in_thread(fn, *args):
    """Runs fn in a non-main thread (the direct-read path) and returns its result."""
    box = []
    t = threading.Thread(target=lambda: box.append(fn(*args)))
    t.start()
    t.join(60)
    return box[0]


# --- server streaming ------------------------------------------------------------


def test_server_streaming(stub, pb):
    sizes = [1, 10, 100, 1000, 10000]
    responses = stub.StreamingOutputCall(out_req(pb, sizes))
    assert [len(r.payload.body) for r in responses] == sizes
    assert responses.code() is grpc.StatusCode.OK
    assert not responses.is_active()


def test_server_streaming_on_worker_thread(stub, pb):
    sizes = list(range(1, 50))

    def run():
        it = stub.StreamingOutputCall(out_req(pb, sizes))
        return [len(r.payload.body) for r in it], it.code()

    got, code = in_thread(run)
    assert got == sizes and code is grpc.StatusCode.OK


def test_response_iterator_is_call_and_future(stub, pb):
    it = stub.StreamingOutputCall(out_req(pb, [3, 4]),
                                  metadata=(("x-grpc-test-echo-initial", "hello"),
                                            ("x-grpc-test-echo-trailing", "bye")),
                                  timeout=10)
    assert isinstance(it, grpc.Call) and isinstance(it, grpc.Future)
    assert isinstance(it, grpc.RpcError)  # as grpcio's
    assert ("x-grpc-test-echo-initial", "hello") in it.initial_metadata()
    assert 0 < it.time_remaining() <= 10
    done = []
    it.add_done_callback(done.append)
    called = threading.Event()
    assert it.add_callback(called.set) is True
    assert it.running() and not it.done()
    assert [len(r.payload.body) for r in it] == [3, 4]
    assert called.wait(10)
    assert wait_until(lambda: done == [it])
    assert it.done() and it.result() is None and it.exception() is None
    assert ("x-grpc-test-echo-trailing", "bye") in it.trailing_metadata()
    assert it.details() == ""


def test_next_and_iteration_protocol(stub, pb):
    it = stub.StreamingOutputCall(out_req(pb, [1, 2]))
    assert iter(it) is it
    assert len(next(it).payload.body) == 1
    assert len(it.next().payload.body) == 2
    with pytest.raises(StopIteration):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


def test_server_streaming_error_after_messages(stub, pb):
    it = stub.StreamingOutputCall(out_req(pb, [1, 1], status=(9, "precondition")))
    got = []
    with pytest.raises(grpc.RpcError) as info:
        for r in it:
            got.append(r)
    assert len(got) == 2
    assert info.value is it
    assert it.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert it.details() == "precondition"
    with pytest.raises(grpc.RpcError):
        it.result()


def test_server_streaming_deadline(stub, pb):
    it = stub.StreamingOutputCall(out_req(pb, [1] * 20, interval_us=100_000), timeout=0.35)
    got = []
    with pytest.raises(grpc.RpcError) as info:
        for r in it:
            got.append(r)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert 1 <= len(got) < 20


def test_early_break_cancels(stub, pb):
    it = stub.StreamingOutputCall(out_req(pb, [1] * 100, interval_us=20_000))
    for i, _ in enumerate(it):
        if i == 2:
            break
    assert it.cancel() is True
    assert it.code() is grpc.StatusCode.CANCELLED
    assert it.cancelled()
    with pytest.raises(grpc.RpcError):
        next(it)
    with pytest.raises(grpc.FutureCancelledError):
        it.result()


def test_abandoned_iterator_is_cancelled(stub, pb):
    from rgrpc import _runtime

    before = len(_runtime._registry)

    def start_and_drop():
        it = stub.StreamingOutputCall(out_req(pb, [1] * 100, interval_us=20_000))
        next(it)

    for _ in range(5):
        start_and_drop()
    assert wait_until(lambda: len(_runtime._registry) <= before, 5)


def test_cancel_from_another_thread(stub, pb):
    it = stub.StreamingOutputCall(out_req(pb, [1] * 1000, interval_us=10_000))
    threading.Timer(0.2, it.cancel).start()
    got = 0
    with pytest.raises(grpc.RpcError) as info:
        for _ in it:
            got += 1
    assert info.value.code() is grpc.StatusCode.CANCELLED
    assert 0 < got < 1000


def test_cancel_while_worker_thread_blocks_in_recv(stub, pb):
    def run():
        it = stub.StreamingOutputCall(out_req(pb, [1], interval_us=5_000_000))
        threading.Timer(0.2, it.cancel).start()
        t0 = time.monotonic()
        try:
            next(it)
        except grpc.RpcError as e:
            return e.code(), time.monotonic() - t0
        return None, 0

    code, took = in_thread(run)
    assert code is grpc.StatusCode.CANCELLED and took < 2


def test_many_messages_in_order(stub, pb):
    sizes = [i % 13 for i in range(2000)]
    it = stub.StreamingOutputCall(out_req(pb, sizes))
    assert [len(r.payload.body) for r in it] == sizes


def test_large_messages(stub, pb):
    sizes = [1 << 20, 3 << 20, 1]
    assert [len(r.payload.body) for r in stub.StreamingOutputCall(out_req(pb, sizes))] == sizes


def test_initial_metadata_without_reading(stub, pb):
    def run():
        it = stub.StreamingOutputCall(out_req(pb, [5]),
                                      metadata=(("x-grpc-test-echo-initial", "v"),))
        md = it.initial_metadata()
        return md, [len(r.payload.body) for r in it]

    for md, got in (run(), in_thread(run)):
        assert ("x-grpc-test-echo-initial", "v") in md
        assert got == [5]  # the first message was kept for the iterator


def test_slow_consumer_is_flow_controlled(stub, pb):
    """The main-thread read-ahead is bounded; every message still arrives."""
    it = stub.StreamingOutputCall(out_req(pb, [1000] * 300))
    time.sleep(0.3)
    st = it._state
    if st.queue is not None:
        assert len(st.queue) <= 32
    assert sum(1 for _ in it) == 300


# --- client streaming ------------------------------------------------------------


def test_client_streaming_with_generator(stub, pb):
    def requests():
        for n in (27182, 8, 1828, 45904):
            yield in_req(pb, n)

    response = stub.StreamingInputCall(requests())
    assert response.aggregated_payload_size == 74922


def test_client_streaming_with_list_iterator_and_with_call(stub, pb):
    response, call = stub.StreamingInputCall.with_call(
        iter([in_req(pb, 10)] * 5), metadata=(("x-grpc-test-echo-initial", "a"),
                                              ("x-grpc-test-echo-trailing", "b")))
    assert response.aggregated_payload_size == 50
    assert call.code() is grpc.StatusCode.OK
    assert ("x-grpc-test-echo-initial", "a") in call.initial_metadata()
    assert ("x-grpc-test-echo-trailing", "b") in call.trailing_metadata()


def test_client_streaming_future(stub, pb):
    f = stub.StreamingInputCall.future(iter([in_req(pb, 3)] * 4))
    assert f.result(timeout=10).aggregated_payload_size == 12
    assert f.code() is grpc.StatusCode.OK


def test_client_streaming_empty(stub, pb):
    assert stub.StreamingInputCall(iter(())).aggregated_payload_size == 0


def test_client_streaming_on_worker_thread(stub, pb):
    r = in_thread(lambda: stub.StreamingInputCall(iter([in_req(pb, 2)] * 3)))
    assert r.aggregated_payload_size == 6


def test_request_iterator_consumed_on_background_thread(stub, pb):
    threads = []

    def requests():
        threads.append(threading.current_thread())
        yield in_req(pb, 1)

    stub.StreamingInputCall(requests())
    assert threads and threads[0] is not threading.current_thread()


def test_request_iterator_exception(stub, pb):
    def requests():
        yield in_req(pb, 1)
        raise RuntimeError("broken generator")

    with pytest.raises(grpc.RpcError) as info:
        stub.StreamingInputCall(requests())
    assert info.value.code() is grpc.StatusCode.UNKNOWN
    assert info.value.details() == "Exception iterating requests!"


def test_client_streaming_deadline_with_slow_generator(stub, pb):
    def requests():
        yield in_req(pb, 1)
        time.sleep(1.0)
        yield in_req(pb, 1)

    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        stub.StreamingInputCall(requests(), timeout=0.2)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 0.9


def test_client_streaming_cancel_future(stub, pb):
    gate = threading.Event()

    def requests():
        yield in_req(pb, 1)
        gate.wait(5)

    f = stub.StreamingInputCall.future(requests())
    assert f.cancel()
    gate.set()
    with pytest.raises(grpc.FutureCancelledError):
        f.result(timeout=5)


# --- bidi streaming --------------------------------------------------------------


def test_bidi_with_generator(stub, pb):
    sizes = [31415, 9, 2653, 58979]

    def requests():
        for s in sizes:
            yield out_req(pb, [s])

    got = [len(r.payload.body) for r in stub.FullDuplexCall(requests())]
    assert got == sizes


def test_bidi_ping_pong_interactive(stub, pb):
    """Each request is produced only after the previous response arrived: the
    request iterator must be consumed concurrently with reading."""
    q = queue.Queue()

    def requests():
        while True:
            item = q.get()
            if item is None:
                return
            yield out_req(pb, [item])

    it = stub.FullDuplexCall(requests(), timeout=20)
    for size in (1, 2, 3, 4, 5):
        q.put(size)
        assert len(next(it).payload.body) == size
    q.put(None)
    with pytest.raises(StopIteration):
        next(it)
    assert it.code() is grpc.StatusCode.OK


def test_bidi_on_worker_thread(stub, pb):
    def run():
        it = stub.FullDuplexCall(iter([out_req(pb, [2, 3])] * 3))
        return [len(r.payload.body) for r in it]

    assert in_thread(run) == [2, 3] * 3


def test_half_duplex(stub, pb):
    it = stub.HalfDuplexCall(iter([out_req(pb, [1]), out_req(pb, [2, 3])]))
    assert [len(r.payload.body) for r in it] == [1, 2, 3]


def test_bidi_error_status(stub, pb):
    it = stub.FullDuplexCall(iter([out_req(pb, [1]), out_req(pb, [], status=(10, "aborted!"))]))
    got = []
    with pytest.raises(grpc.RpcError) as info:
        for r in it:
            got.append(r)
    assert len(got) == 1
    assert info.value.code() is grpc.StatusCode.ABORTED
    assert info.value.details() == "aborted!"


def test_bidi_cancel_after_first_response(stub, pb):
    q = queue.Queue()

    def requests():
        yield out_req(pb, [1])
        q.get()  # blocks until the test ends

    it = stub.FullDuplexCall(requests())
    assert len(next(it).payload.body) == 1
    assert it.cancel()
    with pytest.raises(grpc.RpcError) as info:
        next(it)
    assert info.value.code() is grpc.StatusCode.CANCELLED
    q.put(None)


def test_bidi_empty_both_ways(stub, pb):
    it = stub.FullDuplexCall(iter(()))
    assert list(it) == []
    assert it.code() is grpc.StatusCode.OK


def test_streams_from_many_threads(stub, pb):
    errors = []

    def worker(n):
        try:
            for _ in range(10):
                assert [len(r.payload.body) for r in stub.StreamingOutputCall(out_req(pb, [n] * 5))] == [n] * 5
                assert stub.StreamingInputCall(iter([in_req(pb, n)] * 4)).aggregated_payload_size == 4 * n
                assert [len(r.payload.body) for r in stub.FullDuplexCall(iter([out_req(pb, [n])] * 3))] == [n] * 3
        except Exception as e:  # pragma: no cover
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors
