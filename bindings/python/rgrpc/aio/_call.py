"""The four aio call objects, each driven by the loop's completion queue.

How each pattern maps onto librgrpc's ``_cq`` operations (include/rgrpc.h):

* unary-unary: one ``rgrpc_call_unary_cq``; its completion carries the
  status and the response.
* unary-stream: ``rgrpc_call_start_cq`` + ``rgrpc_call_send_cq`` (the
  request, ``RGRPC_SEND_LAST``); responses are received as the application
  reads, ``rgrpc_call_recv_cq`` one message ahead of it at most (the
  library allows one receive at a time; HTTP/2 flow control holds the
  server back meanwhile). No receive starts while an
  ``rgrpc_call_initial_metadata_cq`` is in progress (librgrpc completes it
  with BUSY then).
* stream-unary: ``rgrpc_call_start_cq``; requests by ``write()`` or a task
  consuming the request iterator (``rgrpc_call_send_cq`` one at a time,
  then ``rgrpc_call_close_send_cq``); the response is received at once.
* stream-stream: as stream-unary for requests, as unary-stream for
  responses.

The status of a streaming call comes from ``rgrpc_call_finish_cq``, which
discards messages not received yet; so it is asked for only once the
response stream has been received to its end. Whoever needs the status
earlier (``code()``, ``details()``, ``trailing_metadata()``,
``add_done_callback``, a write that finds the call ended) makes the call
receive ahead into a buffer, which ``read()`` and the iterator then drain
first: no message is lost.

Cancelling (``cancel()``, cancelling the task awaiting the call, closing
the channel) cancels the native call (``rgrpc_call_cancel``: the server
sees RST_STREAM CANCEL) and ends the call locally with CANCELLED at once;
awaiting it then raises ``asyncio.CancelledError``, as in grpcio.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterable
from ctypes import byref, c_void_p

from .._api import StatusCode
from ._base import AioRpcError  # noqa: F401  (grpcio's grpc.aio._call has it)
from .._invocation import LocalFailure, deserialize, serialize_or_fail, start_error
from .._lib import SEND_LAST, Result, call_error, lib, result_name
from .._results import read_metadata
from . import _base
from ._metadata import Metadata

_LOGGER = logging.getLogger("rgrpc")

_OK = Result.OK
_CALL_ENDED = Result.CALL_ENDED
_END_OF_STREAM = Result.END_OF_STREAM
_BUSY = Result.BUSY

LOCAL_CANCELLATION = "Locally cancelled by application!"
GC_CANCELLATION = "Cancelled upon garbage collection!"
_RPC_ALREADY_FINISHED = "RPC already finished."
_RPC_HALF_CLOSED = 'RPC is half closed after calling "done_writing".'
_API_STYLE_ERROR = "The iterator and read/write APIs may not be mixed on a single RPC."
_NO_RESPONSE = "received no response message for a call that expects one"

_ITERATOR, _READER_WRITER = 1, 2

_unary_cq = lib.rgrpc_call_unary_cq
_start_cq = lib.rgrpc_call_start_cq
_send_cq = lib.rgrpc_call_send_cq
_close_send_cq = lib.rgrpc_call_close_send_cq
_recv_cq = lib.rgrpc_call_recv_cq
_finish_cq = lib.rgrpc_call_finish_cq
_initial_metadata_cq = lib.rgrpc_call_initial_metadata_cq
_call_free = lib.rgrpc_call_free
_call_cancel = lib.rgrpc_call_cancel
_options_free = lib.rgrpc_call_options_free


def _initial_metadata_now(p):
    """The initial metadata of a call whose headers have arrived or which
    has ended (``rgrpc_call_initial_metadata`` does not wait then)."""
    md = c_void_p()
    if lib.rgrpc_call_initial_metadata(p, byref(md)) == _OK:
        return Metadata.from_tuple(read_metadata(md.value))
    return Metadata()


class _Call(_base.Call):
    """What every aio call shares: status, metadata, cancellation, done
    callbacks, the native call and the completion queue it uses."""

    _unary_response = False
    _streaming_response = False
    # Unary-unary: the headers are read once the call has ended (they come
    # with the response; rgrpc_call_initial_metadata_cq beside
    # rgrpc_call_unary_cq can stall the call, see initial_metadata()).
    _md_after_done = False

    def __init__(self, loop, queue, channel, deadline, deserializer):
        self._loop = loop
        self._queue = queue
        self._channel = channel  # the aio Channel (tracks active calls)
        self._deadline = deadline
        self._deserializer = deserializer
        self._ptr = None  # rgrpc_call *
        self._code = None
        self._details = None
        self._trailing = None
        self._initial = None
        self._debug = None
        self._response = None
        self._locally_cancelled = False
        self._callbacks = []
        self._done_fut = loop.create_future()
        self._started_fut = None
        self._md_fut = None
        self._md_pending = False  # an rgrpc_call_initial_metadata_cq in progress
        self._recv_deferred = False  # a receive to start once it completes
        self._finishing = False
        # response side (streams)
        self._msgs = collections.deque()
        self._eos = False
        self._recv_pending = False
        self._read_ahead = False
        self._read_waiters = []
        self._style = 0

    # -- lifetime -----------------------------------------------------------

    def _free(self):
        p, self._ptr = self._ptr, None
        if p is not None:
            if self._initial is None:
                self._initial = _initial_metadata_now(p)
            _call_free(p)

    def __del__(self):
        try:
            if self._code is None and self._ptr is not None:
                self._locally_cancelled = True
            p, self._ptr = self._ptr, None
            if p is not None:
                _call_free(p)  # cancels the call if it is still active
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def _fail_start(self, exc):
        """The call could not start: ends it with the failure's status."""
        if isinstance(exc, LocalFailure):
            self._set_status(exc.code, exc.details, ())
        else:
            self._set_status(StatusCode.INTERNAL, str(exc), ())

    # -- status -------------------------------------------------------------

    def _set_status(self, code, details, trailing, cancelled=False):
        """Sets the outcome once; runs the done callbacks (soon)."""
        if self._code is not None:
            return False
        self._code = code
        self._details = details
        self._trailing = Metadata.from_tuple(trailing)
        # "" for OK, as grpcio's aio calls
        self._debug = "%s:%s" % (code.name, details) if code is not StatusCode.OK else ""
        if cancelled:
            self._locally_cancelled = True
        if self._initial is None:
            # (The completions of ended calls read it first: here the call
            # may still be running, so its headers are not read.)
            self._initial = Metadata()
        if not self._done_fut.done():
            self._done_fut.set_result(None)
        for w in self._read_waiters:
            if not w.done():
                w.set_result(None)
        self._read_waiters = []
        if self._md_fut is not None and not self._md_fut.done():
            self._md_fut.set_result(None)
        if self._started_fut is not None and not self._started_fut.done():
            self._started_fut.set_result(None)
        cbs, self._callbacks = self._callbacks, None
        for cb in cbs:
            self._loop.call_soon(self._run_callback, cb)
        ch = self._channel
        if ch is not None:
            ch._forget(self)
        return True

    def _run_callback(self, cb):
        try:
            cb(self)
        except Exception:
            _LOGGER.exception("rgrpc.aio: exception in a done callback")

    def _on_finish(self, op, result, data, status, state):
        """Completion of ``rgrpc_call_finish_cq`` (or of a unary call)."""
        if status is None:
            code, details, trailing = (StatusCode.INTERNAL, "rgrpc: no status (%s)"
                                       % result_name(result), ())
        else:
            code, details, trailing = status
        if code is StatusCode.OK and self._unary_response:
            if self._response_bytes is None:
                code, details = StatusCode.UNIMPLEMENTED, _NO_RESPONSE
            else:
                try:
                    self._response = deserialize(self._deserializer, self._response_bytes)
                except Exception:
                    _LOGGER.exception("Exception deserializing response!")
                    code, details = StatusCode.INTERNAL, "Exception deserializing response!"
                self._response_bytes = None
        if self._code is None and self._ptr is not None:
            self._initial = _initial_metadata_now(self._ptr)
        self._set_status(code, details, trailing)
        self._free()

    def _request_status(self):
        """Makes the status come: streams receive ahead to their end."""
        if self._code is not None or self._finishing:
            return
        if self._eos:
            self._start_finish()
        else:
            # Receive ahead to the end (then finish): no message is lost.
            self._read_ahead = True
            self._pump()

    def _start_finish(self):
        if self._finishing or self._code is not None:
            return
        p = self._ptr
        if p is None:
            return
        self._finishing = True
        rc = self._queue.start(lambda cq, tag: _finish_cq(p, cq, tag), self._on_finish)
        if rc != _OK:
            self._abort(StatusCode.INTERNAL, "rgrpc: finishing failed: %s (%s)"
                        % (call_error(p, rc), result_name(rc)))

    def _abort(self, code, details):
        """Ends the call locally with ``code`` (a library failure) and
        cancels the native call."""
        p = self._ptr
        if p is not None:
            _call_cancel(p)
        self._set_status(code, details, ())

    async def _wait_done(self):
        if self._code is None:
            self._request_status()
            await asyncio.shield(self._done_fut)

    async def _raise_for_status(self):
        await self._wait_done()
        if self._locally_cancelled:
            raise asyncio.CancelledError()
        if self._code is not StatusCode.OK:
            raise self._error()

    def _error(self):
        return _base.AioRpcError(self._code, self._initial, self._trailing, self._details,
                                 self._debug)

    # -- RpcContext ---------------------------------------------------------

    def cancelled(self):
        return self._code is StatusCode.CANCELLED and self._locally_cancelled

    def done(self):
        return self._code is not None

    def time_remaining(self):
        if self._deadline is None:
            return None
        return max(self._deadline - time.monotonic(), 0.0)

    def cancel(self):
        return self._cancel(LOCAL_CANCELLATION)

    def _cancel(self, details):
        if self._code is not None:
            return False
        p = self._ptr
        if p is not None:
            _call_cancel(p)
        self._set_status(StatusCode.CANCELLED, details, (), cancelled=True)
        w = getattr(self, "_writer_task", None)
        if w is not None and not w.done():
            w.cancel()
        return True

    def add_done_callback(self, callback):
        if self._code is not None:
            self._loop.call_soon(self._run_callback, callback)
            return
        self._callbacks.append(callback)
        self._request_status()

    # -- Call ---------------------------------------------------------------

    async def initial_metadata(self):
        if self._initial is not None:
            return self._initial
        if self._md_after_done:
            await self._wait_done()
            return self._initial if self._initial is not None else Metadata()
        if self._started_fut is not None and not self._started_fut.done():
            await asyncio.shield(self._started_fut)  # the stream is open first
        p = self._ptr
        if self._md_fut is None and p is not None and self._code is None:
            fut = self._md_fut = self._loop.create_future()

            def on_md(op, result, data, status, state):
                self._md_pending = False
                if self._initial is None and self._ptr is not None:
                    self._initial = _initial_metadata_now(self._ptr)
                if not fut.done():
                    fut.set_result(None)
                if self._recv_deferred:
                    self._recv_deferred = False
                    self._pump()

            rc = self._queue.start(lambda cq, tag: _initial_metadata_cq(p, cq, tag), on_md)
            if rc == _OK:
                # librgrpc: a receive started while this is in progress
                # completes with RGRPC_RESULT_BUSY (see README.md), so
                # receives wait for it (the headers come first anyway).
                self._md_pending = True
            else:
                self._request_status()
                fut.set_result(None)
        if self._md_fut is not None:
            await asyncio.shield(self._md_fut)
        if self._initial is None:
            await self._wait_done()
        return self._initial if self._initial is not None else Metadata()

    async def trailing_metadata(self):
        await self._wait_done()
        return self._trailing

    async def code(self):
        await self._wait_done()
        return self._code

    async def details(self):
        await self._wait_done()
        return self._details

    async def debug_error_string(self):
        await self._wait_done()
        return self._debug

    async def wait_for_connection(self):
        fut = self._started_fut
        if fut is not None:
            await asyncio.shield(fut)
        elif self._code is None:
            await self._wait_done()  # unary-unary: no separate start
        if self._code is not None and self._code is not StatusCode.OK:
            await self._raise_for_status()

    # -- starting -----------------------------------------------------------

    def _on_start(self, op, result, data, status, state):
        fut = self._started_fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _start_stream(self, native_channel, method, opts):
        """``rgrpc_call_start_cq``; False (and the call ended) on failure."""
        self._started_fut = self._loop.create_future()
        call = c_void_p()

        def begin(cq, tag):
            return _start_cq(native_channel, method, opts, cq, tag, byref(call))

        rc = self._queue.start(begin, self._on_start)
        if rc != _OK:
            self._fail_start(start_error(rc, native_channel))
            return False
        self._ptr = call.value
        return True

    # -- receiving (streams) --------------------------------------------------

    def _pump(self):
        """Starts a receive if none is in progress and more may come."""
        if self._recv_pending or self._eos:
            return
        if self._md_pending:
            self._recv_deferred = True
            return
        p = self._ptr
        if p is None:
            self._eos = True
            return
        rc = self._queue.start(lambda cq, tag: _recv_cq(p, cq, tag), self._on_recv)
        if rc == _OK:
            self._recv_pending = True
        else:
            self._eos = True
            self._abort(StatusCode.INTERNAL, "rgrpc: receiving failed: %s (%s)"
                        % (call_error(p, rc), result_name(rc)))

    def _on_recv(self, op, result, data, status, state):
        self._recv_pending = False
        if result == _BUSY:
            # Not a message nor the end (see _md_pending): try again.
            self._loop.call_later(0.001, self._pump)
            return
        if result == _OK and data is not None:
            if self._unary_response:
                if self._response_bytes is None:
                    self._response_bytes = data
            else:
                self._msgs.append(data)
            if self._read_ahead:
                self._pump()
        else:
            self._eos = True
            self._start_finish()
        waiters, self._read_waiters = self._read_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def _read_bytes(self):
        """The next response's bytes, or None at the end."""
        while True:
            if self._msgs:
                data = self._msgs.popleft()
                if not self._msgs:
                    # Keep one receive in flight while the application
                    # handles this message (one message of read-ahead).
                    self._pump()
                return data
            if self._eos or self._code is not None:
                return None
            self._pump()
            w = self._loop.create_future()
            self._read_waiters.append(w)
            try:
                await w
            except asyncio.CancelledError:
                self.cancel()
                raise

    async def _read(self):
        data = await self._read_bytes()
        if data is None:
            await self._raise_for_status()
            return _base.EOF
        try:
            return deserialize(self._deserializer, data)
        except Exception:
            _LOGGER.exception("Exception deserializing response!")
            self._abort(StatusCode.INTERNAL, "Exception deserializing response!")
            raise self._error() from None

    def _set_style(self, style):
        if self._style == 0:
            self._style = style
        elif self._style != style:
            raise _base.UsageError(_API_STYLE_ERROR)

    async def read(self):
        if self._code is not None and not self._msgs:
            await self._raise_for_status()
            return _base.EOF
        self._set_style(_READER_WRITER)
        return await self._read()

    def __aiter__(self):
        self._set_style(_ITERATOR)
        it = getattr(self, "_aiter", None)
        if it is None:
            it = self._aiter = self._responses()
        return it

    async def _responses(self):
        while True:
            msg = await self._read()
            if msg is _base.EOF:
                return
            yield msg

    # -- sending (request streams) ------------------------------------------

    async def _send_op(self, begin):
        """Runs one send-side operation; its completion's result."""
        fut = self._loop.create_future()

        def on_done(op, result, data, status, state):
            if not fut.done():
                fut.set_result(result)

        rc = self._queue.start(begin, on_done)
        if rc != _OK:
            return rc
        try:
            return await fut
        except asyncio.CancelledError:
            self.cancel()
            raise

    async def _write(self, request):
        if self._code is not None:
            raise asyncio.InvalidStateError(_RPC_ALREADY_FINISHED)
        if self._done_writing_flag:
            raise asyncio.InvalidStateError(_RPC_HALF_CLOSED)
        try:
            data = serialize_or_fail(self._serializer, request)
        except LocalFailure as e:
            self._abort(e.code, e.details)
            await self._raise_for_status()
            return
        async with self._write_lock:
            p = self._ptr
            if p is None:
                await self._raise_for_status()
                return
            rc = await self._send_op(
                lambda cq, tag: _send_cq(p, data, len(data), 0, cq, tag))
        if rc == _OK:
            return
        if rc == _CALL_ENDED:
            # The call has ended: its status says why.
            await self._raise_for_status()
            return
        self._abort(StatusCode.INTERNAL, "rgrpc: sending failed (%s)" % result_name(rc))
        await self._raise_for_status()

    async def _done_writing(self):
        if self._code is not None or self._done_writing_flag:
            return
        self._done_writing_flag = True
        async with self._write_lock:
            p = self._ptr
            if p is None:
                return
            rc = await self._send_op(lambda cq, tag: _close_send_cq(p, cq, tag))
        if rc not in (_OK, _CALL_ENDED):
            self._abort(StatusCode.INTERNAL, "rgrpc: closing the request stream failed (%s)"
                        % result_name(rc))

    async def write(self, request):
        if self._request_iterator_given:
            raise _base.UsageError(_API_STYLE_ERROR)
        await self._write(request)

    async def done_writing(self):
        if self._request_iterator_given:
            raise _base.UsageError(_API_STYLE_ERROR)
        await self._done_writing()

    async def _consume(self, request_iterator):
        """Sends the requests of a (sync or async) iterator, then closes."""
        try:
            if isinstance(request_iterator, AsyncIterable):
                async for request in request_iterator:
                    if not await self._write_quietly(request):
                        return
            else:
                for request in request_iterator:
                    if not await self._write_quietly(request):
                        return
            await self._done_writing()
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.debug("rgrpc.aio: the request iterator raised", exc_info=True)
            self._cancel("Exception iterating requests!")

    async def _write_quietly(self, request):
        try:
            await self._write(request)
            return True
        except (_base.AioRpcError, asyncio.InvalidStateError):
            return False

    def _init_requests(self, request_iterator, serializer):
        self._serializer = serializer
        self._done_writing_flag = False
        self._write_lock = asyncio.Lock()
        self._request_iterator_given = request_iterator is not None
        self._writer_task = None
        if request_iterator is not None:
            self._writer_task = self._loop.create_task(self._consume(request_iterator))

    # -- display ------------------------------------------------------------

    def __repr__(self):
        if self._code is None:
            return "<%s of in-flight RPC>" % type(self).__name__
        if self._code is StatusCode.OK:
            return '<%s of RPC that terminated with:\n\tstatus = %s\n\tdetails = "%s"\n>' % (
                type(self).__name__, self._code, self._details)
        return ('<%s of RPC that terminated with:\n\tstatus = %s\n\tdetails = "%s"\n'
                '\tdebug_error_string = "%s"\n>' % (type(self).__name__, self._code,
                                                     self._details, self._debug))

    __str__ = __repr__


