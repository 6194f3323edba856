"""rgrpc: grpcio's client API over librgrpc (a Rust gRPC client), via ctypes.

Use it where you would use grpcio's client::

    import rgrpc as grpc

    with grpc.insecure_channel("localhost:50051") as channel:
        stub = helloworld_pb2_grpc.GreeterStub(channel)
        reply = stub.SayHello(helloworld_pb2.HelloRequest(name="you"), timeout=5)

Only the client side exists (no ``grpc.server``); see README.md for what
works and what waits for the C library.
"""

from __future__ import annotations

import sys as _sys

from . import _lib
from ._api import (
    AuthMetadataContext,
    AuthMetadataPlugin,
    AuthMetadataPluginCallback,
    Call,
    CallCredentials,
    Channel,
    ChannelConnectivity,
    ChannelCredentials,
    ClientCallDetails,
    Compression,
    Future,
    FutureCancelledError,
    FutureTimeoutError,
    LocalConnectionType,
    RpcContext,
    RpcError,
    Status,
    StatusCode,
    StreamStreamClientInterceptor,
    StreamStreamMultiCallable,
    StreamUnaryClientInterceptor,
    StreamUnaryMultiCallable,
    UnaryStreamClientInterceptor,
    UnaryStreamMultiCallable,
    UnaryUnaryClientInterceptor,
    UnaryUnaryMultiCallable,
)
from ._channel import Channel as _Channel
from ._connectivity import channel_ready_future
from ._credentials import (
    access_token_call_credentials,
    composite_call_credentials,
    composite_channel_credentials,
    local_channel_credentials,
    metadata_call_credentials,
    secure_channel,
    ssl_channel_credentials,
)
from ._interceptor import intercept_channel
from ._log import set_trace, set_verbosity
from ._patch import is_patched, patch_grpcio, patched_grpcio, unpatch_grpcio

from ._version import VERSION as __version__  # from Cargo.toml

#: What ``grpc.__version__`` says when rgrpc is installed as ``grpc``
#: (:func:`install_as_grpc`): the grpcio release whose client API this
#: binding follows (libraries check it: google-auth warns below 1.83).
#: Kept here, not in _version.py, which built packages rewrite.
GRPCIO_API_VERSION = "1.85.0"

#: Path of the librgrpc that was loaded.
library_path = _lib.library_path
#: Version string of that library, e.g. "rgrpc/0.1.0 (h2/... tokio/...)".
library_version = _lib.version()


class _Features(object):
    """What librgrpc offers beyond the basics. Every librgrpc this package
    loads has all of it (one without is refused at import); kept for code
    that checks."""

    compression = True
    response_encoding = True
    tls = True
    local_credentials = True
    connectivity = True


#: What that library offers beyond the basics (``features.tls``, ...): all of it.
features = _Features()


def insecure_channel(target, options=None, compression=None):
    """A plaintext channel to ``target`` (``host:port``, ``dns:///host:port``,
    ``ipv4:a:p``, ``ipv6:[a]:p``, ``unix:/path``).

    ``options``: grpcio's ``[(key, value), ...]`` channel arguments; keys
    this library does not know or support yet are ignored with a
    RuntimeWarning (grpcio ignores unknown keys). ``compression``: the
    default Compression for messages sent on the channel.
    """
    return _Channel(target, options, compression)


def channel_snapshot(channel):
    """A snapshot of ``channel`` as a dict, like channelz but in-process
    (rgrpc's own; grpcio has no equivalent): ``target``, ``state``,
    ``policy``, ``resolution`` (``addresses``, ``error``), ``subchannels``
    (``address``, ``state``, ``last_failure``, ``connect_attempts``,
    ``connect_failures``, ``goaways``, ``breaks``), ``calls`` (``started``,
    ``succeeded``, ``failed``, ``active``), ``streams_open``, ``keepalive``.
    Works on a channel from ``intercept_channel`` too."""
    import json
    from ctypes import byref, c_void_p

    from ._results import take_buffer

    while not isinstance(channel, _Channel) and hasattr(channel, "_channel"):
        channel = channel._channel
    if not isinstance(channel, _Channel):
        raise TypeError("channel_snapshot needs an rgrpc channel, not %r" % (channel,))
    out = c_void_p()
    rc = _lib.lib.rgrpc_channel_snapshot(channel._native(), byref(out))
    if rc != _lib.Result.OK:
        raise ValueError(_lib.result_str(rc))
    return json.loads(take_buffer(out.value).decode("utf-8"))


