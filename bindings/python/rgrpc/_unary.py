"""Calls with a single response: unary-unary and stream-unary
multi-callables, and the future they return.

How the patterns map onto the C API (``include/rgrpc.h``). Ctrl-C only
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
  worker thread (``sender_job`` of ``_streams``); the response comes in push
  mode (``rgrpc_call_on_message`` + ``rgrpc_call_on_done``), so blocking
  waits are on a Python condition (interruptible) and futures need no extra
  thread.
"""

from __future__ import annotations

import logging
from ctypes import byref, c_void_p, string_at

from . import _api
from ._api import StatusCode
from ._call import (
    CallState,
    _CompletedCall,
    _InactiveRpcError,
    _Rendezvous,
    _keep_stats,
    abort,
    inactive,
    on_main_thread,
    failed_state,
    raise_local,
    read_stats,
    run_callbacks,
)
from ._invocation import LocalFailure, MultiCallable, deserialize, serialize_or_fail, start_error
from ._lib import SEND_LAST, UNARY_DONE_CB, Result, call_error, failure_code, lib, result_name
from ._results import EMPTY, fetch_initial_metadata, initial_metadata_of, status_info, take_buffer
from ._runtime import (
    DONE_TRAMPOLINE,
    MESSAGE_TRAMPOLINE,
    UNARY_TRAMPOLINE,
    Handle,
    register,
    unregister,
    workers,
)
from ._streams import sender_job

_LOGGER = logging.getLogger("rgrpc")

# How long one rgrpc_call_wait slice lasts: the longest delay before Ctrl-C
# is seen by a blocking unary call.
_SLICE_MS = 50

_OK = Result.OK
_TIMEOUT = Result.TIMEOUT
_CALL_ENDED = Result.CALL_ENDED

_rgrpc_call_wait = lib.rgrpc_call_wait
_rgrpc_call_recv = lib.rgrpc_call_recv
_rgrpc_call_finish = lib.rgrpc_call_finish
_rgrpc_call_free = lib.rgrpc_call_free
_rgrpc_call_send = lib.rgrpc_call_send
_rgrpc_status_get_code = lib.rgrpc_status_get_code
_rgrpc_status_free = lib.rgrpc_status_free
_rgrpc_call_unary_async = lib.rgrpc_call_unary_async
_rgrpc_call_options_free = lib.rgrpc_call_options_free


class _UnaryFuture(_Rendezvous):
    """Returned by ``future()``: completes on a library thread."""

    def __del__(self):
        try:
            st = self._state
            if st.code is None:
                self._cancel("Cancelled upon garbage collection!")
            st.release()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


# ---------------------------------------------------------------------------
# Unary-unary