class _UnaryResponse(object):
    """``await call``: the response, AioRpcError, or CancelledError."""

    async def _result(self):
        if self._code is None:
            try:
                await asyncio.shield(self._done_fut)
            except asyncio.CancelledError:
                # The task awaiting the call was cancelled: so is the RPC.
                self.cancel()
                raise
        if self._locally_cancelled:
            raise asyncio.CancelledError()
        if self._code is not StatusCode.OK:
            raise self._error()
        return self._response

    def __await__(self):
        return self._result().__await__()


class UnaryUnaryCall(_UnaryResponse, _Call, _base.UnaryUnaryCall):
    _unary_response = False
    _md_after_done = True

    def __init__(self, loop, queue, channel, native_channel, method, opts, deadline, data,
                 deserializer):
        _Call.__init__(self, loop, queue, channel, deadline, deserializer)
        call = c_void_p()

        def begin(cq, tag):
            return _unary_cq(native_channel, method, opts, data, len(data), cq, tag,
                             byref(call))

        self._finishing = True
        rc = queue.start(begin, self._on_unary)
        if rc != _OK:
            self._fail_start(start_error(rc, native_channel))
            return
        self._ptr = call.value

    def _on_unary(self, op, result, data, status, state):
        if status is None:
            code, details, trailing = (StatusCode.INTERNAL, "rgrpc: no status (%s)"
                                       % result_name(result), ())
        else:
            code, details, trailing = status
        if self._code is None and self._ptr is not None:
            self._initial = _initial_metadata_now(self._ptr)  # ended: does not wait
        if code is StatusCode.OK:
            if data is None:
                code, details = StatusCode.UNIMPLEMENTED, _NO_RESPONSE
            else:
                try:
                    self._response = deserialize(self._deserializer, data)
                except Exception:
                    _LOGGER.exception("Exception deserializing response!")
                    code, details = StatusCode.INTERNAL, "Exception deserializing response!"
        self._set_status(code, details, trailing)
        self._free()