def shutdown():
    """Stops rgrpc for good (rgrpc's own, like ``curl_global_cleanup``;
    grpcio has no equivalent): closes every channel (their active calls end
    CANCELLED), stops the library's threads and frees what it keeps for the
    process, so a program that ends with it leaves nothing behind under a
    leak checker. Call it at exit, when no other thread uses rgrpc.
    Objects still held stay usable for reading and closing; anything that
    needs the library afterwards (a new channel, a call) fails. Calling it
    again does nothing. Raises RuntimeError where it would wait for itself
    (from a callback the library runs)."""
    rc = _lib.lib.rgrpc_shutdown()
    if rc != _lib.Result.OK:
        raise RuntimeError(_lib.result_str(rc))


def keep_call_stats(on=True):
    """Keep each call's statistics after it ends, for :func:`call_stats`
    (rgrpc's own; off by default: reading them costs a library call per
    RPC). A call that is still running can be read without it."""
    from . import _call

    _call._keep_stats[0] = bool(on)


def call_stats(call):
    """A call's statistics as a dict (rgrpc's own; grpcio has none):
    ``attempts`` (HTTP/2 streams opened, retries included), ``retries``
    (by the service config's retry or hedging policy), ``transparent_retries``
    (requests that had not reached the server's application), messages and
    bytes each way (``messages_sent``, ``bytes_sent``, ``wire_bytes_sent``,
    ``messages_received``, ``bytes_received``, ``wire_bytes_received``),
    ``pick_wait``, ``first_response`` and ``total`` in seconds, ``ended``.
    ``call`` is what a multi-callable's ``with_call``, ``future`` or a
    streaming call returns. After the call ended this needs
    :func:`keep_call_stats` turned on before the call started."""
    from ._call import read_stats

    st = getattr(call, "_state", None)
    if st is None:
        raise TypeError("call_stats needs an rgrpc call, not %r" % (call,))
    h = st.handle
    if h is not None:
        return read_stats(h)
    if st.stats is not None:
        return dict(st.stats)
    raise ValueError("this call's statistics were not kept: call "
                     "rgrpc.keep_call_stats(True) before making it")


def set_worker_threads(n):
    """Sets librgrpc's background thread count; only before the first call
    (same as the RGRPC_WORKER_THREADS environment variable)."""
    rc = _lib.lib.rgrpc_runtime_set_worker_threads(int(n))
    if rc != _lib.Result.OK:
        raise ValueError(_lib.result_str(rc))


