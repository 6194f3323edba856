"""``aio.Channel``, its multi-callables, ``insecure_channel`` and
``secure_channel``.

The native channel is the sync binding's (``rgrpc._channel.Channel``:
options, compression, credentials, call credentials, exit handling are
shared); what is asynchronous is how calls complete: into the completion
queue of the event loop the call is made on (``_cq``). A channel takes a
reference on each loop's queue it uses and gives them back on ``close()``.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from ctypes import byref, c_void_p

from .._api import CONNECTIVITY_BY_NUMBER, ChannelConnectivity
from .._channel import Channel as _SyncChannel
from .._invocation import LocalFailure, MultiCallable, serialize_or_fail
from .._lib import Result, channel_error, lib, result_str
from . import _base, _call, _cq
from ._interceptor import (
    ClientCallDetails,
    InterceptedStreamStreamCall,
    InterceptedStreamUnaryCall,
    InterceptedUnaryStreamCall,
    InterceptedUnaryUnaryCall,
    StreamStreamClientInterceptor,
    StreamUnaryClientInterceptor,
    UnaryStreamClientInterceptor,
    UnaryUnaryClientInterceptor,
)
from ._metadata import Metadata

_OK = Result.OK


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise _base.UsageError("rgrpc.aio calls must be made from a coroutine running "
                               "in an asyncio event loop") from None


class _MultiCallable(object):
    """What the four aio multi-callables share."""

    _kind = None

    def __init__(self, channel, method, request_serializer, response_deserializer,
                 interceptors):
        self._channel = channel
        self._method = method
        self._serializer = request_serializer
        self._deserializer = response_deserializer
        self._interceptors = interceptors

    def _details(self, timeout, metadata, credentials, wait_for_ready):
        method = self._method
        if isinstance(method, str):
            method = method.encode("utf-8")
        return ClientCallDetails(method, timeout, Metadata._create(metadata), credentials,
                                 wait_for_ready)

    def _prepare(self, details, compression):
        """(loop, queue, native channel, method bytes, options, deadline)
        for a call with these details; raises LocalFailure / UsageError."""
        ch = self._channel
        loop = _running_loop()
        queue = ch._queue_for(loop)
        native = ch._native()
        method = details.method
        if isinstance(method, str):
            method = method.encode("utf-8")
        base = MultiCallable(ch._sync, method, None, None)
        md = details.metadata
        md = tuple(md) if md else None
        if details.credentials is not None and not ch._sync._secure:
            # grpcio's aio refuses it when the call is made (its sync API
            # fails the call with UNAUTHENTICATED, as rgrpc's does)
            raise _base.UsageError("Call credentials are only valid on secure channels")
        opts, deadline = base._options(details.timeout, md, details.credentials,
                                       details.wait_for_ready, compression)
        return loop, queue, native, method, opts, deadline

    def _make(self, details, compression, request, cls):
        """The call object for ``details`` (no interceptor left)."""
        ch = self._channel
        try:
            loop, queue, native, method, opts, deadline = self._prepare(details, compression)
        except LocalFailure as e:
            loop = _running_loop()
            call = cls.__new__(cls)
            _call._Call.__init__(call, loop, None, None, None, self._deserializer)
            call._init_requests(None, self._serializer)
            call._response_bytes = None
            call._fail_start(e)
            return call
        try:
            if cls in (_call.UnaryUnaryCall, _call.UnaryStreamCall):
                try:
                    data = serialize_or_fail(self._serializer, request)
                except LocalFailure as e:
                    call = cls.__new__(cls)
                    _call._Call.__init__(call, loop, queue, None, deadline, self._deserializer)
                    call._init_requests(None, self._serializer)
                    call._response_bytes = None
                    call._fail_start(e)
                    return call
                call = cls(loop, queue, ch, native, method, opts, deadline, data,
                           self._deserializer)
            else:
                call = cls(loop, queue, ch, native, method, opts, deadline, request,
                           self._serializer, self._deserializer)
        finally:
            if opts:
                lib.rgrpc_call_options_free(opts)
        if call._code is None:
            ch._track(call)
        return call


class UnaryUnaryMultiCallable(_MultiCallable, _base.UnaryUnaryMultiCallable):
    def __call__(self, request, *, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        details = self._details(timeout, metadata, credentials, wait_for_ready)
        if not self._interceptors:
            self._channel._check_open()
            return self._make(details, compression, request, _call.UnaryUnaryCall)
        self._channel._check_open()
        return InterceptedUnaryUnaryCall(
            self._interceptors, request, details, _running_loop(),
            lambda d, r: self._make(d, compression, r, _call.UnaryUnaryCall))


class UnaryStreamMultiCallable(_MultiCallable, _base.UnaryStreamMultiCallable):
    def __call__(self, request, *, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        details = self._details(timeout, metadata, credentials, wait_for_ready)
        self._channel._check_open()
        if not self._interceptors:
            return self._make(details, compression, request, _call.UnaryStreamCall)
        return InterceptedUnaryStreamCall(
            self._interceptors, request, details, _running_loop(),
            lambda d, r: self._make(d, compression, r, _call.UnaryStreamCall))


class StreamUnaryMultiCallable(_MultiCallable, _base.StreamUnaryMultiCallable):
    def __call__(self, request_iterator=None, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        details = self._details(timeout, metadata, credentials, wait_for_ready)
        self._channel._check_open()
        if not self._interceptors:
            return self._make(details, compression, request_iterator, _call.StreamUnaryCall)
        return InterceptedStreamUnaryCall(
            self._interceptors, request_iterator, details, _running_loop(),
            lambda d, r: self._make(d, compression, r, _call.StreamUnaryCall))


class StreamStreamMultiCallable(_MultiCallable, _base.StreamStreamMultiCallable):
    def __call__(self, request_iterator=None, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        details = self._details(timeout, metadata, credentials, wait_for_ready)
        self._channel._check_open()
        if not self._interceptors:
            return self._make(details, compression, request_iterator, _call.StreamStreamCall)
        return InterceptedStreamStreamCall(
            self._interceptors, request_iterator, details, _running_loop(),
            lambda d, r: self._make(d, compression, r, _call.StreamStreamCall))


class Channel(_base.Channel):
    """An asyncio channel to one target (see :func:`insecure_channel`)."""

    def __init__(self, sync_channel, interceptors):
        self._sync = sync_channel
        self._closed = False
        # loop -> the Queue this channel holds a reference on (weak: a
        # channel left open does not keep a finished loop, whose collection
        # frees its queue)
        self._queues = weakref.WeakKeyDictionary()
        self._active = weakref.WeakSet()
        self._uu, self._us, self._su, self._ss = [], [], [], []
        # An interceptor implementing several kinds runs for each of them
        # (grpcio's aio registers it for the first kind only).
        for i in interceptors or ():
            kinds = 0
            for cls, chain in ((UnaryUnaryClientInterceptor, self._uu),
                               (UnaryStreamClientInterceptor, self._us),
                               (StreamUnaryClientInterceptor, self._su),
                               (StreamStreamClientInterceptor, self._ss)):
                if isinstance(i, cls):
                    chain.append(i)
                    kinds += 1
            if not kinds:
                raise ValueError(
                    "Interceptor %r must be UnaryUnaryClientInterceptor or "
                    "UnaryStreamClientInterceptor or StreamUnaryClientInterceptor or "
                    "StreamStreamClientInterceptor." % (i,))

    # -- plumbing -----------------------------------------------------------

    def _check_open(self):
        if self._closed:
            raise _base.UsageError("Channel is closed.")

    def _native(self):
        self._check_open()
        return self._sync._native()

    def _queue_for(self, loop):
        q = self._queues.get(loop)
        if q is None or q.ptr is None:
            q = _cq.queue_of(loop)
            q.acquire()
            self._queues[loop] = q
        return q

    def _track(self, call):
        self._active.add(call)

    def _forget(self, call):
        self._active.discard(call)

    def _release_queues(self):
        queues, self._queues = list(self._queues.values()), weakref.WeakKeyDictionary()
        for q in queues:
            q.release()

    # -- multi-callables ----------------------------------------------------

    def unary_unary(self, method, request_serializer=None, response_deserializer=None,
                    _registered_method=False):
        return UnaryUnaryMultiCallable(self, method, request_serializer, response_deserializer,
                                       self._uu)

    def unary_stream(self, method, request_serializer=None, response_deserializer=None,
                     _registered_method=False):
        return UnaryStreamMultiCallable(self, method, request_serializer,
                                        response_deserializer, self._us)

    def stream_unary(self, method, request_serializer=None, response_deserializer=None,
                     _registered_method=False):
        return StreamUnaryMultiCallable(self, method, request_serializer,
                                        response_deserializer, self._su)

    def stream_stream(self, method, request_serializer=None, response_deserializer=None,
                      _registered_method=False):
        return StreamStreamMultiCallable(self, method, request_serializer,
                                         response_deserializer, self._ss)

    # -- connectivity -------------------------------------------------------

    def get_state(self, try_to_connect=False):
        if self._closed:
            return ChannelConnectivity.SHUTDOWN
        native = self._native()
        n = lib.rgrpc_channel_get_state(native, False)
        if try_to_connect and n == 0:
            # grpcio returns the state before connecting starts (IDLE), as
            # C-core's check_connectivity_state does; librgrpc's answers
            # after (CONNECTING)
            lib.rgrpc_channel_get_state(native, True)
        return CONNECTIVITY_BY_NUMBER.get(n, ChannelConnectivity.SHUTDOWN)

    async def wait_for_state_change(self, last_observed_state):
        """Waits until the state is no longer ``last_observed_state``."""
        loop = _running_loop()
        queue = self._queue_for(loop)
        native = self._native()
        fut = loop.create_future()

        def done(op, result, data, status, state):
            if not fut.done():
                fut.set_result((result, state))

        rc = queue.start(lambda cq, tag: lib.rgrpc_channel_watch_state_cq(
            native, last_observed_state.value[0], -1, cq, tag), done)
        if rc != _OK:
            raise _base.UsageError("watching the channel's state failed: %s"
                                   % channel_error(native, rc))
        result, _state = await fut
        if result not in (_OK, Result.TIMEOUT) and not self._closed:
            raise RuntimeError("rgrpc: watching the channel's state failed: %s"
                               % result_str(result))

    async def channel_ready(self):
        """Waits until the channel is READY (starting to connect if IDLE)."""
        loop = _running_loop()
        queue = self._queue_for(loop)
        native = self._native()
        fut = loop.create_future()
        future = c_void_p()

        def done(op, result, data, status, state):
            if not fut.done():
                fut.set_result(result)

        rc = queue.start(lambda cq, tag: lib.rgrpc_channel_ready_future_cq(
            native, cq, tag, byref(future)), done)
        if rc != _OK:
            raise _base.UsageError("waiting for READY failed: %s" % channel_error(native, rc))
        try:
            result = await fut
        finally:
            # Cancels it if still pending (its completion still comes).
            lib.rgrpc_ready_future_free(future.value)
        if result != _OK:
            raise _base.UsageError("Channel is closed." if result == Result.CHANNEL_CLOSED
                                   else "channel_ready failed: %s" % result_str(result))

    # -- closing ------------------------------------------------------------

    async def close(self, grace=None):
        """Closes the channel. With ``grace`` (seconds), active calls get
        that long to end on their own first; then every call still active
        is cancelled (CANCELLED) and the connection is closed."""
        if self._closed:
            return
        if grace is not None and grace < 0:
            raise ValueError("grace must be non-negative, got %s." % grace)
        calls = [c for c in list(self._active) if not c.done()]
        self._closed = True
        if grace and calls:
            end = time.monotonic() + grace

            async def wait(c):
                try:
                    await c.code()
                except Exception:
                    pass

            tasks = [asyncio.ensure_future(wait(c)) for c in calls]
            await asyncio.wait(tasks, timeout=max(end - time.monotonic(), 0))
            for t in tasks:
                t.cancel()
        for c in calls:
            c.cancel()
        self._active = weakref.WeakSet()
        self._sync.close()
        self._release_queues()

    def __del__(self):
        try:
            if not self._closed:
                self._closed = True
                self._sync.close()
                self._release_queues()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __repr__(self):
        return "<rgrpc.aio.Channel %s%s>" % (self._sync._target,
                                             " (closed)" if self._closed else "")


def insecure_channel(target, options=None, compression=None, interceptors=None):
    """A plaintext asyncio channel to ``target`` (grpcio's
    ``grpc.aio.insecure_channel``): options and compression as
    :func:`rgrpc.insecure_channel`; ``interceptors``: aio client
    interceptors run for every call."""
    return Channel(_SyncChannel(target, options, compression), interceptors)


def secure_channel(target, credentials, options=None, compression=None, interceptors=None):
    """An asyncio channel authenticated by ``credentials`` (TLS, local or
    composite channel credentials, as :func:`rgrpc.secure_channel`)."""
    from .._credentials import secure_channel as _secure

    return Channel(_secure(target, credentials, options, compression), interceptors)
