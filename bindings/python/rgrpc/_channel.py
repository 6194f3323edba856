"""The Channel class and the translation of grpcio's channel options.

``Channel`` owns one ``rgrpc_channel *``: it makes the four multi-callables
(``_unary``, ``_streams``), forwards ``subscribe`` / ``unsubscribe`` to
``_connectivity``, and ``close()`` ends every active RPC (CANCELLED).
grpcio's ``[(key, value), ...]`` options go to ``rgrpc_channel_options``;
keys the library does not know or support are ignored with a
RuntimeWarning, as grpcio ignores unknown keys.
"""

from __future__ import annotations

import warnings
from ctypes import byref, c_void_p

from . import _api
from . import _call
from . import _runtime
from . import _streams
from . import _unary
from ._lib import Result, lib, result_str
from ._streams import _StreamStreamMultiCallable, _UnaryStreamMultiCallable
from ._unary import _StreamUnaryMultiCallable, _UnaryUnaryMultiCallable

_OK = Result.OK

# The call classes lived in this module: code that names them through it
# (as grpcio code names grpc._channel._InactiveRpcError) still finds them.
_Rendezvous = _call._Rendezvous
_InactiveRpcError = _call._InactiveRpcError
_CompletedCall = _call._CompletedCall
_UnaryFuture = _unary._UnaryFuture
_StreamCall = _streams._StreamCall


# ---------------------------------------------------------------------------
# Channel options


_warned = set()


def _warn_once(key, message):
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(message, RuntimeWarning, stacklevel=4)


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


# ---------------------------------------------------------------------------
# Channel


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
                rc = lib.rgrpc_channel_options_set_default_compression(opts, int(compression))
                if rc != _OK:
                    raise ValueError("unsupported compression %r" % (compression,))
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
    def _get_registered_call_handle(self, method):
        """grpcio's: a handle for a method registered with the C core, passed
        back as ``_registered_method`` (grpcio's single-call functions do it).
        librgrpc needs no registration: the method itself does."""
        return method

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


# More of the names grpcio's grpc._channel has, for code that imports them
# (install_as_grpc makes this module grpc._channel). grpcio's streaming
# calls and futures are _MultiThreadedRendezvous; every rgrpc call object
# (and the error raised) is a _Rendezvous. The multi-callables' classes
# (_UnaryUnaryMultiCallable, ...) are imported above.
_MultiThreadedRendezvous = _call._Rendezvous
_SingleThreadedRendezvous = _call._Rendezvous
