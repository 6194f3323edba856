"""Freeing a call while threads are still in it.

The binding frees an ``rgrpc_call`` as soon as Python no longer needs it:
when the call's object is collected (after cancelling it) or once its
status has been read, even while a worker thread is still blocked in the
call (that thread holds the call's ``Handle`` and lets go as soon as the
cancel wakes it up), a request iterator is still waiting for its next item
(it does not hold the call), or a library thread is running the call's own
done callback. The reader must come back at once with CANCELLED, the call
must really be freed (its ``Handle`` collected), and nothing may crash.
"""

from __future__ import annotations

import gc
import queue
import threading
import time
import weakref

import rgrpc as grpc

from conftest import wait_until

# The server would answer only after this long: a reader that returns
# sooner was woken up by the cancel.
_SLOW_US = 10_000_000
_PROMPT_S = 3.0


def slow_stream_request(pb):
    """One message at once, the next one much later: a reader that took the
    first is past the headers, blocked in rgrpc_call_recv."""
    m = pb.messages_pb2
    return m.StreamingOutputCallRequest(
        response_parameters=[m.ResponseParameters(size=1),
                             m.ResponseParameters(size=2, interval_us=_SLOW_US)])


def handle_ref(call):
    """A weak reference to the Handle owning the call's rgrpc_call *."""
    h = call._state.handle
    assert h is not None
    return weakref.ref(h)


def freed(ref, timeout=_PROMPT_S):
    return wait_until(lambda: (gc.collect(), ref() is None)[-1], timeout)


def blocking_request_iterator():
    """A request iterator that sends nothing until told to stop."""
    q = queue.Queue()

    def gen():
        while True:
            item = q.get()
            if item is None:
                return
            yield item

    return gen(), q


def test_dropping_stream_frees_call_while_worker_blocks_in_recv(stub, pb):
    """Main thread: a worker reads ahead, blocked in rgrpc_call_recv.
    Dropping the iterator cancels the call and frees it as soon as the
    worker is out (well before the server's next message)."""
    for _ in range(5):
        it = stub.StreamingOutputCall(slow_stream_request(pb))
        assert it._state.prefetch
        assert next(it).payload.body == bytes(1)
        time.sleep(0.05)  # the worker is in recv, waiting for the second
        ref = handle_ref(it)
        t0 = time.monotonic()
        del it
        gc.collect()
        assert freed(ref), "the call was not freed after its iterator was dropped"
        assert time.monotonic() - t0 < _PROMPT_S
    # the channel still works
    assert stub.UnaryCall(pb.messages_pb2.SimpleRequest(response_size=3)).payload.body == bytes(3)


def test_dropping_bidi_frees_call_while_worker_waits_for_headers(stub, pb):
    """Main thread, FullDuplexCall with no request sent: the reader worker
    waits for headers the server never sends, and the request iterator
    waits for its first item. Dropping the call frees it anyway."""
    requests, q = blocking_request_iterator()
    try:
        it = stub.FullDuplexCall(requests)
        assert it._state.prefetch
        time.sleep(0.2)
        ref = handle_ref(it)
        t0 = time.monotonic()
        del it
        gc.collect()
        assert freed(ref)
        assert time.monotonic() - t0 < _PROMPT_S
    finally:
        q.put(None)


def _read_in_thread(make_call, first=None):
    """Starts a call on a non-main thread (the thread reads with
    rgrpc_call_recv itself) and blocks that thread in next(). Returns the
    thread, the call, and a list for the outcome. ``first`` is called with
    the call before it is handed over (e.g. to read a first message)."""
    handed = queue.Queue()
    outcome = []

    def run():
        it = make_call()
        if first is not None:
            first(it)
        handed.put(it)
        t0 = time.monotonic()
        try:
            next(it)
            outcome.append(("message", time.monotonic() - t0))
        except grpc.RpcError as e:
            outcome.append((e.code(), time.monotonic() - t0))
        except BaseException as e:  # pragma: no cover - reported below
            outcome.append((e, time.monotonic() - t0))

    t = threading.Thread(target=run)
    t.start()
    return t, handed.get(timeout=10), outcome


def test_cancel_and_collect_while_another_thread_blocks_in_next(stub, pb):
    """A thread blocks in next() of a server stream (in rgrpc_call_recv);
    another cancels the call and drops and collects its reference: the
    reader gets CANCELLED at once and the call is freed."""
    for _ in range(5):
        t, it, outcome = _read_in_thread(lambda: stub.StreamingOutputCall(slow_stream_request(pb)),
                                         first=next)
        assert not it._state.prefetch
        time.sleep(0.2)  # the reader is in rgrpc_call_recv by now
        ref = handle_ref(it)
        assert it.cancel()
        del it
        gc.collect()
        t.join(_PROMPT_S)
        assert not t.is_alive(), "the reader did not return after the cancel"
        code, took = outcome[0]
        assert code is grpc.StatusCode.CANCELLED, outcome
        assert took < _PROMPT_S
        assert freed(ref)


def test_bidi_waiting_request_iterator_does_not_keep_call(stub, pb):
    """FullDuplexCall with no request sent, read on a non-main thread: the
    reader blocks in rgrpc_call_recv, the request iterator on its queue.
    Cancelling and dropping the call wakes the reader (CANCELLED) and frees
    the call although the request iterator still waits; when it then
    yields, nothing is sent and nothing breaks."""
    requests, q = blocking_request_iterator()
    try:
        t, it, outcome = _read_in_thread(lambda: stub.FullDuplexCall(requests))
        time.sleep(0.2)
        ref = handle_ref(it)
        it.cancel()
        del it
        gc.collect()
        t.join(_PROMPT_S)
        assert not t.is_alive()
        assert outcome[0][0] is grpc.StatusCode.CANCELLED, outcome
        assert freed(ref), "a request iterator waiting for its next item kept the call"
        m = pb.messages_pb2
        q.put(m.StreamingOutputCallRequest(response_parameters=[m.ResponseParameters(size=1)]))
    finally:
        q.put(None)
    assert stub.UnaryCall(pb.messages_pb2.SimpleRequest(response_size=2)).payload.body == bytes(2)


def test_future_freed_inside_its_own_done_callback(stub, pb):
    """A future nobody holds but its done callback: the last reference goes
    when the library thread running the call's done callback finishes, so
    the call is freed right there, inside its own callback."""
    ran = threading.Event()
    refs = []
    for _ in range(20):
        f = stub.UnaryCall.future(pb.messages_pb2.SimpleRequest(response_size=1),
                                  metadata=(("x-rgrpc-sleep-ms", "50"),))
        refs.append(handle_ref(f))
        f.add_done_callback(lambda fut: ran.set())
        del f
    assert ran.wait(10)
    assert wait_until(lambda: (gc.collect(), all(r() is None for r in refs))[-1], 10)
