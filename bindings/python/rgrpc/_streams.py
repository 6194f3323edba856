"""Response streams (unary-stream and stream-stream) and request feeding.

How the patterns map onto the C API (``include/rgrpc.h``). Ctrl-C only
interrupts the main thread, and never a thread blocked inside a C function,
so the main thread only ever waits on things Python can interrupt:

* unary-stream / stream-stream on a worker thread: ``rgrpc_call_start`` +
  ``rgrpc_call_on_done`` (done callbacks and ``Future`` methods work without
  reading); the iterating thread calls ``rgrpc_call_recv`` directly.
* unary-stream / stream-stream on the main thread: a worker thread reads
  ahead into a bounded queue; the main thread waits on a Python condition.
* Request iterators (stream-unary and stream-stream) are consumed on a
  worker thread (``rgrpc_call_send`` / ``rgrpc_call_close_send``):
  ``sender_job``.

``_StreamCall`` is the response iterator, which is also a Call and a Future.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from ctypes import byref, c_void_p

from . import _api
from . import _runtime
from ._api import StatusCode
from ._call import CallState, _Rendezvous, abort, on_main_thread, raise_local, run_callbacks
from ._invocation import LocalFailure, MultiCallable, deserialize, serialize, serialize_or_fail
from ._lib import SEND_LAST, Result, lib, result_name, result_str
from ._results import EMPTY, initial_metadata_of, read_metadata, status_info, take_buffer
from ._runtime import DONE_TRAMPOLINE, drain_deferred, register, unregister, workers

_LOGGER = logging.getLogger("rgrpc")

# Read-ahead bound of a response stream read by a worker thread.
_PREFETCH_MESSAGES = 32
_PREFETCH_BYTES = 4 << 20

_OK = Result.OK
_BUSY = Result.BUSY

_rgrpc_call_recv = lib.rgrpc_call_recv
_rgrpc_call_finish = lib.rgrpc_call_finish
_rgrpc_call_send = lib.rgrpc_call_send
_rgrpc_status_free = lib.rgrpc_status_free


class _StreamCall(_Rendezvous):
    """A response stream: an iterator, a Call and a Future."""

    def __iter__(self):
        return self

    def __next__(self):
        st = self._state
        if st.prefetch:
            data = _next_prefetched(st)
        else:
            data = _next_direct(st)
        if data is None:
            if st.code is StatusCode.OK and not st.cancelled:
                raise StopIteration()
            raise self
        try:
            return deserialize(st.deserializer, data)
        except Exception:
            _LOGGER.exception("Exception deserializing response!")
            abort(st, StatusCode.INTERNAL, "Exception deserializing response!")
            raise self from None

    next = __next__

    def __del__(self):
        try:
            st = self._state
            if st.code is None:
                with st.cond:
                    st.abandoned = True
                    st.cond.notify_all()
                self._cancel("Cancelled upon garbage collection!")
            if st.handle is not None:
                st.handle.close(defer=True)
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def _finish_stream(state, p, rc=Result.END_OF_STREAM):
    """After END_OF_STREAM: the status and the initial metadata."""
    if rc != Result.END_OF_STREAM:
        # Not a normal end (should not happen): do not wait for a status.
        lib.rgrpc_call_cancel(p)
        return state.complete(StatusCode.INTERNAL, "rgrpc: receiving failed: %s (%s)"
                              % (result_str(rc), result_name(rc)), EMPTY)
    st = c_void_p()
    _rgrpc_call_finish(p, byref(st))
    if st.value:
        code, details, trailing = status_info(st.value)
        _rgrpc_status_free(st.value)
    else:  # pragma: no cover - finish always gives a status
        code, details, trailing = StatusCode.INTERNAL, "no status", EMPTY
    md = initial_metadata_of(p)
    with state.cond:
        if state.initial_md is None:
            state.initial_md = md
    if state.prefetch and code is StatusCode.OK:
        state.defer_ok(code, details, trailing)
        return None
    return state.complete(code, details, trailing)


def _next_direct(state):
    """Next message bytes (None at the end), read by the calling thread."""
    with state.recv_lock:
        if state.cancelled or state.eos:
            if state.code is None:
                state.wait_done()
            return None
        h = state.handle
        p = h.acquire()
        if p is None:
            state.eos = True
            state.wait_done()
            return None
        cbs = None
        try:
            buf = c_void_p()
            rc = _rgrpc_call_recv(p, byref(buf))
            while rc == _BUSY:
                # initial_metadata() is reading the headers on another thread
                time.sleep(0.0005)
                rc = _rgrpc_call_recv(p, byref(buf))
            if rc == _OK:
                return take_buffer(buf.value)
            cbs = _finish_stream(state, p, rc)
            state.eos = True
        finally:
            h.release()
        h.close()
    run_callbacks(cbs)
    return None


def _next_prefetched(state):
    cond = state.cond
    with cond:
        while True:
            if state.cancelled:
                return None
            q = state.queue
            if q:
                data = q.popleft()
                state.queued_bytes -= len(data)
                cond.notify_all()
                return data
            if state.eos:
                pending = state.pending if state.code is None else None
                break
            cond.wait()
    if pending is not None:
        run_callbacks(state.complete(*pending))
    return None


def _reader_job(state, request):
    """Worker-thread reader of a response stream (calls made on the main
    thread). Sends the unary request first, when there is one."""
    h = state.handle
    cond = state.cond
    p = h.acquire()
    if p is None:
        with cond:
            state.eos = True
            cond.notify_all()
        return
    cbs = None
    rc = Result.END_OF_STREAM
    try:
        if request is not None:
            _rgrpc_call_send(p, request, len(request), SEND_LAST)
        # Headers first (this thread drives them; the first message, if it
        # came along, is kept for recv), so initial_metadata() never waits
        # for a message.
        md = c_void_p()
        if lib.rgrpc_call_initial_metadata(p, byref(md)) == _OK:
            initial = read_metadata(md.value)
            with cond:
                if state.initial_md is None:
                    state.initial_md = initial
                cond.notify_all()
        buf = c_void_p()
        q = state.queue
        while True:
            with cond:
                while (len(q) >= _PREFETCH_MESSAGES or state.queued_bytes >= _PREFETCH_BYTES) \
                        and not state.abandoned and not state.cancelled:
                    cond.wait()
                if state.abandoned or state.cancelled:
                    break
            rc = _rgrpc_call_recv(p, byref(buf))
            if rc != _OK:
                break
            data = take_buffer(buf.value)
            with cond:
                q.append(data)
                state.queued_bytes += len(data)
                cond.notify_all()
        cbs = _finish_stream(state, p, rc if rc != _OK else Result.END_OF_STREAM)
    finally:
        h.release()
        with cond:
            state.eos = True
            cond.notify_all()
        h.close()
    run_callbacks(cbs)


# ---------------------------------------------------------------------------
# Feeding request iterators


def sender_job(state, request_iterator, serializer):
    """Worker-thread consumer of a request iterator."""
    h = state.handle
    p = h.acquire()
    if p is None:
        return
    try:
        try:
            for request in request_iterator:
                if state.code is not None:
                    return
                try:
                    data = serialize(serializer, request)
                except Exception:
                    _LOGGER.exception("Exception serializing message!")
                    abort(state, StatusCode.INTERNAL, "Exception serializing request!")
                    return
                if _rgrpc_call_send(p, data, len(data), 0) != _OK:
                    return  # the call ended; its status says why
        except Exception:
            _LOGGER.exception("Exception iterating requests!")
            abort(state, StatusCode.UNKNOWN, "Exception iterating requests!")
            return
        lib.rgrpc_call_close_send(p)
    finally:
        h.release()


# ---------------------------------------------------------------------------
# The multi-callables


class _UnaryStreamMultiCallable(MultiCallable, _api.UnaryStreamMultiCallable):
    __slots__ = ()

    def __call__(self, request, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        if _runtime._deferred:
            drain_deferred()
        try:
            data = serialize_or_fail(self._serializer, request)
            opts, deadline = self._options(timeout, metadata, credentials, wait_for_ready,
                                           compression)
            h = self._start(opts)
        except LocalFailure as e:
            raise_local(e)
        state = CallState(deadline, self._deserializer)
        state.handle = h
        if on_main_thread():
            # read ahead on a worker (it learns the status itself)
            state.prefetch = True
            state.queue = collections.deque()
            workers.submit(_reader_job, state, data)
        else:
            state.recv_lock = threading.Lock()
            _watch_done(state, h)
            p = h.acquire()
            if p is not None:
                try:
                    _rgrpc_call_send(p, data, len(data), SEND_LAST)
                finally:
                    h.release()
        return _StreamCall(state)


def _watch_done(state, h):
    """Registers the done callback that completes ``state`` (Future / Call
    methods and add_callback work without anyone reading the stream)."""
    key = register(state)
    p = h.acquire()
    try:
        rc = lib.rgrpc_call_on_done(p, DONE_TRAMPOLINE, key)
    finally:
        h.release()
    if rc != _OK:
        unregister(key)  # already ended: the reader's finish gives the status
    return rc


class _StreamStreamMultiCallable(MultiCallable, _api.StreamStreamMultiCallable):
    __slots__ = ()

    def __call__(self, request_iterator, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        if _runtime._deferred:
            drain_deferred()
        try:
            opts, deadline = self._options(timeout, metadata, credentials, wait_for_ready,
                                           compression)
            h = self._start(opts)
        except LocalFailure as e:
            raise_local(e)
        state = CallState(deadline, self._deserializer)
        state.handle = h
        if on_main_thread():
            state.prefetch = True
            state.queue = collections.deque()
        else:
            state.recv_lock = threading.Lock()
            _watch_done(state, h)
        workers.submit(sender_job, state, request_iterator, self._serializer)
        if state.prefetch:
            workers.submit(_reader_job, state, None)
        return _StreamCall(state)

