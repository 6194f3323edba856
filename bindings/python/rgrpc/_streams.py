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
from ._api import StatusCode
from ._call import (CallState, _Rendezvous, abort, failed_state, on_main_thread, raise_local,
                    run_callbacks)
from ._invocation import LocalFailure, MultiCallable, deserialize, serialize, serialize_or_fail
from ._lib import SEND_LAST, Result, call_error, failure_code, lib, result_name
from ._results import EMPTY, initial_metadata_of, read_metadata, status_info, take_buffer
from ._runtime import DONE_TRAMPOLINE, register, unregister, workers

_LOGGER = logging.getLogger("rgrpc")

# Read-ahead bound of a response stream read by a worker thread.
_PREFETCH_MESSAGES = 32
_PREFETCH_BYTES = 4 << 20

_OK = Result.OK
_BUSY = Result.BUSY
_CALL_ENDED = Result.CALL_ENDED

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
            # Freed now unless a worker thread is still in the call (then as
            # soon as it returns, which the cancel makes prompt).
            st.release()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def _finish_stream(state, h, rc=Result.END_OF_STREAM):
    """After END_OF_STREAM: the status and the initial metadata."""
    p = h.ptr
    if rc != Result.END_OF_STREAM:
        # Not a normal end (should not happen): do not wait for a status.
        why = call_error(p, rc)
        lib.rgrpc_call_cancel(p)
        return state.complete(failure_code(rc), "rgrpc: receiving failed: %s (%s)"
                              % (why, result_name(rc)), EMPTY)
    st = c_void_p()
    rc = _rgrpc_call_finish(p, byref(st))
    if st.value:
        code, details, trailing = status_info(st.value)
        _rgrpc_status_free(st.value)
    else:  # pragma: no cover - finish gives a status unless the library fails
        code, details, trailing = StatusCode.INTERNAL, "rgrpc: no status: %s (%s)" % (
            call_error(p, rc), result_name(rc)), EMPTY
    md = initial_metadata_of(p)
    with state.cond:
        if state.initial_md is None:
            state.initial_md = md
    if state.prefetch and code is StatusCode.OK:
        state.defer_ok(code, details, trailing)
        return None
    return state.complete(code, details, trailing)


def _next_direct(state):
    """Next message bytes (None at the end), read by the calling thread.
    ``recv_lock`` serialises threads iterating the same stream (the
    library has one receiver at a time) and guards ``eos``."""
    with state.recv_lock:
        if state.cancelled or state.eos:
            if state.code is None:
                state.wait_done()
            return None
        h = state.handle
        if h is None:  # pragma: no cover - released only after eos
            state.eos = True
            state.wait_done()
            return None
        p = h.ptr
        buf = c_void_p()
        rc = _rgrpc_call_recv(p, byref(buf))
        while rc == _BUSY:
            # initial_metadata() is reading the headers on another thread
            time.sleep(0.0005)
            rc = _rgrpc_call_recv(p, byref(buf))
        if rc == _OK:
            return take_buffer(buf.value)
        cbs = _finish_stream(state, h, rc)
        state.eos = True
        state.release()  # status and headers read: the call is not needed
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
    thread). Sends the unary request first, when there is one. Holds the
    call (``h``) until it has read the status: dropping the iterator cancels
    the call, so that comes promptly."""
    h = state.handle
    cond = state.cond
    if h is None:  # pragma: no cover - the iterator was collected already
        with cond:
            state.eos = True
            cond.notify_all()
        return
    p = h.ptr
    cbs = None
    rc = Result.END_OF_STREAM
    try:
        if request is not None:
            _send(state, h, request, SEND_LAST)
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
        cbs = _finish_stream(state, h, rc if rc != _OK else Result.END_OF_STREAM)
    finally:
        with cond:
            state.eos = True
            cond.notify_all()
        state.release()
    run_callbacks(cbs)


# ---------------------------------------------------------------------------
# Feeding request iterators


def _send(state, h, data, flags):
    """Sends one message on the call ``h``; False when the call is over.
    CALL_ENDED is the call's end, which its status explains; any other
    failure is the library's, and ends the call with its message."""
    rc = _rgrpc_call_send(h.ptr, data, len(data), flags)
    if rc == _OK:
        return True
    if rc != _CALL_ENDED:
        abort(state, failure_code(rc), "rgrpc: sending failed: %s (%s)"
              % (call_error(h.ptr, rc), result_name(rc)))
    return False


def _send_next(state, data):
    """One message of a request iterator. The call is held only for the
    send: while the iterator waits for its next item, dropping the call's
    object frees the call."""
    h = state.handle
    return h is not None and _send(state, h, data, 0)


def _close_send(state):
    h = state.handle
    if h is None:
        return
    rc = lib.rgrpc_call_close_send(h.ptr)
    if rc != _OK and rc != _CALL_ENDED:
        abort(state, failure_code(rc), "rgrpc: closing the request stream failed: %s (%s)"
              % (call_error(h.ptr, rc), result_name(rc)))


def sender_job(state, request_iterator, serializer):
    """Worker-thread consumer of a request iterator."""
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
            if not _send_next(state, data):
                return  # the call ended; its status says why
    except Exception:
        _LOGGER.exception("Exception iterating requests!")
        abort(state, StatusCode.UNKNOWN, "Exception iterating requests!")
        return
    _close_send(state)


# ---------------------------------------------------------------------------
# The multi-callables


class _UnaryStreamMultiCallable(MultiCallable, _api.UnaryStreamMultiCallable):
    __slots__ = ()

    def __call__(self, request, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        try:
            data = serialize_or_fail(self._serializer, request)
        except LocalFailure as e:
            raise_local(e)
        try:
            opts, deadline = self._options(timeout, metadata, credentials, wait_for_ready,
                                           compression)
            h = self._start(opts)
        except LocalFailure as e:
            return _StreamCall(failed_state(e))  # as grpcio: a failed stream
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
            _send(state, h, data, SEND_LAST)
        return _StreamCall(state)


def _watch_done(state, h):
    """Registers the done callback that completes ``state`` (Future / Call
    methods and add_callback work without anyone reading the stream)."""
    key = register(state)
    rc = lib.rgrpc_call_on_done(h.ptr, DONE_TRAMPOLINE, key)
    if rc != _OK:
        unregister(key)  # already ended: the reader's finish gives the status
    return rc


class _StreamStreamMultiCallable(MultiCallable, _api.StreamStreamMultiCallable):
    __slots__ = ()

    def __call__(self, request_iterator, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        try:
            opts, deadline = self._options(timeout, metadata, credentials, wait_for_ready,
                                           compression)
            h = self._start(opts)
        except LocalFailure as e:
            return _StreamCall(failed_state(e))  # as grpcio: a failed stream
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

