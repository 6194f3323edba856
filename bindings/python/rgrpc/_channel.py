"""Channels, multi-callables and the call objects they return.

How each pattern maps onto the C API (``include/rgrpc.h``). Ctrl-C only
interrupts the main thread, and never a thread blocked inside a C function,
so the main thread only ever waits on things Python can interrupt:

* unary-unary, blocking, worker thread: ``rgrpc_call_start`` + ``send`` +
  ``recv`` + ``finish`` on the calling thread (no hand-off).
* unary-unary, blocking, main thread: ``rgrpc_call_unary_async`` without
  a callback; the main thread waits in ``rgrpc_call_wait`` slices (GIL
  released, doing the call's I/O itself; Ctrl-C seen between slices), then
  takes the status (``finish``) and the response (``recv``).
* unary-unary, future: ``rgrpc_call_unary_async`` with a callback that
  completes the future on a library thread.
* stream-unary: ``rgrpc_call_start``; the request iterator is consumed on a
  worker thread (``send`` / ``close_send``); the response comes in push mode
  (``rgrpc_call_on_message`` + ``rgrpc_call_on_done``), so blocking waits are
  on a Python condition (interruptible) and futures need no extra thread.
* unary-stream / stream-stream on a worker thread: ``rgrpc_call_start`` +
  ``rgrpc_call_on_done`` (done callbacks and ``Future`` methods work without
  reading); the iterating thread calls ``rgrpc_call_recv`` directly.
* unary-stream / stream-stream on the main thread: a worker thread reads
  ahead into a bounded queue; the main thread waits on a Python condition.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
import sys
import threading
import time
import warnings
from ctypes import byref, c_char_p, c_size_t, c_void_p, string_at

from . import _api
from . import _runtime
from ._api import STATUS_CODES_BY_NUMBER, StatusCode
from ._lib import HAS, SEND_LAST, UNARY_DONE_CB, Result, lib, result_name, result_str
from ._runtime import (
    DONE_TRAMPOLINE,
    MESSAGE_TRAMPOLINE,
    UNARY_TRAMPOLINE,
    Handle,
    drain_deferred,
    register,
    unregister,
    workers,
)

_LOGGER = logging.getLogger("rgrpc")

# How long one rgrpc_call_wait slice lasts: the longest delay before Ctrl-C
# is seen by a blocking unary call.
_SLICE_MS = 50
# Read-ahead bound of a response stream read by a worker thread.
_PREFETCH_MESSAGES = 32
_PREFETCH_BYTES = 4 << 20

_OK = Result.OK
_TIMEOUT = Result.TIMEOUT
_BUSY = Result.BUSY
_MAIN = threading.main_thread()

_rgrpc_call_wait = lib.rgrpc_call_wait
_rgrpc_call_recv = lib.rgrpc_call_recv
_rgrpc_call_finish = lib.rgrpc_call_finish
_rgrpc_call_free = lib.rgrpc_call_free
_rgrpc_call_send = lib.rgrpc_call_send
_rgrpc_buffer_data = lib.rgrpc_buffer_data
_rgrpc_buffer_len = lib.rgrpc_buffer_len
_rgrpc_buffer_free = lib.rgrpc_buffer_free
_rgrpc_status_get_code = lib.rgrpc_status_get_code
_rgrpc_status_free = lib.rgrpc_status_free
_rgrpc_call_unary_async = lib.rgrpc_call_unary_async
_rgrpc_call_options_free = lib.rgrpc_call_options_free

Metadatum = collections.namedtuple("Metadatum", ("key", "value"))
_EMPTY = ()


def _on_main_thread() -> bool:
    return threading.current_thread() is _MAIN


# ---------------------------------------------------------------------------
# Reading native results


def _read_metadata(md):
    """A C ``rgrpc_metadata *`` (borrowed) as a tuple of (key, value)."""
    if not md:
        return _EMPTY
    n = lib.rgrpc_metadata_len(md)
    if not n:
        return _EMPTY
    out = []
    k = c_char_p()
    v = c_void_p()
    vl = c_size_t()
    for i in range(n):
        if lib.rgrpc_metadata_get(md, i, byref(k), byref(v), byref(vl)) != _OK:
            break
        key = k.value.decode("ascii", "replace")
        raw = string_at(v.value, vl.value) if vl.value else b""
        if key.endswith("-bin"):
            out.append(Metadatum(key, raw))
        else:
            out.append(Metadatum(key, raw.decode("utf-8", "replace")))
    return tuple(out)


def _status_info(st):
    """(StatusCode, details, trailing metadata) of a C status (borrowed)."""
    code = STATUS_CODES_BY_NUMBER.get(_rgrpc_status_get_code(st), StatusCode.UNKNOWN)
    raw = lib.rgrpc_status_details(st)
    details = raw.decode("utf-8", "replace") if raw else ""
    return code, details, _read_metadata(lib.rgrpc_status_trailing_metadata(st))


def _take_buffer(buf):
    n = _rgrpc_buffer_len(buf)
    data = string_at(_rgrpc_buffer_data(buf), n) if n else b""
    _rgrpc_buffer_free(buf)
    return data


def _initial_metadata_of(p):
    """Initial metadata of a call that has ended (does not block then)."""
    md = c_void_p()
    if lib.rgrpc_call_initial_metadata(p, byref(md)) == _OK:
        return _read_metadata(md.value)
    return _EMPTY


# ---------------------------------------------------------------------------
# Local failures, options


class _LocalFailure(Exception):
    """An RPC that fails before it reaches the library (bad metadata, a
    serializer error, a credentials plugin error)."""

    def __init__(self, code, details):
        Exception.__init__(self, details)
        self.code = code
        self.details = details


_warned = set()


def _warn_once(key, message):
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def _timeout_ms(timeout):
    if timeout <= 0:
        return 0
    return min(int(math.ceil(timeout * 1000.0)), 1 << 62)


def _encode_md_value(key, value):
    if key.endswith("-bin"):
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(
                'Binary metadata key="%s" expected bytes, got %s' % (key, type(value))
            )
        return bytes(value)
    if isinstance(value, str):
        try:
            return value.encode("ascii")
        except UnicodeEncodeError:
            raise _LocalFailure(
                StatusCode.INTERNAL,
                "Invalid metadata: the value of %r is not printable ASCII" % key,
            ) from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError("metadata value of %r must be str or bytes, got %s" % (key, type(value)))


def _build_call_options(timeout, metadata, wait_for_ready, compression):
    """A new ``rgrpc_call_options *`` (owned by the caller) or None."""
    opts = lib.rgrpc_call_options_new()
    if not opts:
        raise MemoryError("rgrpc_call_options_new failed")
    try:
        if timeout is not None:
            lib.rgrpc_call_options_set_timeout_ms(opts, _timeout_ms(timeout))
        if metadata:
            add = lib.rgrpc_call_options_add_metadata
            for item in metadata:
                key, value = item
                if isinstance(key, bytes):
                    key = key.decode("ascii", "replace")
                vb = _encode_md_value(key, value)
                rc = add(opts, key.encode("utf-8"), vb, len(vb))
                if rc != _OK:
                    why = lib.rgrpc_call_options_last_error(opts) or b""
                    raise _LocalFailure(
                        StatusCode.INTERNAL,
                        "Invalid metadata: %s" % (why.decode("utf-8", "replace") or result_str(rc)),
                    )
        if wait_for_ready is not None:
            lib.rgrpc_call_options_set_wait_for_ready(opts, bool(wait_for_ready))
        if compression is not None:
            if HAS.compression:
                rc = lib.rgrpc_call_options_set_compression(opts, int(compression))
                if rc != _OK:
                    raise ValueError("unsupported compression %r" % (compression,))
            elif int(compression) != 0:
                _warn_once(
                    "call-compression",
                    "rgrpc: this librgrpc has no compression; messages are sent uncompressed",
                )
    except BaseException:
        _rgrpc_call_options_free(opts)
        raise
    return opts


def _start_error(rc):
    if rc == Result.CHANNEL_CLOSED:
        return ValueError("Cannot invoke RPC: Channel closed!")
    if rc == Result.INVALID_METHOD:
        return _LocalFailure(StatusCode.INTERNAL, "Invalid method: %s" % result_str(rc))
    return _LocalFailure(
        StatusCode.INTERNAL, "rgrpc: %s (%s)" % (result_str(rc), result_name(rc))
    )


# ---------------------------------------------------------------------------
# Call state


class _State(object):
    """Everything known about one RPC; shared by the user-facing object,
    worker threads and library callbacks."""

    __slots__ = (
        "cond", "code", "details", "initial_md", "trailing_md", "response",
        "cancelled", "callbacks", "deadline", "handle", "deserializer",
        # response streams
        "queue", "queued_bytes", "eos", "abandoned", "prefetch", "recv_lock",
        # push-mode unary response
        "message", "unary_response",
        # the library drives this call: read its headers only once it ended
        "md_after_done",
        # read-ahead streams: an OK status waiting for the consumer to drain
        "pending",
        "__weakref__",
    )

    def __init__(self, deadline, deserializer=None):
        self.cond = threading.Condition()
        self.code = None
        self.details = None
        self.initial_md = None
        self.trailing_md = None
        self.response = None
        self.cancelled = False
        self.callbacks = []
        self.deadline = deadline
        self.handle = None
        self.deserializer = deserializer
        self.queue = None
        self.queued_bytes = 0
        self.eos = False
        self.abandoned = False
        self.prefetch = False
        self.recv_lock = None
        self.message = None
        self.unary_response = False
        self.md_after_done = False
        self.pending = None

    # -- completion ---------------------------------------------------------

    def complete(self, code, details, trailing, response=None, cancelled=False):
        """Sets the outcome once; returns the callbacks to run (outside any
        lock), or None if the outcome was already set."""
        with self.cond:
            if self.code is not None:
                return None
            self.code = code
            self.details = details
            self.trailing_md = trailing
            self.response = response
            self.cancelled = cancelled
            cbs, self.callbacks = self.callbacks, None
            self.cond.notify_all()
        return cbs

    def wait_done(self, timeout=None) -> bool:
        with self.cond:
            if self.code is not None:
                return True
            if timeout is None:
                while self.code is None:
                    self.cond.wait()
                return True
            end = time.monotonic() + timeout
            while self.code is None:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    # -- library callbacks (run on library threads) -------------------------

    def defer_ok(self, code, details, trailing):
        """Read-ahead streams end OK only when the consumer has taken every
        message (as with grpcio, where the status follows the messages);
        errors end them at once."""
        with self.cond:
            if self.code is None and self.pending is None:
                self.pending = (code, details, trailing)
            self.cond.notify_all()

    def _native_done(self, st):
        code, details, trailing = _status_info(st)
        if self.prefetch and code is StatusCode.OK:
            self.defer_ok(code, details, trailing)
            return
        response = None
        if self.unary_response and code is StatusCode.OK:
            # push-mode unary response (stream-unary): the message came first
            if self.message is None:
                code = StatusCode.UNIMPLEMENTED
                details = "received no response message for a call that expects one"
            else:
                try:
                    response = _deserialize(self.deserializer, self.message)
                except Exception:
                    _LOGGER.exception("Exception deserializing response!")
                    code, details = StatusCode.INTERNAL, "Exception deserializing response!"
        self.message = None
        _run_callbacks(self.complete(code, details, trailing, response))

    def _native_message(self, data, length):
        if self.message is None:
            self.message = string_at(data, length) if length else b""


def _run_callbacks(cbs):
    if not cbs:
        return
    for cb in cbs:
        try:
            cb()
        except Exception:
            _LOGGER.exception("Exception calling RPC callback")


def _abort(state, code, details):
    """Ends the RPC locally with the given status and cancels it."""
    cbs = state.complete(code, details, _EMPTY)
    if state.handle is not None:
        state.handle.cancel()
    _run_callbacks(cbs)


def _serialize(serializer, message):
    if serializer is None:
        return message if isinstance(message, bytes) else bytes(message)
    return serializer(message)


def _deserialize(deserializer, data):
    if deserializer is None:
        return data
    return deserializer(data)


def _serialize_or_fail(serializer, request):
    try:
        data = _serialize(serializer, request)
    except Exception:
        _LOGGER.exception("Exception serializing message!")
        raise _LocalFailure(StatusCode.INTERNAL, "Exception serializing request!") from None
    if not isinstance(data, bytes):
        try:
            data = bytes(data)
        except Exception:
            raise _LocalFailure(StatusCode.INTERNAL, "Exception serializing request!") from None
    return data


# ---------------------------------------------------------------------------
# The call objects


class _Rendezvous(_api.RpcError, _api.Call, _api.Future):
    """An RPC as grpcio shows it: a Call, a Future and an RpcError at once."""

    def __init__(self, state):  # pylint: disable=super-init-not-called
        self._state = state

    # RpcContext
    def is_active(self):
        return self._state.code is None

    def time_remaining(self):
        d = self._state.deadline
        if d is None:
            return None
        return max(d - time.monotonic(), 0.0)

    def cancel(self):
        return self._cancel("Locally cancelled by application!")

    def _cancel(self, details):
        st = self._state
        cbs = st.complete(StatusCode.CANCELLED, details, _EMPTY, cancelled=True)
        if cbs is None:
            return False
        if st.handle is not None:
            st.handle.cancel()
        _run_callbacks(cbs)
        return True

    def add_callback(self, callback):
        st = self._state
        with st.cond:
            if st.code is None:
                st.callbacks.append(callback)
                return True
        return False

    # Call
    def initial_metadata(self):
        st = self._state
        md = st.initial_md
        if md is not None:
            return md
        if st.prefetch:
            # The reader thread publishes it as soon as the headers arrive.
            with st.cond:
                while st.initial_md is None and not st.eos:
                    st.cond.wait()
                if st.initial_md is None:
                    st.initial_md = _EMPTY
                return st.initial_md
        h = st.handle
        if st.md_after_done:
            # Unary futures and stream-unary calls are driven by the library
            # (rgrpc_call_unary_async / push mode); reading their headers
            # from here would compete with that reader, so wait for the end
            # (headers and the single response arrive together anyway).
            st.wait_done()
            h = st.handle
        if h is not None:
            md = _call_interruptibly(functools.partial(_fetch_initial_metadata, h), h.cancel)
        if md is None:
            st.wait_done()
            md = st.initial_md if st.initial_md is not None else _EMPTY
        with st.cond:
            if st.initial_md is None:
                st.initial_md = md
            return st.initial_md

    def trailing_metadata(self):
        self._state.wait_done()
        return self._state.trailing_md

    def code(self):
        self._state.wait_done()
        return self._state.code

    def details(self):
        self._state.wait_done()
        return self._state.details

    def debug_error_string(self):
        self._state.wait_done()
        st = self._state
        return "%s:%s" % (st.code.name, st.details)

    # Future
    def cancelled(self):
        return self._state.cancelled

    def running(self):
        return self._state.code is None

    def done(self):
        return self._state.code is not None

    def _failure(self, timeout):
        """Waits for the outcome: None when OK, else this call as the error;
        raises FutureTimeoutError / FutureCancelledError."""
        st = self._state
        if not st.wait_done(timeout):
            raise _api.FutureTimeoutError()
        if st.code is StatusCode.OK:
            return None
        if st.cancelled:
            raise _api.FutureCancelledError()
        return self

    def result(self, timeout=None):
        err = self._failure(timeout)
        if err is not None:
            raise err
        return self._state.response

    def exception(self, timeout=None):
        return self._failure(timeout)

    def traceback(self, timeout=None):
        if self._failure(timeout) is None:
            return None
        try:
            raise self
        except _api.RpcError:
            return sys.exc_info()[2]

    def add_done_callback(self, fn):
        st = self._state
        with st.cond:
            if st.code is None:
                st.callbacks.append(functools.partial(fn, self))
                return
        fn(self)

    # Display
    def __repr__(self):
        st = self._state
        if st.code is None:
            return "<%s of in-flight RPC>" % type(self).__name__
        return '<%s of RPC that terminated with:\n\tstatus = %s\n\tdetails = "%s"\n\tdebug_error_string = "%s">' % (
            type(self).__name__, st.code, st.details, "%s:%s" % (st.code.name, st.details))

    __str__ = __repr__


class _InactiveRpcError(_Rendezvous):
    """A failed RPC, raised by blocking calls."""


class _CompletedCall(_Rendezvous):
    """The Call returned with the response by ``with_call``."""


class _UnaryFuture(_Rendezvous):
    """Returned by ``future()``: completes on a library thread."""

    def __del__(self):
        try:
            st = self._state
            if st.code is None:
                self._cancel("Cancelled upon garbage collection!")
            if st.handle is not None:
                st.handle.close(defer=True)
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


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
            return _deserialize(st.deserializer, data)
        except Exception:
            _LOGGER.exception("Exception deserializing response!")
            _abort(st, StatusCode.INTERNAL, "Exception deserializing response!")
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


def _fetch_initial_metadata(h):
    p = h.acquire()
    if p is None:
        return None
    try:
        md = c_void_p()
        if lib.rgrpc_call_initial_metadata(p, byref(md)) != _OK:
            return None
        return _read_metadata(md.value)
    finally:
        h.release()


def _call_interruptibly(fn, on_interrupt):
    """Runs a blocking C operation; on the main thread it runs on a worker
    while the main thread waits on an Event, so Ctrl-C gets through (then
    ``on_interrupt`` cancels the call)."""
    if not _on_main_thread():
        return fn()
    done = threading.Event()
    box = []

    def job():
        try:
            box.append((True, fn()))
        except BaseException as e:  # pragma: no cover - passed on below
            box.append((False, e))
        finally:
            done.set()

    workers.submit(job)
    try:
        done.wait()
    except BaseException:
        on_interrupt()
        raise
    ok, value = box[0]
    if ok:
        return value
    raise value


# -- reading response streams -------------------------------------------------


def _finish_stream(state, p, rc=Result.END_OF_STREAM):
    """After END_OF_STREAM: the status and the initial metadata."""
    if rc != Result.END_OF_STREAM:
        # Not a normal end (should not happen): do not wait for a status.
        lib.rgrpc_call_cancel(p)
        return state.complete(StatusCode.INTERNAL, "rgrpc: receiving failed: %s (%s)"
                              % (result_str(rc), result_name(rc)), _EMPTY)
    st = c_void_p()
    _rgrpc_call_finish(p, byref(st))
    if st.value:
        code, details, trailing = _status_info(st.value)
        _rgrpc_status_free(st.value)
    else:  # pragma: no cover - finish always gives a status
        code, details, trailing = StatusCode.INTERNAL, "no status", _EMPTY
    md = _initial_metadata_of(p)
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
                return _take_buffer(buf.value)
            cbs = _finish_stream(state, p, rc)
            state.eos = True
        finally:
            h.release()
        h.close()
    _run_callbacks(cbs)
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
        _run_callbacks(state.complete(*pending))
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
            initial = _read_metadata(md.value)
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
            data = _take_buffer(buf.value)
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
    _run_callbacks(cbs)


def _sender_job(state, request_iterator, serializer):
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
                    data = _serialize(serializer, request)
                except Exception:
                    _LOGGER.exception("Exception serializing message!")
                    _abort(state, StatusCode.INTERNAL, "Exception serializing request!")
                    return
                if _rgrpc_call_send(p, data, len(data), 0) != _OK:
                    return  # the call ended; its status says why
        except Exception:
            _LOGGER.exception("Exception iterating requests!")
            _abort(state, StatusCode.UNKNOWN, "Exception iterating requests!")
            return
        lib.rgrpc_call_close_send(p)
    finally:
        h.release()


# ---------------------------------------------------------------------------
# Multi-callables


class _MultiCallable(object):
    __slots__ = ("_channel", "_method", "_method_str", "_serializer", "_deserializer")

    def __init__(self, channel, method, serializer, deserializer):
        self._channel = channel
        if isinstance(method, bytes):
            self._method = method
            self._method_str = method.decode("utf-8", "replace")
        else:
            self._method_str = method
            self._method = method.encode("utf-8")
        self._serializer = serializer
        self._deserializer = deserializer

    def _options(self, timeout, metadata, credentials, wait_for_ready, compression):
        """(options pointer or None, deadline) for one call."""
        ch = self._channel
        if credentials is not None or ch._call_credentials is not None:
            from ._credentials import apply_call_credentials

            metadata = apply_call_credentials(ch, self._method_str, credentials, metadata, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        if timeout is None and not metadata and wait_for_ready is None and compression is None:
            return None, deadline
        return _build_call_options(timeout, metadata, wait_for_ready, compression), deadline

    def _start(self, opts):
        """rgrpc_call_start; frees opts; returns a Handle."""
        ch = self._channel
        call = c_void_p()
        try:
            rc = lib.rgrpc_call_start(ch._native(), self._method, opts, byref(call))
        finally:
            if opts:
                _rgrpc_call_options_free(opts)
        if rc != _OK:
            raise _start_error(rc)
        return Handle(call.value)


def _inactive(code, details, initial=_EMPTY, trailing=_EMPTY):
    st = _State(None)
    st.code, st.details, st.initial_md, st.trailing_md = code, details, initial, trailing
    st.callbacks = None
    return _InactiveRpcError(st)


def _raise_local(exc):
    if isinstance(exc, _LocalFailure):
        raise _inactive(exc.code, exc.details) from None
    raise exc


class _UnaryUnaryMultiCallable(_MultiCallable, _api.UnaryUnaryMultiCallable):
    __slots__ = ()

    def __call__(self, request, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        return self._blocking(request, timeout, metadata, credentials, wait_for_ready,
                              compression, False)

    def with_call(self, request, timeout=None, metadata=None, credentials=None,
                  wait_for_ready=None, compression=None):
        return self._blocking(request, timeout, metadata, credentials, wait_for_ready,
                              compression, True)

    def _blocking(self, request, timeout, metadata, credentials, wait_for_ready, compression,
                  with_call):
        if _runtime._deferred:
            drain_deferred()
        try:
            data = _serialize_or_fail(self._serializer, request)
            opts, deadline = self._options(timeout, metadata, credentials, wait_for_ready,
                                           compression)
        except _LocalFailure as e:
            _raise_local(e)
        if threading.current_thread() is not _MAIN:
            # Ctrl-C never lands here: drive the call on this thread (no
            # hand-off to a library thread and back).
            return self._blocking_direct(data, opts, deadline, with_call)
        # Main thread: the call runs without a callback (no hop to a library
        # thread); this thread waits in rgrpc_call_wait with the GIL released
        # — doing the call's I/O itself — in slices so that Ctrl-C is seen,
        # then takes the status and the response.
        sink = _BlockingSink()
        call = c_void_p()
        try:
            rc = _rgrpc_call_unary_async(self._channel._native(), self._method, opts, data,
                                         len(data), UNARY_DONE_CB(), None, byref(call))
        finally:
            if opts:
                _rgrpc_call_options_free(opts)
        if rc != _OK:
            _raise_local(_start_error(rc))
        p = call.value
        try:
            rc = _rgrpc_call_wait(p, _SLICE_MS)
            while rc == _TIMEOUT:
                rc = _rgrpc_call_wait(p, _SLICE_MS)
            st = c_void_p()
            _rgrpc_call_finish(p, byref(st))
            sink.code, sink.details, sink.trailing = _status_info(st.value)
            _rgrpc_status_free(st.value)
            if sink.code is StatusCode.OK:
                buf = c_void_p()
                if _rgrpc_call_recv(p, byref(buf)) == _OK:
                    sink.data = _take_buffer(buf.value)
            code = sink.code
            if code is StatusCode.OK and sink.data is None:
                sink.data = _recover_response(p)
                if sink.data is None:
                    code, sink.details = StatusCode.INTERNAL, _LOST
            if code is StatusCode.OK and not with_call:
                _rgrpc_call_free(p)
                p = None
                try:
                    return _deserialize(self._deserializer, sink.data)
                except Exception:
                    _LOGGER.exception("Exception deserializing response!")
                    raise _inactive(StatusCode.INTERNAL,
                                    "Exception deserializing response!") from None
            if code is None:
                code = _await_sink(sink, rc)
            initial = _initial_metadata_of(p)
        except BaseException:
            if p is not None:
                lib.rgrpc_call_cancel(p)
            raise
        finally:
            if p is not None:
                _rgrpc_call_free(p)
        trailing = sink.trailing
        if code is not StatusCode.OK:
            raise _inactive(code, sink.details, initial, trailing)
        state = _State(deadline)
        state.initial_md = initial
        state.trailing_md = trailing
        state.details = sink.details
        state.callbacks = None
        try:
            state.response = _deserialize(self._deserializer, sink.data)
        except Exception:
            _LOGGER.exception("Exception deserializing response!")
            raise _inactive(StatusCode.INTERNAL, "Exception deserializing response!",
                            initial, trailing) from None
        state.code = StatusCode.OK
        return state.response, _CompletedCall(state)

    def _blocking_direct(self, data, opts, deadline, with_call):
        call = c_void_p()
        try:
            rc = lib.rgrpc_call_start(self._channel._native(), self._method, opts, byref(call))
        finally:
            if opts:
                _rgrpc_call_options_free(opts)
        if rc != _OK:
            _raise_local(_start_error(rc))
        p = call.value
        st = c_void_p()
        try:
            _rgrpc_call_send(p, data, len(data), SEND_LAST)  # a failure shows in the status
            buf = c_void_p()
            response_bytes = None
            if _rgrpc_call_recv(p, byref(buf)) == _OK:
                response_bytes = _take_buffer(buf.value)
            _rgrpc_call_finish(p, byref(st))
            if _rgrpc_status_get_code(st.value) == 0 and response_bytes is not None \
                    and not with_call:
                _rgrpc_status_free(st.value)
                st = None
                _rgrpc_call_free(p)
                p = None
                try:
                    return _deserialize(self._deserializer, response_bytes)
                except Exception:
                    _LOGGER.exception("Exception deserializing response!")
                    raise _inactive(StatusCode.INTERNAL,
                                    "Exception deserializing response!") from None
            code, details, trailing = _status_info(st.value)
            initial = _initial_metadata_of(p)
        finally:
            if st is not None and st.value:
                _rgrpc_status_free(st.value)
            if p is not None:
                _rgrpc_call_free(p)
        if code is StatusCode.OK and response_bytes is None:
            code = StatusCode.UNIMPLEMENTED
            details = "received no response message for a call that expects one"
        if code is not StatusCode.OK:
            raise _inactive(code, details, initial, trailing)
        state = _State(deadline)
        state.initial_md, state.trailing_md, state.details = initial, trailing, details
        state.callbacks = None
        try:
            state.response = _deserialize(self._deserializer, response_bytes)
        except Exception:
            _LOGGER.exception("Exception deserializing response!")
            raise _inactive(StatusCode.INTERNAL, "Exception deserializing response!",
                            initial, trailing) from None
        state.code = StatusCode.OK
        return state.response, _CompletedCall(state)

    def future(self, request, timeout=None, metadata=None, credentials=None,
               wait_for_ready=None, compression=None):
        if _runtime._deferred:
            drain_deferred()
        try:
            data = _serialize_or_fail(self._serializer, request)
            opts, deadline = self._options(timeout, metadata, credentials, wait_for_ready,
                                           compression)
        except _LocalFailure as e:
            _raise_local(e)
        state = _State(deadline, self._deserializer)
        state.md_after_done = True
        sink = _UnarySink(state)
        key = register(sink)
        call = c_void_p()
        try:
            rc = _rgrpc_call_unary_async(self._channel._native(), self._method, opts, data,
                                         len(data), UNARY_TRAMPOLINE, key, byref(call))
        finally:
            if opts:
                _rgrpc_call_options_free(opts)
        if rc != _OK:
            unregister(key)
            _raise_local(_start_error(rc))
        state.handle = Handle(call.value)
        return _UnaryFuture(state)


_LOST = ("rgrpc: librgrpc lost the response of this call (a race in "
         "rgrpc_call_unary_async; see bindings/python/README.md)")


def _recover_response(p):
    """The unary-done callback said OK without a response: a librgrpc race
    (its driver ended the call between the response arriving and being
    recorded). The response is kept for rgrpc_call_recv microseconds later."""
    buf = c_void_p()
    end = time.monotonic() + 0.1
    while True:
        if _rgrpc_call_recv(p, byref(buf)) == _OK:
            return _take_buffer(buf.value)
        if time.monotonic() > end:
            return None
        time.sleep(0.0005)


def _await_sink(sink, rc):
    """rgrpc_call_wait returned but the unary-done callback has not run yet.
    The header promises it has; some librgrpc builds return early for calls
    that end at start (a deadline already passed). Wait for it a little."""
    end = time.monotonic() + 5.0
    while sink.code is None and time.monotonic() < end:
        time.sleep(0.0005)
    if sink.code is None:
        sink.code, sink.details, sink.trailing = (
            StatusCode.INTERNAL, "rgrpc: no completion (%s)" % result_name(rc), _EMPTY)
    return sink.code


class _BlockingSink(object):
    """Receives the unary-done callback of a blocking call."""

    __slots__ = ("code", "details", "trailing", "data")

    def __init__(self):
        self.code = None
        self.details = ""
        self.trailing = _EMPTY
        self.data = None

    def _native_unary_done(self, st, data, length):
        self.code, self.details, self.trailing = _status_info(st)
        if self.code is StatusCode.OK and data is not None:
            # (an empty message comes with a non-NULL pointer; OK with NULL
            # is the library losing the response, see _recover_response)
            self.data = string_at(data, length) if length else b""


class _UnarySink(object):
    """Receives the unary-done callback of a future."""

    __slots__ = ("state",)

    def __init__(self, state):
        self.state = state

    def _native_unary_done(self, st, data, length):
        state = self.state
        code, details, trailing = _status_info(st)
        response = None
        raw = None
        if code is StatusCode.OK:
            if data is not None:
                raw = string_at(data, length) if length else b""
            else:  # the library lost the response (see _recover_response)
                h = state.handle
                p = h.acquire() if h is not None else None
                if p is not None:
                    try:
                        raw = _recover_response(p)
                    finally:
                        h.release()
                if raw is None:
                    code, details = StatusCode.INTERNAL, _LOST
        if code is StatusCode.OK:
            try:
                response = _deserialize(state.deserializer, raw)
            except Exception:
                _LOGGER.exception("Exception deserializing response!")
                code, details = StatusCode.INTERNAL, "Exception deserializing response!"
        _run_callbacks(state.complete(code, details, trailing, response))


class _UnaryStreamMultiCallable(_MultiCallable, _api.UnaryStreamMultiCallable):
    __slots__ = ()

    def __call__(self, request, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        if _runtime._deferred:
            drain_deferred()
        try:
            data = _serialize_or_fail(self._serializer, request)
            opts, deadline = self._options(timeout, metadata, credentials, wait_for_ready,
                                           compression)
            h = self._start(opts)
        except _LocalFailure as e:
            _raise_local(e)
        state = _State(deadline, self._deserializer)
        state.handle = h
        if _on_main_thread():
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


class _StreamUnaryMultiCallable(_MultiCallable, _api.StreamUnaryMultiCallable):
    __slots__ = ()

    def _begin(self, request_iterator, timeout, metadata, credentials, wait_for_ready,
               compression):
        if _runtime._deferred:
            drain_deferred()
        try:
            opts, deadline = self._options(timeout, metadata, credentials, wait_for_ready,
                                           compression)
            h = self._start(opts)
        except _LocalFailure as e:
            _raise_local(e)
        state = _State(deadline, self._deserializer)
        state.handle = h
        state.unary_response = True
        state.md_after_done = True
        key = register(state)
        p = h.acquire()
        try:
            rc = lib.rgrpc_call_on_message(p, MESSAGE_TRAMPOLINE, key)
            if rc == _OK:
                rc = lib.rgrpc_call_on_done(p, DONE_TRAMPOLINE, key)
                if rc != _OK:
                    # Ended before we could watch it: read the status now.
                    unregister(key)
                    stp = c_void_p()
                    _rgrpc_call_finish(p, byref(stp))
                    if stp.value:
                        state._native_done(stp.value)
                        _rgrpc_status_free(stp.value)
            else:
                unregister(key)
                state.complete(StatusCode.INTERNAL, "rgrpc: %s" % result_str(rc), _EMPTY)
        finally:
            h.release()
        workers.submit(_sender_job, state, request_iterator, self._serializer)
        return state

    def _blocking(self, state):
        try:
            state.wait_done()
        except BaseException:
            _abort(state, StatusCode.CANCELLED, "Locally cancelled by application!")
            raise
        h = state.handle
        if state.initial_md is None:
            md = _fetch_initial_metadata(h) if h is not None else None
            with state.cond:
                if state.initial_md is None:
                    state.initial_md = md if md is not None else _EMPTY
        if h is not None:
            h.close()
        if state.code is not StatusCode.OK:
            raise _InactiveRpcError(state)
        return state.response

    def __call__(self, request_iterator, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        state = self._begin(request_iterator, timeout, metadata, credentials, wait_for_ready,
                            compression)
        return self._blocking(state)

    def with_call(self, request_iterator, timeout=None, metadata=None, credentials=None,
                  wait_for_ready=None, compression=None):
        state = self._begin(request_iterator, timeout, metadata, credentials, wait_for_ready,
                            compression)
        response = self._blocking(state)
        return response, _CompletedCall(state)

    def future(self, request_iterator, timeout=None, metadata=None, credentials=None,
               wait_for_ready=None, compression=None):
        state = self._begin(request_iterator, timeout, metadata, credentials, wait_for_ready,
                            compression)
        return _UnaryFuture(state)


class _StreamStreamMultiCallable(_MultiCallable, _api.StreamStreamMultiCallable):
    __slots__ = ()

    def __call__(self, request_iterator, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        if _runtime._deferred:
            drain_deferred()
        try:
            opts, deadline = self._options(timeout, metadata, credentials, wait_for_ready,
                                           compression)
            h = self._start(opts)
        except _LocalFailure as e:
            _raise_local(e)
        state = _State(deadline, self._deserializer)
        state.handle = h
        if _on_main_thread():
            state.prefetch = True
            state.queue = collections.deque()
        else:
            state.recv_lock = threading.Lock()
            _watch_done(state, h)
        workers.submit(_sender_job, state, request_iterator, self._serializer)
        if state.prefetch:
            workers.submit(_reader_job, state, None)
        return _StreamCall(state)


# ---------------------------------------------------------------------------
# Channel


def _encode_option_key(key):
    return key.encode("utf-8") if isinstance(key, str) else bytes(key)


def _apply_channel_options(opts, options):
    for item in options or ():
        key, value = item
        kb = _encode_option_key(key)
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int):
            if not -(1 << 63) <= value < (1 << 63):
                raise ValueError("channel option %r: %d is out of range" % (key, value))
            rc = lib.rgrpc_channel_options_set_int(opts, kb, value)
        elif isinstance(value, (str, bytes)):
            vb = value.encode("utf-8") if isinstance(value, str) else value
            rc = lib.rgrpc_channel_options_set_string(opts, kb, vb)
        else:
            _warn_once(("option", kb), "rgrpc: channel option %r ignored (value of type %s)"
                       % (key, type(value).__name__))
            continue
        if rc == _OK:
            continue
        why = (lib.rgrpc_channel_options_last_error(opts) or b"").decode("utf-8", "replace")
        if rc in (Result.UNKNOWN_OPTION, Result.UNSUPPORTED):
            _warn_once(("option", kb), "rgrpc: channel option %r ignored: %s"
                       % (key, why or result_str(rc)))
        else:
            raise ValueError("channel option %r: %s" % (key, why or result_str(rc)))


class Channel(_api.Channel):
    """A channel to one target (see :func:`rgrpc.insecure_channel`)."""

    def __init__(self, target, options=None, compression=None, credentials=None,
                 _native_creds=None, _local=False, _call_credentials=None):
        self._ptr = None
        self._closed = False
        self._target = target
        self._local = _local
        self._call_credentials = _call_credentials
        self._secure = _native_creds is not None or _local
        self._connectivity = None
        opts = lib.rgrpc_channel_options_new()
        try:
            _apply_channel_options(opts, options)
            if compression is not None:
                if HAS.compression:
                    rc = lib.rgrpc_channel_options_set_default_compression(opts, int(compression))
                    if rc != _OK:
                        raise ValueError("unsupported compression %r" % (compression,))
                elif int(compression) != 0:
                    _warn_once("channel-compression",
                               "rgrpc: this librgrpc has no compression; "
                               "messages are sent uncompressed")
            ch = c_void_p()
            err = c_void_p()
            tb = target.encode("utf-8") if isinstance(target, str) else bytes(target)
            rc = lib.rgrpc_channel_new(tb, _native_creds, opts, byref(ch), byref(err))
            if rc != _OK:
                msg = (lib.rgrpc_error_message(err.value) or b"").decode("utf-8", "replace")
                lib.rgrpc_error_free(err.value)
                raise ValueError("invalid target %r: %s" % (target, msg or result_str(rc)))
            self._ptr = ch.value
        finally:
            lib.rgrpc_channel_options_free(opts)
        _runtime.track_channel(self)

    def _native(self):
        p = self._ptr
        if p is None or self._closed:
            raise ValueError("Cannot invoke RPC: Channel closed!")
        return p

    # multi-callables
    def unary_unary(self, method, request_serializer=None, response_deserializer=None,
                    _registered_method=False):
        return _UnaryUnaryMultiCallable(self, method, request_serializer, response_deserializer)

    def unary_stream(self, method, request_serializer=None, response_deserializer=None,
                     _registered_method=False):
        return _UnaryStreamMultiCallable(self, method, request_serializer, response_deserializer)

    def stream_unary(self, method, request_serializer=None, response_deserializer=None,
                     _registered_method=False):
        return _StreamUnaryMultiCallable(self, method, request_serializer, response_deserializer)

    def stream_stream(self, method, request_serializer=None, response_deserializer=None,
                      _registered_method=False):
        return _StreamStreamMultiCallable(self, method, request_serializer,
                                          response_deserializer)

    # connectivity
    def subscribe(self, callback, try_to_connect=False):
        from ._connectivity import connectivity_of

        connectivity_of(self).subscribe(callback, try_to_connect)

    def unsubscribe(self, callback):
        from ._connectivity import connectivity_of

        connectivity_of(self).unsubscribe(callback)

    # lifetime
    def _close_native(self):
        p = self._ptr
        if p is not None:
            lib.rgrpc_channel_close(p)

    def close(self):
        """Ends every active RPC (CANCELLED) and refuses new ones."""
        if self._closed:
            return
        self._closed = True
        conn = self._connectivity
        if conn is not None:
            conn.shutdown()
        self._close_native()
        drain_deferred()

    def __del__(self):
        try:
            conn = self._connectivity
            if conn is not None:
                conn.shutdown()
            p, self._ptr = self._ptr, None
            if p is not None:
                lib.rgrpc_channel_free(p)
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __repr__(self):
        return "<rgrpc.Channel %s%s>" % (self._target, " (closed)" if self._closed else "")
