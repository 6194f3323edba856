"""The implementation-free part of ``rgrpc.aio``: grpcio's ``grpc.aio``
names for exceptions, the ``EOF`` marker, and the abstract call, channel
and multi-callable classes (so ``isinstance`` checks written against
grpcio's aio API work)."""

from __future__ import annotations

import abc

from .. import _api


# ---------------------------------------------------------------------------
# Exceptions and EOF


class BaseError(_api._Exception):
    """The base of rgrpc.aio's own exceptions (grpcio's ``aio.BaseError``)."""


class UsageError(BaseError):
    """The API was used wrongly: a call on a closed channel, mixing the
    iterator and read()/write() styles on one call."""


class AbortError(BaseError):
    """Raised by a server's ``context.abort``; here for names only (rgrpc
    is a client library)."""


class InternalError(BaseError):
    """Something went wrong inside the library."""


class _EOFType(object):
    """The marker ``read()`` returns at the end of a response stream."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = object.__new__(cls)
        return cls._instance

    def __bool__(self):
        return False

    def __repr__(self):
        return "<grpc.aio.EOF>"

    def __reduce__(self):
        return "EOF"


EOF = _EOFType()


class AioRpcError(_api.RpcError):
    """An RPC that ended with a non-OK status: a snapshot of it, so the
    methods are plain (not coroutines)."""

    def __init__(self, code, initial_metadata=None, trailing_metadata=None, details=None,
                 debug_error_string=None):
        Exception.__init__(self)  # not super(): patch_grpcio() puts grpcio's AioRpcError in the MRO
        self._code = code
        self._details = details
        self._initial_metadata = initial_metadata
        self._trailing_metadata = trailing_metadata
        self._debug_error_string = debug_error_string

    def code(self):
        return self._code

    def details(self):
        return self._details

    def initial_metadata(self):
        return self._initial_metadata

    def trailing_metadata(self):
        return self._trailing_metadata

    def debug_error_string(self):
        return self._debug_error_string

    def _repr(self):
        return ('<%s of RPC that terminated with:\n\tstatus = %s\n\tdetails = "%s"\n'
                '\tdebug_error_string = "%s"\n>' % (type(self).__name__, self._code,
                                                     self._details, self._debug_error_string))

    def __repr__(self):
        return self._repr()

    def __str__(self):
        return self._repr()

    def __reduce__(self):
        return (type(self), (self._code, self._initial_metadata, self._trailing_metadata,
                             self._details, self._debug_error_string))


# ---------------------------------------------------------------------------
# Calls


class RpcContext(abc.ABC):
    """State shared by every kind of RPC (grpcio's ``aio.RpcContext``)."""

    @abc.abstractmethod
    def cancelled(self):
        """True if the RPC was cancelled (locally)."""

    @abc.abstractmethod
    def done(self):
        """True once the RPC has ended."""

    @abc.abstractmethod
    def time_remaining(self):
        """Seconds left before the deadline, or None without one."""

    @abc.abstractmethod
    def cancel(self):
        """Cancels the RPC; False if it had already ended."""

    @abc.abstractmethod
    def add_done_callback(self, callback):
        """Calls ``callback(call)`` once the RPC has ended."""


class Call(RpcContext, metaclass=abc.ABCMeta):
    """The client's view of an RPC (grpcio's ``aio.Call``)."""

    @abc.abstractmethod
    async def initial_metadata(self):
        """The server's initial metadata (waits for it)."""

    @abc.abstractmethod
    async def trailing_metadata(self):
        """The server's trailing metadata (waits for the end)."""

    @abc.abstractmethod
    async def code(self):
        """The StatusCode (waits for the end)."""

    @abc.abstractmethod
    async def details(self):
        """The status details (waits for the end)."""

    @abc.abstractmethod
    async def wait_for_connection(self):
        """Waits until the request has been handed to the connection."""


class UnaryUnaryCall(Call, metaclass=abc.ABCMeta):
    @abc.abstractmethod
    def __await__(self):
        """``await call`` gives the response (raises AioRpcError)."""


class UnaryStreamCall(Call, metaclass=abc.ABCMeta):
    @abc.abstractmethod
    def __aiter__(self):
        """Iterates over the responses."""

    @abc.abstractmethod
    async def read(self):
        """The next response, or EOF at the end."""


class StreamUnaryCall(Call, metaclass=abc.ABCMeta):
    @abc.abstractmethod
    async def write(self, request):
        """Sends one request (only without a request iterator)."""

    @abc.abstractmethod
    async def done_writing(self):
        """Ends the request stream (idempotent)."""

    @abc.abstractmethod
    def __await__(self):
        """``await call`` gives the response."""


class StreamStreamCall(Call, metaclass=abc.ABCMeta):
    @abc.abstractmethod
    def __aiter__(self):
        """Iterates over the responses."""

    @abc.abstractmethod
    async def read(self):
        """The next response, or EOF at the end."""

    @abc.abstractmethod
    async def write(self, request):
        """Sends one request (only without a request iterator)."""

    @abc.abstractmethod
    async def done_writing(self):
        """Ends the request stream (idempotent)."""


# ---------------------------------------------------------------------------
# Multi-callables and channels


class UnaryUnaryMultiCallable(abc.ABC):
    @abc.abstractmethod
    def __call__(self, request, *, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        """Starts the RPC; returns a UnaryUnaryCall."""


class UnaryStreamMultiCallable(abc.ABC):
    @abc.abstractmethod
    def __call__(self, request, *, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        """Starts the RPC; returns a UnaryStreamCall."""


class StreamUnaryMultiCallable(abc.ABC):
    @abc.abstractmethod
    def __call__(self, request_iterator=None, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        """Starts the RPC; returns a StreamUnaryCall."""


class StreamStreamMultiCallable(abc.ABC):
    @abc.abstractmethod
    def __call__(self, request_iterator=None, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        """Starts the RPC; returns a StreamStreamCall."""


class Channel(abc.ABC):
    """An asyncio channel (grpcio's ``aio.Channel``)."""

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc_val, exc_tb):
        await self.close(None)

    @abc.abstractmethod
    async def close(self, grace=None):
        """Closes the channel; calls still active end CANCELLED."""

    @abc.abstractmethod
    def get_state(self, try_to_connect=False):
        """The ChannelConnectivity state."""

    @abc.abstractmethod
    async def wait_for_state_change(self, last_observed_state):
        """Waits until the state differs from ``last_observed_state``."""

    @abc.abstractmethod
    async def channel_ready(self):
        """Waits until the channel is READY (connecting if needed)."""

    @abc.abstractmethod
    def unary_unary(self, method, request_serializer=None, response_deserializer=None,
                    _registered_method=False):
        """A UnaryUnaryMultiCallable."""

    @abc.abstractmethod
    def unary_stream(self, method, request_serializer=None, response_deserializer=None,
                     _registered_method=False):
        """A UnaryStreamMultiCallable."""

    @abc.abstractmethod
    def stream_unary(self, method, request_serializer=None, response_deserializer=None,
                     _registered_method=False):
        """A StreamUnaryMultiCallable."""

    @abc.abstractmethod
    def stream_stream(self, method, request_serializer=None, response_deserializer=None,
                      _registered_method=False):
        """A StreamStreamMultiCallable."""
