"""Channel and call credentials.

* Call credentials (access tokens, metadata plugins, composites) are done
  here in Python: before each call the plugins run and their metadata is
  added to the call's metadata. They are refused on insecure channels (the
  call fails with UNAUTHENTICATED), as grpcio does, and allowed on channels
  made with :func:`local_channel_credentials` (loopback TCP or Unix sockets,
  where nothing leaves the machine) and TLS channels.
* Channel credentials are librgrpc's: ``rgrpc_channel_credentials_tls``
  and ``rgrpc_channel_credentials_local`` (which checks that the target is
  loopback or a Unix socket).
"""

from __future__ import annotations

import collections
import ctypes
import threading
from ctypes import byref, c_void_p

from . import _api
from ._api import LocalConnectionType, StatusCode
from ._invocation import LocalFailure
from ._lib import Result, lib, result_str

# ---------------------------------------------------------------------------
# Payloads kept inside the public ChannelCredentials / CallCredentials


class _Insecure(object):
    __slots__ = ()


class _Ssl(object):
    __slots__ = ("root_certificates", "private_key", "certificate_chain")

    def __init__(self, root_certificates, private_key, certificate_chain):
        self.root_certificates = root_certificates
        self.private_key = private_key
        self.certificate_chain = certificate_chain


class _Local(object):
    __slots__ = ("connect_type",)

    def __init__(self, connect_type):
        self.connect_type = connect_type


class _Composite(object):
    __slots__ = ("channel", "call")

    def __init__(self, channel, call):
        self.channel = channel  # _Ssl or _Local
        self.call = call  # tuple of plugins


class _Plugin(object):
    __slots__ = ("plugin", "name")

    def __init__(self, plugin, name):
        self.plugin = plugin
        self.name = name


def _bytes_or_none(value, what):
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise TypeError("%s must be bytes or None, got %s" % (what, type(value).__name__))


def ssl_channel_credentials(root_certificates=None, private_key=None, certificate_chain=None):
    """TLS credentials: PEM root certificates (None: the system's), and a
    PEM private key + certificate chain for mutual TLS."""
    if (private_key is None) != (certificate_chain is None):
        raise ValueError("private_key and certificate_chain must be given together")
    return _api.ChannelCredentials(
        _Ssl(
            _bytes_or_none(root_certificates, "root_certificates"),
            _bytes_or_none(private_key, "private_key"),
            _bytes_or_none(certificate_chain, "certificate_chain"),
        )
    )


def local_channel_credentials(local_connect_type=LocalConnectionType.LOCAL_TCP):
    """Credentials for a connection that stays on this machine (loopback
    TCP or a Unix socket): plaintext, but call credentials are allowed."""
    if not isinstance(local_connect_type, LocalConnectionType):
        raise TypeError("local_connect_type must be a grpc.LocalConnectionType")
    return _api.ChannelCredentials(_Local(local_connect_type))


def insecure_channel_credentials():
    """Plaintext credentials (the experimental grpcio API); not accepted by
    :func:`secure_channel`."""
    return _api.ChannelCredentials(_Insecure())


def metadata_call_credentials(metadata_plugin, name=None):
    """Call credentials from an :class:`AuthMetadataPlugin`."""
    if not callable(metadata_plugin):
        raise TypeError("metadata_plugin must be callable")
    if name is None:
        name = getattr(metadata_plugin, "__name__", None) or type(metadata_plugin).__name__
    return _api.CallCredentials((_Plugin(metadata_plugin, name),))


class _AccessTokenPlugin(object):
    def __init__(self, token):
        self._md = (("authorization", "Bearer " + token),)

    def __call__(self, context, callback):
        callback(self._md, None)


def access_token_call_credentials(access_token):
    """Call credentials that send ``authorization: Bearer <access_token>``."""
    if not isinstance(access_token, str):
        raise TypeError("access_token must be a str")
    return metadata_call_credentials(_AccessTokenPlugin(access_token), "access_token")


def _plugins_of(call_credentials):
    creds = call_credentials._credentials
    if not isinstance(creds, tuple):
        raise TypeError("expected grpc.CallCredentials")
    return creds


def composite_call_credentials(*call_credentials):
    """Several call credentials applied in order."""
    if len(call_credentials) < 2:
        raise ValueError("composite_call_credentials needs at least two CallCredentials")
    plugins = ()
    for c in call_credentials:
        plugins += _plugins_of(c)
    return _api.CallCredentials(plugins)


def composite_channel_credentials(channel_credentials, *call_credentials):
    """Channel credentials plus call credentials applied to every call."""
    base = channel_credentials._credentials
    plugins = ()
    if isinstance(base, _Composite):
        plugins = base.call
        base = base.channel
    if isinstance(base, _Insecure):
        raise ValueError("call credentials cannot be composed with insecure channel credentials")
    for c in call_credentials:
        plugins += _plugins_of(c)
    return _api.ChannelCredentials(_Composite(base, plugins))


