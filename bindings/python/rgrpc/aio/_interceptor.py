"""aio client interceptors (grpcio's ``grpc.aio`` interceptor API).

An intercepted call runs the channel's interceptors of its kind in a task:
each gets ``continuation(client_call_details, request)``, a coroutine
function giving the call made by the rest of the chain (the real call at
its end), and returns a call (usually that one), or for unary responses a
response value, or for streaming responses an async iterator of
responses. The object the application holds forwards to what the chain
returned; status methods of a replaced response iterator answer for the
last real call made.

Cancelling the task that awaits an intercepted call cancels the chain's
task, so the interceptor awaiting the real call sees CancelledError and
the RPC is cancelled (as in grpcio).
"""

from __future__ import annotations

import abc
import asyncio
import collections
import time

from .. import _api
from .._api import StatusCode
from . import _base
from ._metadata import Metadata


class ClientCallDetails(
    collections.namedtuple("ClientCallDetails",
                           ("method", "timeout", "metadata", "credentials", "wait_for_ready")),
    _api.ClientCallDetails,
):
    """What an interceptor may inspect and replace: ``method`` (bytes),
    ``timeout`` (seconds or None), ``metadata`` (an aio Metadata, never
    None), ``credentials``, ``wait_for_ready``."""


class ClientInterceptor(metaclass=abc.ABCMeta):
    """The base of the four aio client interceptor kinds."""


class UnaryUnaryClientInterceptor(ClientInterceptor, metaclass=abc.ABCMeta):
    @abc.abstractmethod
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        """``await continuation(details, request)`` gives the call; return
        it, or the response."""


class UnaryStreamClientInterceptor(ClientInterceptor, metaclass=abc.ABCMeta):
    @abc.abstractmethod
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        """``await continuation(details, request)`` gives the call; return
        it, or an async iterator of responses."""


class StreamUnaryClientInterceptor(ClientInterceptor, metaclass=abc.ABCMeta):
    @abc.abstractmethod
    async def intercept_stream_unary(self, continuation, client_call_details,
                                     request_iterator):
        """As intercept_unary_unary, with a request iterator."""


class StreamStreamClientInterceptor(ClientInterceptor, metaclass=abc.ABCMeta):
    @abc.abstractmethod
    async def intercept_stream_stream(self, continuation, client_call_details,
                                      request_iterator):
        """As intercept_unary_stream, with a request iterator."""


# ---------------------------------------------------------------------------
# Results that are not calls


class UnaryUnaryCallResponse(_base.UnaryUnaryCall):
    """A finished call standing for a response an interceptor returned."""

    def __init__(self, response):
        self._response = response

    def cancel(self):
        return False

    def cancelled(self):
        return False

    def done(self):
        return True

    def add_done_callback(self, callback):
        asyncio.get_running_loop().call_soon(callback, self)

    def time_remaining(self):
        return None

    async def initial_metadata(self):
        return None

    async def trailing_metadata(self):
        return None

    async def code(self):
        return StatusCode.OK

    async def details(self):
        return ""  # as grpcio

    async def debug_error_string(self):
        return None

    async def wait_for_connection(self):
        pass

    def __await__(self):
        if False:  # pragma: no cover - makes this a generator
            yield None
        return self._response


class _ResponseIterator(object):
    """A response iterator an interceptor returned, with the status of the
    last real call."""

    def __init__(self, call, iterator):
        self._call = call
        self._iterator = iterator
        self._aiter = None

    def cancel(self):
        return self._call.cancel() if self._call is not None else False

    def cancelled(self):
        return self._call.cancelled() if self._call is not None else False

    def done(self):
        return self._call.done() if self._call is not None else True

    def add_done_callback(self, callback):
        if self._call is not None:
            self._call.add_done_callback(lambda _c: callback(self))

    def time_remaining(self):
        return self._call.time_remaining() if self._call is not None else None

    async def initial_metadata(self):
        return await self._call.initial_metadata()

    async def trailing_metadata(self):
        return await self._call.trailing_metadata()

    async def code(self):
        return await self._call.code()

    async def details(self):
        return await self._call.details()

    async def debug_error_string(self):
        return await self._call.debug_error_string()

    async def wait_for_connection(self):
        return await self._call.wait_for_connection()

    def __aiter__(self):
        if self._aiter is None:
            self._aiter = self._iterator.__aiter__()
        return self._aiter

    async def read(self):
        try:
            return await self.__aiter__().__anext__()
        except StopAsyncIteration:
            return _base.EOF

    async def write(self, request):
        return await self._call.write(request)

    async def done_writing(self):
        return await self._call.done_writing()


