"""grpcio's ``grpc.experimental`` client helpers: insecure credentials and
the single-call functions that generated code's static methods use."""

from __future__ import annotations

import collections
import threading

from .._credentials import insecure_channel_credentials

__all__ = ("insecure_channel_credentials", "unary_unary", "unary_stream", "stream_unary",
           "stream_stream", "UsageError", "ExperimentalApiWarning")


class UsageError(Exception):
    """Raised by the experimental API when it is misused."""


class ExperimentalApiWarning(Warning):
    """Warns about the use of an experimental API."""


_MAX_CHANNELS = 64
_channels = collections.OrderedDict()
_lock = threading.Lock()


def _channel(target, options, channel_credentials, insecure, compression):
    import rgrpc

    if insecure and channel_credentials is not None:
        raise ValueError("insecure=True and channel_credentials are mutually exclusive")
    key = (target, tuple(options or ()), id(channel_credentials), bool(insecure), compression)
    with _lock:
        ch = _channels.get(key)
        if ch is not None:
            _channels.move_to_end(key)
            return ch
    if insecure:
        ch = rgrpc.insecure_channel(target, options, compression)
    else:
        creds = channel_credentials or rgrpc.ssl_channel_credentials()
        ch = rgrpc.secure_channel(target, creds, options, compression)
    with _lock:
        _channels[key] = ch
        while len(_channels) > _MAX_CHANNELS:
            _channels.popitem(last=False)
    return ch


def _call(kind, request, target, method, request_serializer, response_deserializer, options,
          channel_credentials, insecure, call_credentials, compression, wait_for_ready,
          timeout, metadata, _registered_method):
    ch = _channel(target, options, channel_credentials, insecure, compression)
    mc = getattr(ch, kind)(method, request_serializer, response_deserializer,
                           _registered_method)
    return mc(request, timeout=timeout, metadata=metadata, credentials=call_credentials,
              wait_for_ready=True if wait_for_ready is None else wait_for_ready,
              compression=compression)


def unary_unary(request, target, method, request_serializer=None, response_deserializer=None,
                options=(), channel_credentials=None, insecure=False, call_credentials=None,
                compression=None, wait_for_ready=None, timeout=60.0, metadata=None,
                _registered_method=False):
    """One unary-unary call to ``target`` on a cached channel."""
    return _call("unary_unary", request, target, method, request_serializer,
                 response_deserializer, options, channel_credentials, insecure,
                 call_credentials, compression, wait_for_ready, timeout, metadata,
                 _registered_method)


def unary_stream(request, target, method, request_serializer=None, response_deserializer=None,
                 options=(), channel_credentials=None, insecure=False, call_credentials=None,
                 compression=None, wait_for_ready=None, timeout=60.0, metadata=None,
                 _registered_method=False):
    """One unary-stream call; returns the response iterator."""
    return _call("unary_stream", request, target, method, request_serializer,
                 response_deserializer, options, channel_credentials, insecure,
                 call_credentials, compression, wait_for_ready, timeout, metadata,
                 _registered_method)


def stream_unary(request_iterator, target, method, request_serializer=None,
                 response_deserializer=None, options=(), channel_credentials=None,
                 insecure=False, call_credentials=None, compression=None,
                 wait_for_ready=None, timeout=60.0, metadata=None, _registered_method=False):
    """One stream-unary call."""
    return _call("stream_unary", request_iterator, target, method, request_serializer,
                 response_deserializer, options, channel_credentials, insecure,
                 call_credentials, compression, wait_for_ready, timeout, metadata,
                 _registered_method)


def stream_stream(request_iterator, target, method, request_serializer=None,
                  response_deserializer=None, options=(), channel_credentials=None,
                  insecure=False, call_credentials=None, compression=None,
                  wait_for_ready=None, timeout=60.0, metadata=None, _registered_method=False):
    """One stream-stream call; returns the response iterator."""
    return _call("stream_stream", request_iterator, target, method, request_serializer,
                 response_deserializer, options, channel_credentials, insecure,
                 call_credentials, compression, wait_for_ready, timeout, metadata,
                 _registered_method)


def __getattr__(name):
    if name == "aio":  # grpcio's older name of grpc.aio
        from .. import aio

        return aio
    raise AttributeError("module 'rgrpc.experimental' has no attribute %r" % name)