def install_as_grpc(force=False):
    """Makes ``import grpc`` give rgrpc, for code (such as grpcio-tools
    generated ``*_pb2_grpc.py`` modules) that cannot be edited. Call it
    before importing that code. Refuses when the real grpc is already
    imported, unless ``force``.

    ``grpc`` is then a module of its own whose attributes are rgrpc's, with
    ``grpc.__version__`` the grpcio API level rgrpc implements
    (:data:`GRPCIO_API_VERSION`; ``rgrpc.__version__`` stays rgrpc's), and
    the ``grpc.*`` submodules grpcio users import are rgrpc's modules:
    ``grpc.aio``, ``grpc.experimental``, ``grpc.experimental.aio``,
    ``grpc.compression``, ``grpc._utilities``, ``grpc._channel``,
    ``grpc._common``, ``grpc._interceptor``, ``grpc.aio._call``,
    ``grpc.aio._base_call``, ``grpc.aio._channel``,
    ``grpc.aio._interceptor``; so ``grpc._channel._InactiveRpcError`` is the
    class rgrpc raises."""
    import types

    current = _sys.modules.get("grpc")
    if current is not None and not getattr(current, "_rgrpc_alias", False) and not force:
        raise RuntimeError("grpc is already imported; call install_as_grpc() earlier")
    from . import (_channel, _common, _interceptor, _utilities, aio, compression,
                   experimental)
    from .aio import _base as _aio_base, _call as _aio_call, _channel as _aio_channel
    from .aio import _interceptor as _aio_interceptor

    me = _sys.modules[__name__]
    grpc = types.ModuleType("grpc", me.__doc__)
    for k, v in vars(me).items():
        if k not in ("__name__", "__spec__", "__loader__", "__path__", "__file__",
                     "__package__", "__getattr__"):
            grpc.__dict__[k] = v
    grpc.__version__ = GRPCIO_API_VERSION
    grpc.__getattr__ = __getattr__
    grpc._rgrpc_alias = True
    subs = {
        "_utilities": _utilities, "experimental": experimental, "compression": compression,
        "aio": aio, "_channel": _channel, "_common": _common, "_interceptor": _interceptor,
    }
    aio_subs = {"_call": _aio_call, "_base_call": _aio_base, "_channel": _aio_channel,
                "_interceptor": _aio_interceptor}
    _sys.modules["grpc"] = grpc
    for name, mod in subs.items():
        _sys.modules["grpc." + name] = mod
        setattr(grpc, name, mod)
    for name, mod in aio_subs.items():
        _sys.modules["grpc.aio." + name] = mod
        _sys.modules["grpc.experimental.aio." + name] = mod
    aio._base_call = _aio_base
    _sys.modules["grpc.experimental.aio"] = aio
    experimental.aio = aio


_SERVER_NAMES = frozenset((
    "server", "Server", "ServerCredentials", "ServerInterceptor", "ServicerContext",
    "ssl_server_credentials", "ssl_server_certificate_configuration",
    "dynamic_ssl_server_credentials", "local_server_credentials",
    "insecure_server_credentials", "alts_server_credentials", "xds_server_credentials",
    "unary_unary_rpc_method_handler", "unary_stream_rpc_method_handler",
    "stream_unary_rpc_method_handler", "stream_stream_rpc_method_handler",
    "method_handlers_generic_handler", "GenericRpcHandler", "ServiceRpcHandler",
    "RpcMethodHandler", "HandlerCallDetails", "ServerCertificateConfiguration",
))


def __getattr__(name):
    if name in _SERVER_NAMES:
        raise AttributeError(
            "rgrpc is a gRPC client library: grpc.%s (server side) is not provided; "
            "use grpcio for servers" % name
        )
    if name in ("compression", "experimental", "_utilities", "aio", "_common"):
        import importlib

        return importlib.import_module("." + name, __name__)
    raise AttributeError("module 'rgrpc' has no attribute %r" % name)


__all__ = (
    "AuthMetadataContext", "AuthMetadataPlugin", "AuthMetadataPluginCallback", "Call",
    "CallCredentials", "Channel", "ChannelConnectivity", "ChannelCredentials",
    "ClientCallDetails", "Compression", "Future", "FutureCancelledError",
    "FutureTimeoutError", "LocalConnectionType", "RpcContext", "RpcError", "Status",
    "StatusCode", "StreamStreamClientInterceptor", "StreamStreamMultiCallable",
    "StreamUnaryClientInterceptor", "StreamUnaryMultiCallable",
    "UnaryStreamClientInterceptor", "UnaryStreamMultiCallable",
    "UnaryUnaryClientInterceptor", "UnaryUnaryMultiCallable",
    "access_token_call_credentials", "channel_ready_future", "composite_call_credentials",
    "composite_channel_credentials", "insecure_channel", "intercept_channel",
    "local_channel_credentials", "metadata_call_credentials", "secure_channel",
    "ssl_channel_credentials", "install_as_grpc", "set_worker_threads", "channel_snapshot",
    "shutdown",
    "call_stats", "keep_call_stats", "patch_grpcio", "unpatch_grpcio", "patched_grpcio",
    "is_patched", "GRPCIO_API_VERSION",
    "set_trace", "set_verbosity",
)