class _UnaryStreamResponseIterator(_ResponseIterator, _base.UnaryStreamCall):
    pass


class _StreamStreamResponseIterator(_ResponseIterator, _base.StreamStreamCall):
    pass


# ---------------------------------------------------------------------------
# Intercepted calls


class _InterceptedCall(object):
    """The call the application holds while the interceptors run."""

    _call_class = None

    def __init__(self, interceptors, request, details, loop, invoke):
        self._loop = loop
        self._invoke = invoke
        self._last_call = None
        self._timeout = details.timeout
        self._start_time = time.monotonic()
        self._pending = []
        self._task = loop.create_task(self._run(list(interceptors), details, request))
        self._task.add_done_callback(self._on_task_done)

    async def _run(self, interceptors, details, request):
        if not interceptors:
            call = self._invoke(details, request)
            self._last_call = call
            return call

        async def continuation(new_details, new_request):
            return await self._run(interceptors[1:], new_details, new_request)

        result = await self._intercept(interceptors[0], continuation, details, request)
        return self._wrap(result)

    # -- the chain's outcome ------------------------------------------------

    def _call_now(self):
        """What the chain returned, if it has (None otherwise or on error)."""
        t = self._task
        if not t.done() or t.cancelled() or t.exception() is not None:
            return None
        return t.result()

    def _on_task_done(self, task):
        pending, self._pending = self._pending, []
        call = self._call_now()
        for cb in pending:
            if call is not None:
                call.add_done_callback(lambda _c, cb=cb: cb(self))
            else:
                self._loop.call_soon(cb, self)
        if not task.cancelled():
            task.exception()  # retrieved: failures surface where awaited

    async def _outcome(self):
        """(call, None) or (None, exception) without being cancelled by it."""
        try:
            return await asyncio.shield(self._task), None
        except asyncio.CancelledError:
            if self._task.cancelled():
                return None, asyncio.CancelledError()
            raise
        except Exception as e:  # noqa: BLE001
            return None, e

    # -- RpcContext ---------------------------------------------------------

    def cancel(self):
        if not self._task.done():
            return self._task.cancel()
        call = self._call_now()
        return call.cancel() if call is not None else False

    def cancelled(self):
        if self._task.cancelled():
            return True
        call = self._call_now()
        return call.cancelled() if call is not None else False

    def done(self):
        if not self._task.done():
            return False
        call = self._call_now()
        return call.done() if call is not None else True

    def add_done_callback(self, callback):
        if not self._task.done():
            self._pending.append(callback)
            return
        call = self._call_now()
        if call is not None:
            call.add_done_callback(lambda _c: callback(self))
        else:
            self._loop.call_soon(callback, self)

    def time_remaining(self):
        if self._timeout is None:
            return None
        return max(self._timeout - (time.monotonic() - self._start_time), 0.0)

    # -- Call ---------------------------------------------------------------

    async def initial_metadata(self):
        call, err = await self._outcome()
        if call is None:
            return getattr(err, "initial_metadata", lambda: None)()
        return await call.initial_metadata()

    async def trailing_metadata(self):
        call, err = await self._outcome()
        if call is None:
            return getattr(err, "trailing_metadata", lambda: None)()
        return await call.trailing_metadata()

    async def code(self):
        call, err = await self._outcome()
        if call is None:
            if isinstance(err, _base.AioRpcError):
                return err.code()
            if isinstance(err, asyncio.CancelledError):
                return StatusCode.CANCELLED
            return StatusCode.UNKNOWN
        return await call.code()

    async def details(self):
        call, err = await self._outcome()
        if call is None:
            if isinstance(err, _base.AioRpcError):
                return err.details()
            if isinstance(err, asyncio.CancelledError):
                return "Locally cancelled by application!"
            return "Exception in an interceptor: %r" % (err,)
        return await call.details()

    async def debug_error_string(self):
        call, err = await self._outcome()
        if call is None:
            return getattr(err, "debug_error_string", lambda: None)()
        return await call.debug_error_string()

    async def wait_for_connection(self):
        call = await self._task
        await call.wait_for_connection()