class _UnaryUnaryMultiCallable(MultiCallable, _api.UnaryUnaryMultiCallable):
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
        try:
            data = serialize_or_fail(self._serializer, request)
            opts, deadline = self._options(timeout, metadata, credentials, wait_for_ready,
                                           compression)
        except LocalFailure as e:
            raise_local(e)
        if not on_main_thread():
            # Ctrl-C never lands here: drive the call on this thread (no
            # hand-off to a library thread and back).
            return self._blocking_direct(data, opts, deadline, with_call)
        # Main thread: the call runs without a callback (no hop to a library
        # thread); this thread waits in rgrpc_call_wait with the GIL released
        # — doing the call's I/O itself — in slices so that Ctrl-C is seen,
        # then takes the status and the response.
        call = c_void_p()
        try:
            ch = self._channel._native()
            rc = _rgrpc_call_unary_async(ch, self._method, opts, data, len(data),
                                         UNARY_DONE_CB(), None, byref(call))
        finally:
            if opts:
                _rgrpc_call_options_free(opts)
        if rc != _OK:
            raise_local(start_error(rc, ch))
        p = call.value
        try:
            rc = _rgrpc_call_wait(p, _SLICE_MS)
            while rc == _TIMEOUT:
                rc = _rgrpc_call_wait(p, _SLICE_MS)
            code, details, trailing = _finish(p)
            response_bytes = None
            if code is StatusCode.OK:
                buf = c_void_p()
                rc = _rgrpc_call_recv(p, byref(buf))
                if rc == _OK:
                    response_bytes = take_buffer(buf.value)
                else:
                    code, details = StatusCode.INTERNAL, "%s: %s" % (_NO_RESPONSE,
                                                                     call_error(p, rc))
            if code is StatusCode.OK and not with_call:
                _rgrpc_call_free(p)
                p = None
                try:
                    return deserialize(self._deserializer, response_bytes)
                except Exception:
                    _LOGGER.exception("Exception deserializing response!")
                    raise inactive(StatusCode.INTERNAL,
                                   "Exception deserializing response!") from None
            initial = initial_metadata_of(p)
            stats = read_stats(p) if _keep_stats[0] else None
        except BaseException:
            if p is not None:
                lib.rgrpc_call_cancel(p)
            raise
        finally:
            if p is not None:
                _rgrpc_call_free(p)
        if code is not StatusCode.OK:
            raise inactive(code, details, initial, trailing, stats)
        response, completed = _completed(self._deserializer, deadline, response_bytes, initial,
                                         trailing, details)
        completed._state.stats = stats
        return response, completed

    def _blocking_direct(self, data, opts, deadline, with_call):
        call = c_void_p()
        try:
            ch = self._channel._native()
            rc = lib.rgrpc_call_start(ch, self._method, opts, byref(call))
        finally:
            if opts:
                _rgrpc_call_options_free(opts)
        if rc != _OK:
            raise_local(start_error(rc, ch))
        p = call.value
        st = c_void_p()
        try:
            rc = _rgrpc_call_send(p, data, len(data), SEND_LAST)
            if rc != _OK and rc != _CALL_ENDED:  # (CALL_ENDED: the status says why)
                why = call_error(p, rc)
                lib.rgrpc_call_cancel(p)
                raise inactive(failure_code(rc), "rgrpc: sending failed: %s (%s)"
                               % (why, result_name(rc)))
            buf = c_void_p()
            response_bytes = None
            if _rgrpc_call_recv(p, byref(buf)) == _OK:
                response_bytes = take_buffer(buf.value)
            rc = _rgrpc_call_finish(p, byref(st))
            if not st.value:  # pragma: no cover - the library failed
                code, details, trailing = _no_status(p, rc)
            elif _rgrpc_status_get_code(st.value) == 0 and response_bytes is not None \
                    and not with_call:
                _rgrpc_status_free(st.value)
                st = None
                _rgrpc_call_free(p)
                p = None
                try:
                    return deserialize(self._deserializer, response_bytes)
                except Exception:
                    _LOGGER.exception("Exception deserializing response!")
                    raise inactive(StatusCode.INTERNAL,
                                   "Exception deserializing response!") from None
            else:
                code, details, trailing = status_info(st.value)
            initial = initial_metadata_of(p)
            stats = read_stats(p) if _keep_stats[0] else None
        finally:
            if st is not None and st.value:
                _rgrpc_status_free(st.value)
            if p is not None:
                _rgrpc_call_free(p)
        if code is StatusCode.OK and response_bytes is None:
            code = StatusCode.UNIMPLEMENTED
            details = "received no response message for a call that expects one"
        if code is not StatusCode.OK:
            raise inactive(code, details, initial, trailing, stats)
        response, completed = _completed(self._deserializer, deadline, response_bytes, initial,
                                         trailing, details)
        completed._state.stats = stats
        return response, completed

    def future(self, request, timeout=None, metadata=None, credentials=None,
               wait_for_ready=None, compression=None):
        try:
            data = serialize_or_fail(self._serializer, request)
        except LocalFailure as e:
            raise_local(e)
        try:
            opts, deadline = self._options(timeout, metadata, credentials, wait_for_ready,
                                           compression)
        except LocalFailure as e:
            return _UnaryFuture(failed_state(e))  # as grpcio: a failed future
        state = CallState(deadline, self._deserializer)
        state.md_after_done = True
        sink = _UnarySink(state)
        key = register(sink)
        call = c_void_p()
        try:
            ch = self._channel._native()
            rc = _rgrpc_call_unary_async(ch, self._method, opts, data, len(data),
                                         UNARY_TRAMPOLINE, key, byref(call))
        except BaseException:
            unregister(key)
            raise
        finally:
            if opts:
                _rgrpc_call_options_free(opts)
        if rc != _OK:
            unregister(key)
            raise_local(start_error(rc, ch))
        state.handle = Handle(call.value)
        return _UnaryFuture(state)


