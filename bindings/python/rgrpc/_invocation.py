"""Starting an RPC: what every multi-callable does before and when it
hands a call to librgrpc.

* Per-call options: timeout, metadata (ASCII and ``-bin``), wait_for_ready,
  compression, and the metadata of call credentials, as an
  ``rgrpc_call_options *``.
* Request serialization and response deserialization.
* ``LocalFailure``: an RPC that fails before it reaches the library (bad
  metadata, a serializer error, a credentials plugin error); the callers
  turn it into the ``RpcError`` grpcio raises.
* ``MultiCallable``: the base of the four multi-callables (method name,
  serializers, options, ``rgrpc_call_start``).
"""

from __future__ import annotations

import logging
import math
import time
from ctypes import byref, c_void_p

from ._api import StatusCode
from ._lib import Result, channel_error, lib, result_name, result_str
from ._runtime import Handle

_LOGGER = logging.getLogger("rgrpc")

_OK = Result.OK

_rgrpc_call_options_free = lib.rgrpc_call_options_free


class LocalFailure(Exception):
    """An RPC that fails before it reaches the library (bad metadata, a
    serializer error, a credentials plugin error)."""

    def __init__(self, code, details):
        Exception.__init__(self, details)
        self.code = code
        self.details = details


# ---------------------------------------------------------------------------
# Call options


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
            raise LocalFailure(
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
                    raise LocalFailure(
                        StatusCode.INTERNAL,
                        "Invalid metadata: %s" % (why.decode("utf-8", "replace") or result_str(rc)),
                    )
        if wait_for_ready is not None:
            lib.rgrpc_call_options_set_wait_for_ready(opts, bool(wait_for_ready))
        if compression is not None:
            rc = lib.rgrpc_call_options_set_compression(opts, int(compression))
            if rc != _OK:
                raise ValueError("unsupported compression %r" % (compression,))
    except BaseException:
        _rgrpc_call_options_free(opts)
        raise
    return opts


def start_error(rc, channel):
    """The exception for a call that ``rgrpc_call_start`` (or
    ``rgrpc_call_unary_async``) refused on the native ``channel`` with
    ``rc``: grpcio's for a closed channel, else INTERNAL with the library's
    reason (``rgrpc_channel_last_error``; read it on the failing thread)."""
    if rc == Result.CHANNEL_CLOSED:
        return ValueError("Cannot invoke RPC: Channel closed!")
    why = channel_error(channel, rc)
    if rc == Result.INVALID_METHOD:
        # e.g. 'invalid method: "Foo" must start with '/' (...)'
        if why.lower().startswith("invalid method: "):
            why = why[len("invalid method: "):]
        return LocalFailure(StatusCode.INTERNAL, "Invalid method: %s" % why)
    return LocalFailure(StatusCode.INTERNAL, "rgrpc: %s (%s)" % (why, result_name(rc)))


# ---------------------------------------------------------------------------
# Messages


def serialize(serializer, message):
    if serializer is None:
        return message if isinstance(message, bytes) else bytes(message)
    return serializer(message)


def deserialize(deserializer, data):
    if deserializer is None:
        return data
    return deserializer(data)


def serialize_or_fail(serializer, request):
    try:
        data = serialize(serializer, request)
    except Exception:
        _LOGGER.exception("Exception serializing message!")
        raise LocalFailure(StatusCode.INTERNAL, "Exception serializing request!") from None
    if not isinstance(data, bytes):
        try:
            data = bytes(data)
        except Exception:
            raise LocalFailure(StatusCode.INTERNAL, "Exception serializing request!") from None
    return data


# ---------------------------------------------------------------------------
# The multi-callables' common part


class MultiCallable(object):
    """What the four multi-callables share: the channel, the method and the
    serializers; per-call options; starting a call."""

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
        call = c_void_p()
        try:
            ch = self._channel._native()
            rc = lib.rgrpc_call_start(ch, self._method, opts, byref(call))
        finally:
            if opts:
                _rgrpc_call_options_free(opts)
        if rc != _OK:
            raise start_error(rc, ch)
        return Handle(call.value)