class _UnaryResponseMixin(object):
    def _wrap(self, result):
        if isinstance(result, (_base.UnaryUnaryCall, _base.StreamUnaryCall)):
            return result
        return UnaryUnaryCallResponse(result)

    async def _await_response(self):
        call = await self._task  # cancelling this await cancels the chain
        return await call

    def __await__(self):
        return self._await_response().__await__()


class _StreamResponseMixin(object):
    _iterator_class = None

    def _wrap(self, result):
        if isinstance(result, (_base.UnaryStreamCall, _base.StreamStreamCall)):
            return result
        return self._iterator_class(self._last_call, result)

    def __aiter__(self):
        it = getattr(self, "_aiter", None)
        if it is None:
            it = self._aiter = self._responses()
        return it

    async def _responses(self):
        call = await self._task
        async for response in call:
            yield response

    async def read(self):
        call = await self._task
        return await call.read()


class _StreamRequestMixin(object):
    """write() / done_writing() without a request iterator: the requests
    go to the interceptors as an async iterator fed by them."""

    def _requests(self, request_iterator):
        self._writes = None
        self._done_writing_flag = False
        if request_iterator is not None:
            return request_iterator
        self._writes = asyncio.Queue()
        return self._feed()

    async def _feed(self):
        while True:
            item = await self._writes.get()
            if item is _base.EOF:
                return
            yield item

    async def write(self, request):
        if self._writes is None:
            raise _base.UsageError("The iterator and read/write APIs may not be mixed on "
                                   "a single RPC.")
        if self._done_writing_flag:
            raise asyncio.InvalidStateError('RPC is half closed after calling "done_writing".')
        if self.done():
            raise asyncio.InvalidStateError("RPC already finished.")
        self._writes.put_nowait(request)
        await asyncio.sleep(0)
        if self.done():
            call = self._call_now()
            if call is not None and await call.code() is not StatusCode.OK:
                raise _base.AioRpcError(await call.code(), await call.initial_metadata(),
                                        await call.trailing_metadata(), await call.details(),
                                        await call.debug_error_string())

    async def done_writing(self):
        if self._writes is None:
            raise _base.UsageError("The iterator and read/write APIs may not be mixed on "
                                   "a single RPC.")
        if not self._done_writing_flag:
            self._done_writing_flag = True
            self._writes.put_nowait(_base.EOF)
            await asyncio.sleep(0)


class InterceptedUnaryUnaryCall(_UnaryResponseMixin, _InterceptedCall, _base.UnaryUnaryCall):
    async def _intercept(self, interceptor, continuation, details, request):
        return await interceptor.intercept_unary_unary(continuation, details, request)


class InterceptedUnaryStreamCall(_StreamResponseMixin, _InterceptedCall, _base.UnaryStreamCall):
    _iterator_class = _UnaryStreamResponseIterator

    async def _intercept(self, interceptor, continuation, details, request):
        return await interceptor.intercept_unary_stream(continuation, details, request)


class InterceptedStreamUnaryCall(_UnaryResponseMixin, _StreamRequestMixin, _InterceptedCall,
                                 _base.StreamUnaryCall):
    def __init__(self, interceptors, request_iterator, details, loop, invoke):
        request_iterator = self._requests(request_iterator)
        _InterceptedCall.__init__(self, interceptors, request_iterator, details, loop, invoke)

    async def _intercept(self, interceptor, continuation, details, request_iterator):
        return await interceptor.intercept_stream_unary(continuation, details, request_iterator)


class InterceptedStreamStreamCall(_StreamResponseMixin, _StreamRequestMixin, _InterceptedCall,
                                  _base.StreamStreamCall):
    _iterator_class = _StreamStreamResponseIterator

    def __init__(self, interceptors, request_iterator, details, loop, invoke):
        request_iterator = self._requests(request_iterator)
        _InterceptedCall.__init__(self, interceptors, request_iterator, details, loop, invoke)

    async def _intercept(self, interceptor, continuation, details, request_iterator):
        return await interceptor.intercept_stream_stream(continuation, details,
                                                         request_iterator)


__all__ = ("ClientCallDetails", "ClientInterceptor", "UnaryUnaryClientInterceptor",
           "UnaryStreamClientInterceptor", "StreamUnaryClientInterceptor",
           "StreamStreamClientInterceptor", "InterceptedUnaryUnaryCall",
           "InterceptedUnaryStreamCall", "InterceptedStreamUnaryCall",
           "InterceptedStreamStreamCall", "UnaryUnaryCallResponse", "Metadata")