def _completed(deserializer, deadline, response_bytes, initial, trailing, details):
    """``(response, call)`` of a unary call that ended OK (``with_call``)."""
    state = CallState(deadline)
    state.initial_md, state.trailing_md, state.details = initial, trailing, details
    state.callbacks = None
    try:
        state.response = deserialize(deserializer, response_bytes)
    except Exception:
        _LOGGER.exception("Exception deserializing response!")
        raise inactive(StatusCode.INTERNAL, "Exception deserializing response!",
                       initial, trailing) from None
    state.code = StatusCode.OK
    return state.response, _CompletedCall(state)


def _no_status(p, rc):
    """(code, details, trailing) when rgrpc_call_finish gave no status (the
    library failed: the reason is its last error)."""
    return StatusCode.INTERNAL, "rgrpc: no status: %s (%s)" % (call_error(p, rc),
                                                               result_name(rc)), EMPTY


def _finish(p):
    """The final status of an ended call: (code, details, trailing)."""
    st = c_void_p()
    rc = _rgrpc_call_finish(p, byref(st))
    if not st.value:  # pragma: no cover - the library failed
        return _no_status(p, rc)
    try:
        return status_info(st.value)
    finally:
        _rgrpc_status_free(st.value)


# librgrpc promises the response with an OK status of a unary call (it
# ends a call that gets none with UNIMPLEMENTED): OK without it is a bug of
# the library, reported as such rather than papered over.
_NO_RESPONSE = "rgrpc: librgrpc reported OK without the response (a library bug)"


class _UnarySink(object):
    """Receives the unary-done callback of a future."""

    __slots__ = ("state",)

    def __init__(self, state):
        self.state = state

    def _native_unary_done(self, st, data, length):
        state = self.state
        code, details, trailing = status_info(st)
        response = None
        raw = None
        if code is StatusCode.OK:
            if data is None:  # (an empty message comes with a non-NULL pointer)
                code, details = StatusCode.INTERNAL, _NO_RESPONSE
            else:
                raw = string_at(data, length) if length else b""
        if code is StatusCode.OK:
            try:
                response = deserialize(state.deserializer, raw)
            except Exception:
                _LOGGER.exception("Exception deserializing response!")
                code, details = StatusCode.INTERNAL, "Exception deserializing response!"
        run_callbacks(state.complete(code, details, trailing, response))


# ---------------------------------------------------------------------------
# Stream-unary


class _StreamUnaryMultiCallable(MultiCallable, _api.StreamUnaryMultiCallable):
    __slots__ = ()

    def _begin(self, request_iterator, timeout, metadata, credentials, wait_for_ready,
               compression):
        try:
            opts, deadline = self._options(timeout, metadata, credentials, wait_for_ready,
                                           compression)
            h = self._start(opts)
        except LocalFailure as e:
            raise_local(e)
        state = CallState(deadline, self._deserializer)
        state.handle = h
        state.unary_response = True
        state.md_after_done = True
        key = register(state)
        p = h.ptr
        rc = lib.rgrpc_call_on_message(p, MESSAGE_TRAMPOLINE, key)
        if rc == _OK:
            rc = lib.rgrpc_call_on_done(p, DONE_TRAMPOLINE, key)
            if rc != _OK:
                # Ended before we could watch it: read the status now.
                unregister(key)
                stp = c_void_p()
                rc = _rgrpc_call_finish(p, byref(stp))
                if stp.value:
                    state._native_done(stp.value)
                    _rgrpc_status_free(stp.value)
                else:  # pragma: no cover - finish gives a status unless the library fails
                    abort(state, StatusCode.INTERNAL, "rgrpc: no status: %s (%s)"
                          % (call_error(p, rc), result_name(rc)))
        else:
            unregister(key)
            abort(state, StatusCode.INTERNAL, "rgrpc: %s (%s)"
                  % (call_error(p, rc), result_name(rc)))
        workers.submit(sender_job, state, request_iterator, self._serializer)
        return state

    def _blocking(self, state):
        try:
            state.wait_done()
        except BaseException:
            abort(state, StatusCode.CANCELLED, "Locally cancelled by application!")
            raise
        h = state.handle
        if state.initial_md is None:
            md = fetch_initial_metadata(h) if h is not None else None
            with state.cond:
                if state.initial_md is None:
                    state.initial_md = md if md is not None else EMPTY
        h = None
        state.release()  # everything read; the sender may still hold it
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
        try:
            state = self._begin(request_iterator, timeout, metadata, credentials,
                                wait_for_ready, compression)
        except _InactiveRpcError as e:
            return _UnaryFuture(e._state)  # as grpcio: a failed future
        return _UnaryFuture(state)