class UnaryStreamCall(_Call, _base.UnaryStreamCall):
    _streaming_response = True

    def __init__(self, loop, queue, channel, native_channel, method, opts, deadline, data,
                 deserializer):
        _Call.__init__(self, loop, queue, channel, deadline, deserializer)
        if not self._start_stream(native_channel, method, opts):
            return
        p = self._ptr

        def sent(op, result, d, status, state):
            if result not in (_OK, _CALL_ENDED):
                self._abort(StatusCode.INTERNAL, "rgrpc: sending failed (%s)"
                            % result_name(result))

        rc = queue.start(lambda cq, tag: _send_cq(p, data, len(data), SEND_LAST, cq, tag), sent)
        if rc != _OK:
            self._abort(StatusCode.INTERNAL, "rgrpc: sending failed: %s (%s)"
                        % (call_error(p, rc), result_name(rc)))


class StreamUnaryCall(_UnaryResponse, _Call, _base.StreamUnaryCall):
    _unary_response = True

    def __init__(self, loop, queue, channel, native_channel, method, opts, deadline,
                 request_iterator, serializer, deserializer):
        _Call.__init__(self, loop, queue, channel, deadline, deserializer)
        self._response_bytes = None
        self._init_requests(None, serializer)
        if not self._start_stream(native_channel, method, opts):
            return
        # The one response, then the status: received at once.
        self._read_ahead = True
        self._pump()
        self._init_requests(request_iterator, serializer)


class StreamStreamCall(_Call, _base.StreamStreamCall):
    _streaming_response = True

    def __init__(self, loop, queue, channel, native_channel, method, opts, deadline,
                 request_iterator, serializer, deserializer):
        _Call.__init__(self, loop, queue, channel, deadline, deserializer)
        self._init_requests(None, serializer)
        if not self._start_stream(native_channel, method, opts):
            return
        self._init_requests(request_iterator, serializer)
