"""The public, implementation-free part of the API: enums, abstract classes
and exceptions, with grpcio's names, values and method signatures so that
code written against grpcio type-checks and behaves the same."""

from __future__ import annotations

import abc
import enum

# ---------------------------------------------------------------------------
# Exceptions


class _Exception(Exception):
    """An empty base of rgrpc's exception classes. ``patch_grpcio()``
    replaces it by grpcio's class in their ``__bases__``, which Python
    allows only from a base of the same layout as the new one (a Python
    class), not from ``Exception`` itself."""


class RpcError(_Exception):
    """Raised by RPC invocations that end with a non-OK status.

    Every instance raised by rgrpc is also a :class:`Call` (``code()``,
    ``details()``, ``initial_metadata()``, ``trailing_metadata()``).
    """


class FutureTimeoutError(_Exception):
    """A :class:`Future` did not complete within the given timeout."""


class FutureCancelledError(_Exception):
    """The computation of a :class:`Future` was cancelled."""


# ---------------------------------------------------------------------------
# Enums


@enum.unique
class StatusCode(enum.Enum):
    """gRPC status codes: each value is ``(code number, lowercase name)``."""

    OK = (0, "ok")
    CANCELLED = (1, "cancelled")
    UNKNOWN = (2, "unknown")
    INVALID_ARGUMENT = (3, "invalid argument")
    DEADLINE_EXCEEDED = (4, "deadline exceeded")
    NOT_FOUND = (5, "not found")
    ALREADY_EXISTS = (6, "already exists")
    PERMISSION_DENIED = (7, "permission denied")
    RESOURCE_EXHAUSTED = (8, "resource exhausted")
    FAILED_PRECONDITION = (9, "failed precondition")
    ABORTED = (10, "aborted")
    OUT_OF_RANGE = (11, "out of range")
    UNIMPLEMENTED = (12, "unimplemented")
    INTERNAL = (13, "internal")
    UNAVAILABLE = (14, "unavailable")
    DATA_LOSS = (15, "data loss")
    UNAUTHENTICATED = (16, "unauthenticated")


STATUS_CODES_BY_NUMBER = {c.value[0]: c for c in StatusCode}


@enum.unique
class ChannelConnectivity(enum.Enum):
    """Channel connectivity states: ``(number, name)`` as grpcio."""

    IDLE = (0, "idle")
    CONNECTING = (1, "connecting")
    READY = (2, "ready")
    TRANSIENT_FAILURE = (3, "transient failure")
    SHUTDOWN = (4, "shutdown")


CONNECTIVITY_BY_NUMBER = {c.value[0]: c for c in ChannelConnectivity}


@enum.unique
class Compression(enum.IntEnum):
    """Message compression algorithms (numbered as C-core and librgrpc)."""

    NoCompression = 0
    Deflate = 1
    Gzip = 2


@enum.unique
class LocalConnectionType(enum.Enum):
    """Kinds of local connection for :func:`local_channel_credentials`."""

    UDS = 0
    LOCAL_TCP = 1


# ---------------------------------------------------------------------------
# Futures, contexts, calls


class Future(abc.ABC):
    """The result of a computation that may not have finished yet."""

    @abc.abstractmethod
    def cancel(self):
        """Tries to cancel; True if the computation was cancelled by this call."""
        raise NotImplementedError()

    @abc.abstractmethod
    def cancelled(self):
        """True if the computation was cancelled before it finished."""
        raise NotImplementedError()

    @abc.abstractmethod
    def running(self):
        """True while the computation is still going on."""
        raise NotImplementedError()

    @abc.abstractmethod
    def done(self):
        """True once the computation finished or was cancelled."""
        raise NotImplementedError()

    @abc.abstractmethod
    def result(self, timeout=None):
        """The value; raises the computation's exception,
        FutureTimeoutError or FutureCancelledError."""
        raise NotImplementedError()

    @abc.abstractmethod
    def exception(self, timeout=None):
        """The exception of the computation, or None when it succeeded."""
        raise NotImplementedError()

    @abc.abstractmethod
    def traceback(self, timeout=None):
        """The traceback of the computation's exception, or None."""
        raise NotImplementedError()

    @abc.abstractmethod
    def add_done_callback(self, fn):
        """Calls ``fn(self)`` once done (at once if it already is)."""
        raise NotImplementedError()


class RpcContext(abc.ABC):
    """State shared by every kind of RPC."""

    @abc.abstractmethod
    def is_active(self):
        """True while the RPC has not ended."""
        raise NotImplementedError()

    @abc.abstractmethod
    def time_remaining(self):
        """Seconds left before the deadline, or None without one."""
        raise NotImplementedError()

    @abc.abstractmethod
    def cancel(self):
        """Cancels the RPC (idempotent)."""
        raise NotImplementedError()

    @abc.abstractmethod
    def add_callback(self, callback):
        """Registers a no-argument callable run when the RPC ends.
        Returns False (and never calls it) if the RPC already ended."""
        raise NotImplementedError()


class Call(RpcContext, metaclass=abc.ABCMeta):
    """The client-side view of an RPC."""

    @abc.abstractmethod
    def initial_metadata(self):
        """The server's initial metadata (blocks until it arrived)."""
        raise NotImplementedError()

    @abc.abstractmethod
    def trailing_metadata(self):
        """The server's trailing metadata (blocks until the RPC ended)."""
        raise NotImplementedError()

    @abc.abstractmethod
    def code(self):
        """The StatusCode of the RPC (blocks until it ended)."""
        raise NotImplementedError()

    @abc.abstractmethod
    def details(self):
        """The status details of the RPC (blocks until it ended)."""
        raise NotImplementedError()