# ---------------------------------------------------------------------------
# secure_channel


def secure_channel(target, credentials, options=None, compression=None):
    """A channel whose connection is authenticated by ``credentials``."""
    from ._channel import Channel

    if not isinstance(credentials, _api.ChannelCredentials):
        # grpcio's own credentials objects are translated (see _patch)
        from ._patch import channel_credentials

        credentials = channel_credentials(credentials, target)
    base = credentials._credentials
    plugins = None
    if isinstance(base, _Composite):
        plugins = base.call
        base = base.channel
    if isinstance(base, _Insecure):
        raise ValueError(
            "secure_channel cannot be called with insecure credentials. "
            "Call insecure_channel instead."
        )
    if isinstance(base, _Local):
        # librgrpc checks the target (loopback or Unix socket) itself.
        creds = lib.rgrpc_channel_credentials_local()
        try:
            return Channel(target, options, compression, _native_creds=creds,
                           _local=True, _call_credentials=plugins)
        finally:
            lib.rgrpc_channel_credentials_free(creds)
    if isinstance(base, _Ssl):
        creds = _native_tls_credentials(base)
        try:
            return Channel(target, options, compression, _native_creds=creds,
                           _call_credentials=plugins)
        finally:
            lib.rgrpc_channel_credentials_free(creds)
    raise TypeError("unsupported channel credentials")


def _native_tls_credentials(ssl):
    """rgrpc_channel_credentials_tls(root, len, cert_chain, len, private_key,
    len, &creds, &err)."""

    def arg(b):
        return (b, len(b)) if b is not None else (None, 0)

    creds = c_void_p()
    err = c_void_p()
    rc = lib.rgrpc_channel_credentials_tls(
        *arg(ssl.root_certificates), *arg(ssl.certificate_chain), *arg(ssl.private_key),
        byref(creds), byref(err))
    if rc != Result.OK:
        msg = (lib.rgrpc_error_message(err.value) or b"").decode("utf-8", "replace")
        lib.rgrpc_error_free(err.value)
        raise ValueError("invalid TLS credentials: %s" % (msg or result_str(rc)))
    return creds.value


# ---------------------------------------------------------------------------
# Applying call credentials to a call


class _AuthMetadataContext(
    collections.namedtuple("AuthMetadataContext", ("service_url", "method_name")),
    _api.AuthMetadataContext,
):
    pass


class _PluginCallback(_api.AuthMetadataPluginCallback):
    def __init__(self):
        self.event = threading.Event()
        self.metadata = None
        self.error = None
        self._lock = threading.Lock()
        self._called = False

    def __call__(self, metadata, error):
        with self._lock:
            if self._called:
                return
            self._called = True
        self.metadata = metadata
        self.error = error
        self.event.set()


def _authority(channel):
    buf = ctypes.create_string_buffer(256)
    n = ctypes.c_size_t()
    if lib.rgrpc_channel_authority(channel._native(), buf, len(buf), byref(n)) != Result.OK:
        return ""
    if n.value >= len(buf):
        buf = ctypes.create_string_buffer(n.value + 1)
        lib.rgrpc_channel_authority(channel._native(), buf, len(buf), byref(n))
    return buf.value.decode("utf-8", "replace")


def apply_call_credentials(channel, method, per_call, metadata, timeout):
    """The call's metadata plus what the call credentials supply; raises
    LocalFailure when they cannot be applied."""
    plugins = ()
    if channel._call_credentials:
        plugins += channel._call_credentials
    if per_call is not None:
        if not isinstance(per_call, _api.CallCredentials):
            from ._patch import call_credentials

            per_call = call_credentials(per_call)  # grpcio's, translated
            if per_call is None:
                raise TypeError("credentials must be grpc.CallCredentials")
        plugins += _plugins_of(per_call)
    if not plugins:
        return metadata
    if not channel._secure:
        raise LocalFailure(
            StatusCode.UNAUTHENTICATED,
            "call credentials need a secure channel: this channel is insecure "
            "(use secure_channel, or local_channel_credentials for loopback/Unix targets)",
        )
    service, _, name = method.lstrip("/").rpartition("/")
    context = _AuthMetadataContext("https://%s/%s" % (_authority(channel), service), name)
    out = list(metadata or ())
    for p in plugins:
        cb = _PluginCallback()
        try:
            p.plugin(context, cb)
        except Exception as e:
            raise LocalFailure(
                StatusCode.UNAUTHENTICATED,
                "Getting metadata from plugin failed with error: %r" % (e,),
            ) from None
        if not cb.event.wait(timeout):
            raise LocalFailure(StatusCode.DEADLINE_EXCEEDED,
                                "Deadline Exceeded while getting metadata from plugin")
        if cb.error is not None:
            raise LocalFailure(
                StatusCode.UNAUTHENTICATED,
                "Getting metadata from plugin failed with error: %s" % (cb.error,),
            )
        if cb.metadata:
            out.extend(tuple(item) for item in cb.metadata)
    return tuple(out)
