"""One RPC: its shared state and the object grpcio shows for it.

* ``CallState``: everything known about one RPC (status code, details,
  initial and trailing metadata, the response, cancellation, the deadline,
  the ``Handle`` of its ``rgrpc_call``, response-stream bookkeeping) and its
  done callbacks; shared by the user-facing object, worker threads and
  library callbacks, guarded by its condition. The outcome is set once
  (``complete``); callbacks run outside every lock.
* ``CallState.handle`` is the owner's reference to the call: set to None
  (``release``) when the user-facing object is collected or the outcome
  has been read, so the call is freed once the threads still using it
  (each holding the Handle in a local variable) are done. Code that uses
  the call reads ``state.handle`` once into a local and checks it for None.
* ``_Rendezvous``: an RPC as grpcio shows it, a ``Call``, a ``Future`` and an
  ``RpcError`` at once, over a CallState; ``_InactiveRpcError`` (raised by
  blocking calls) and ``_CompletedCall`` (returned by ``with_call``). The
  unary future and the response stream subclass it in ``_unary`` and
  ``_streams``.
* Waiting on the main thread so that Ctrl-C gets through.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
import threading
import time
from ctypes import string_at

from . import _api
from ._api import StatusCode
from ._invocation import LocalFailure, deserialize
from ._results import EMPTY, fetch_initial_metadata, status_info
from ._lib import lib
from ._runtime import workers

_LOGGER = logging.getLogger("rgrpc")

_MAIN = threading.main_thread()


# ---------------------------------------------------------------------------
# Call state


# rgrpc.keep_call_stats: read each call's statistics before its native
# handle is let go (off: no cost).
_keep_stats = [False]


class _CallStats(ctypes.Structure):
    """``rgrpc_call_stats`` (include/rgrpc.h), in its order."""

    _fields_ = [
        ("attempts", ctypes.c_uint32),
        ("ended", ctypes.c_uint32),
        ("messages_sent", ctypes.c_uint64),
        ("bytes_sent", ctypes.c_uint64),
        ("wire_bytes_sent", ctypes.c_uint64),
        ("messages_received", ctypes.c_uint64),
        ("bytes_received", ctypes.c_uint64),
        ("wire_bytes_received", ctypes.c_uint64),
        ("pick_wait_us", ctypes.c_int64),
        ("first_response_us", ctypes.c_int64),
        ("total_us", ctypes.c_int64),
        ("retries", ctypes.c_uint32),
        ("transparent_retries", ctypes.c_uint32),
    ]


def read_stats(handle):
    """The call's ``rgrpc_call_get_stats`` as a dict (times in seconds, None
    when not reached); ``handle`` is a Handle or a raw ``rgrpc_call *``."""
    out = _CallStats()
    ptr = handle if isinstance(handle, int) else handle.ptr
    lib.rgrpc_call_get_stats(ptr, ctypes.byref(out), ctypes.sizeof(out))
    d = {name: getattr(out, name) for name, _ in _CallStats._fields_}
    d["ended"] = bool(d["ended"])
    for k in ("pick_wait_us", "first_response_us", "total_us"):
        v = d.pop(k)
        d[k[:-3]] = None if v < 0 else v / 1e6
    return d


class CallState(object):
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
        # rgrpc.call_stats after the end (kept when rgrpc.keep_call_stats)
        "stats",
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
        self.stats = None

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

    def release(self):
        """The owner lets go of the call (freed when no thread uses it)."""
        h = self.handle
        if h is not None and _keep_stats[0] and self.stats is None:
            self.stats = read_stats(h)
        self.handle = None

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
        code, details, trailing = status_info(st)
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
                    response = deserialize(self.deserializer, self.message)
                except Exception:
                    _LOGGER.exception("Exception deserializing response!")
                    code, details = StatusCode.INTERNAL, "Exception deserializing response!"
        self.message = None
        run_callbacks(self.complete(code, details, trailing, response))

    def _native_message(self, data, length):
        if self.message is None:
            self.message = string_at(data, length) if length else b""


def run_callbacks(cbs):
    """Runs the callbacks ``complete`` returned (None: nothing to run)."""
    if not cbs:
        return
    for cb in cbs:
        try:
            cb()
        except Exception:
            _LOGGER.exception("Exception calling RPC callback")


def abort(state, code, details):
    """Ends the RPC locally with the given status and cancels it."""
    cbs = state.complete(code, details, EMPTY)
    h = state.handle
    if h is not None:
        h.cancel()
    run_callbacks(cbs)


# ---------------------------------------------------------------------------
# The user-facing call object


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
        cbs = st.complete(StatusCode.CANCELLED, details, EMPTY, cancelled=True)
        if cbs is None:
            return False
        h = st.handle
        if h is not None:
            h.cancel()
        run_callbacks(cbs)
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
                    st.initial_md = EMPTY
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
            md = call_interruptibly(functools.partial(fetch_initial_metadata, h), h.cancel)
        if md is None:
            st.wait_done()
            md = st.initial_md if st.initial_md is not None else EMPTY
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
        if st.code is StatusCode.OK:
            return ""  # as grpcio (its unit tests check it)
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


def inactive(code, details, initial=EMPTY, trailing=EMPTY, stats=None):
    """The error a blocking call raises for an RPC that already ended."""
    st = CallState(None)
    st.stats = stats
    st.code, st.details, st.initial_md, st.trailing_md = code, details, initial, trailing
    st.callbacks = None
    return _InactiveRpcError(st)


def failed_state(exc):
    """For a LocalFailure found while starting a call that grpcio would
    return rather than raise (``future()``, response streams: grpcio raises
    only for a request that does not serialize): the state of a call that
    already ended with it, to wrap in that call's class. Other exceptions
    are raised."""
    if not isinstance(exc, LocalFailure):
        raise exc
    st = CallState(None)
    st.code, st.details, st.initial_md, st.trailing_md = exc.code, exc.details, EMPTY, EMPTY
    st.callbacks = None
    st.eos = True
    st.recv_lock = threading.Lock()
    return st


def raise_local(exc):
    """Raises ``exc``; a LocalFailure as the RpcError grpcio raises."""
    if isinstance(exc, LocalFailure):
        raise inactive(exc.code, exc.details) from None
    raise exc


# ---------------------------------------------------------------------------
# Waiting on the main thread


def on_main_thread() -> bool:
    return threading.current_thread() is _MAIN


def call_interruptibly(fn, on_interrupt):
    """Runs a blocking C operation; on the main thread it runs on a worker
    while the main thread waits on an Event, so Ctrl-C gets through (then
    ``on_interrupt`` cancels the call)."""
    if not on_main_thread():
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