class Status(abc.ABC):
    """An RPC status: ``code``, ``details`` and ``trailing_metadata``."""


# ---------------------------------------------------------------------------
# Credentials


class ChannelCredentials(object):
    """How a channel authenticates the server (and itself). Opaque; make
    one with :func:`ssl_channel_credentials`, :func:`local_channel_credentials`
    or :func:`composite_channel_credentials`."""

    def __init__(self, credentials):
        self._credentials = credentials


class CallCredentials(object):
    """Per-call credentials (metadata added to each call). Opaque; make one
    with :func:`access_token_call_credentials`,
    :func:`metadata_call_credentials` or :func:`composite_call_credentials`."""

    def __init__(self, credentials):
        self._credentials = credentials


class AuthMetadataContext(abc.ABC):
    """Given to an :class:`AuthMetadataPlugin`: ``service_url`` and
    ``method_name`` of the call being authenticated."""


class AuthMetadataPluginCallback(abc.ABC):
    """Given to an :class:`AuthMetadataPlugin`; call it once with
    ``(metadata, error)``: metadata to add, or an exception (or None)."""

    def __call__(self, metadata, error):
        raise NotImplementedError()


class AuthMetadataPlugin(abc.ABC):
    """Supplies metadata for each call: ``plugin(context, callback)``; it
    may answer later, from another thread."""

    def __call__(self, context, callback):
        raise NotImplementedError()


# ---------------------------------------------------------------------------
# Interceptors


class ClientCallDetails(abc.ABC):
    """What an interceptor may inspect and replace: ``method``, ``timeout``,
    ``metadata``, ``credentials``, ``wait_for_ready``, ``compression``."""


class UnaryUnaryClientInterceptor(abc.ABC):
    @abc.abstractmethod
    def intercept_unary_unary(self, continuation, client_call_details, request):
        """``continuation(client_call_details, request)`` proceeds with the
        call and returns an object that is both a Call and a Future; return
        such an object (usually the one continuation returned)."""
        raise NotImplementedError()


class UnaryStreamClientInterceptor(abc.ABC):
    @abc.abstractmethod
    def intercept_unary_stream(self, continuation, client_call_details, request):
        """``continuation(client_call_details, request)`` returns an object
        that is a Call and an iterator of responses; return such an object."""
        raise NotImplementedError()


class StreamUnaryClientInterceptor(abc.ABC):
    @abc.abstractmethod
    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        """As intercept_unary_unary, with an iterator of requests."""
        raise NotImplementedError()


class StreamStreamClientInterceptor(abc.ABC):
    @abc.abstractmethod
    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        """As intercept_unary_stream, with an iterator of requests."""
        raise NotImplementedError()


# ---------------------------------------------------------------------------
# Channel and multi-callables


class Channel(abc.ABC):
    """A connection to a server, on which RPCs are made."""

    @abc.abstractmethod
    def subscribe(self, callback, try_to_connect=False):
        raise NotImplementedError()

    @abc.abstractmethod
    def unsubscribe(self, callback):
        raise NotImplementedError()

    @abc.abstractmethod
    def unary_unary(self, method, request_serializer=None, response_deserializer=None,
                    _registered_method=False):
        raise NotImplementedError()

    @abc.abstractmethod
    def unary_stream(self, method, request_serializer=None, response_deserializer=None,
                     _registered_method=False):
        raise NotImplementedError()

    @abc.abstractmethod
    def stream_unary(self, method, request_serializer=None, response_deserializer=None,
                     _registered_method=False):
        raise NotImplementedError()

    @abc.abstractmethod
    def stream_stream(self, method, request_serializer=None, response_deserializer=None,
                      _registered_method=False):
        raise NotImplementedError()

    @abc.abstractmethod
    def close(self):
        raise NotImplementedError()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.close()
        return False


class UnaryUnaryMultiCallable(abc.ABC):
    @abc.abstractmethod
    def __call__(self, request, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        raise NotImplementedError()

    @abc.abstractmethod
    def with_call(self, request, timeout=None, metadata=None, credentials=None,
                  wait_for_ready=None, compression=None):
        raise NotImplementedError()

    @abc.abstractmethod
    def future(self, request, timeout=None, metadata=None, credentials=None,
               wait_for_ready=None, compression=None):
        raise NotImplementedError()


class UnaryStreamMultiCallable(abc.ABC):
    @abc.abstractmethod
    def __call__(self, request, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        raise NotImplementedError()


class StreamUnaryMultiCallable(abc.ABC):
    @abc.abstractmethod
    def __call__(self, request_iterator, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        raise NotImplementedError()

    @abc.abstractmethod
    def with_call(self, request_iterator, timeout=None, metadata=None, credentials=None,
                  wait_for_ready=None, compression=None):
        raise NotImplementedError()

    @abc.abstractmethod
    def future(self, request_iterator, timeout=None, metadata=None, credentials=None,
               wait_for_ready=None, compression=None):
        raise NotImplementedError()


class StreamStreamMultiCallable(abc.ABC):
    @abc.abstractmethod
    def __call__(self, request_iterator, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        raise NotImplementedError()
