"""``rgrpc.patch_grpcio()``: rgrpc under grpcio's client entry points, with
grpcio's own types, while grpcio keeps serving in the same process.

How (all of it done once, at patch time; nothing is added to a call's path,
patched or not):

* Entry points. ``grpc.insecure_channel``, ``grpc.secure_channel``,
  ``grpc.intercept_channel``, ``grpc.channel_ready_future``,
  ``grpc.aio.insecure_channel`` / ``secure_channel`` (and the same names in
  ``grpc.experimental.aio``) are replaced. ``intercept_channel`` and
  ``channel_ready_future`` still hand a grpcio channel (made before patching)
  to grpcio's own functions.
* Enums and the aio ``EOF`` marker. Every rgrpc module's global that is
  rgrpc's ``StatusCode``, ``ChannelConnectivity`` or ``aio.EOF`` is rebound
  to grpcio's (same member names and values), and the number-to-member
  tables are refilled in place. So every code rgrpc reports *is* a member
  of ``grpc.StatusCode`` (``==``, ``is``, dict keys, ``isinstance`` all
  hold), and ``rgrpc.StatusCode`` is grpcio's too while patched.
* Exceptions. rgrpc's ``RpcError``, ``FutureTimeoutError``,
  ``FutureCancelledError``, ``aio.AioRpcError`` and the aio ``BaseError``
  family get grpcio's classes as bases (``__bases__`` assignment), so what
  rgrpc raises is caught by ``except grpc.RpcError`` /
  ``grpc.aio.AioRpcError`` / ``grpc.FutureTimeoutError``; it is still
  caught by rgrpc's own classes.
* Abstract classes. grpcio's ``Future``, ``Call``, ``RpcContext``,
  ``Channel``, the multi-callables, and ``grpc.aio``'s call and channel
  classes get rgrpc's as virtual subclasses (``register``); grpcio's
  interceptor classes are registered under rgrpc's, so interceptors written
  against grpcio are accepted. Registration cannot be undone: after
  ``unpatch_grpcio()`` rgrpc objects still pass those ``isinstance`` checks
  (they do implement the interfaces).
* Credentials. grpcio's credentials objects are translated where rgrpc
  meets them (``secure_channel``, per-call ``credentials=``): grpcio keeps
  the arguments of its factories on the Cython objects it wraps, readable
  from Python (``_pem_root_certificates``, ``_private_key``,
  ``_certificate_chain``; the metadata plugin; the parts of a composite), so
  objects made before patching, or by grpcio's own composite functions,
  work; grpcio's factories are left alone and their objects stay usable by
  grpcio. The one thing not kept there is the kind of
  ``local_channel_credentials``; ``grpc.local_channel_credentials`` is
  wrapped to note it, and without the note the target says (``unix:`` is
  UDS).
"""

from __future__ import annotations

import contextlib
import sys
import threading

_lock = threading.Lock()
_state = None  # what to undo, while patched


def _rgrpc_modules():
    return [m for name, m in list(sys.modules.items())
            if m is not None and (name == "rgrpc" or name.startswith("rgrpc."))]


def _rebind(pairs):
    """In every loaded rgrpc module, rebinds each global that is ``old`` to
    ``new``, for each (old, new)."""
    by_id = {id(old): new for old, new in pairs}
    olds = {id(old): old for old, _ in pairs}
    for m in _rgrpc_modules():
        d = vars(m)
        for k, v in list(d.items()):
            i = id(v)
            if i in by_id and olds[i] is v:
                d[k] = by_id[i]


def _is_rgrpc(obj):
    return type(obj).__module__.split(".", 1)[0] == "rgrpc"


# ---------------------------------------------------------------------------
# Credentials translation


def _local_type(grpc_creds, target):
    from . import _api

    kind = getattr(grpc_creds, "_rgrpc_local_type", None)
    if kind is None:
        kind = "UDS" if str(target).startswith(("unix:", "unix-abstract:")) else "LOCAL_TCP"
    return getattr(_api.LocalConnectionType, kind)


class _InContext(object):
    __slots__ = ("plugin", "ctx", "__name__")

    def __init__(self, plugin, ctx):
        self.plugin = plugin
        self.ctx = ctx
        self.__name__ = getattr(plugin, "__name__", None) or type(plugin).__name__

    def __call__(self, context, callback):
        # a copy: one context cannot be entered by two threads at once
        self.ctx.copy().run(self.plugin, context, callback)


def _call_plugins_from_cython(cy):
    """rgrpc CallCredentials of a grpcio cygrpc call credentials object."""
    from . import _credentials

    name = type(cy).__name__
    if name == "CompositeCallCredentials":
        parts = [_call_plugins_from_cython(c) for c in cy._call_credentialses]
        return parts[0] if len(parts) == 1 else _credentials.composite_call_credentials(*parts)
    if name == "MetadataPluginCallCredentials":
        wrapper = cy._metadata_plugin
        plugin = getattr(wrapper, "_metadata_plugin", wrapper)  # grpc._plugin_wrapping._Plugin
        token = getattr(plugin, "_access_token", None)
        if type(plugin).__name__ == "AccessTokenAuthMetadataPlugin" and isinstance(token, str):
            return _credentials.access_token_call_credentials(token)
        cname = cy._name
        if isinstance(cname, bytes):
            cname = cname.decode("utf-8", "replace")
        ctx = getattr(wrapper, "_stored_ctx", None)
        if ctx is not None:
            # grpcio runs the plugin in the contextvars context of the
            # credentials' creation (its thread may be one of C-core's)
            plugin = _InContext(plugin, ctx)
        return _credentials.metadata_call_credentials(plugin, cname or None)
    raise TypeError("rgrpc cannot use grpcio call credentials of kind %s" % name)


def _channel_from_cython(cy, grpc_creds, target):
    from . import _credentials

    name = type(cy).__name__
    if name == "SSLChannelCredentials":
        if getattr(cy, "_private_key_signer", None) is not None:
            raise TypeError("rgrpc cannot use grpcio TLS credentials with a private key signer")
        return _credentials.ssl_channel_credentials(
            cy._pem_root_certificates, cy._private_key, cy._certificate_chain)
    if name == "LocalChannelCredentials":
        return _credentials.local_channel_credentials(_local_type(grpc_creds, target))
    if name == "InsecureChannelCredentials":
        return _credentials.insecure_channel_credentials()
    if name == "CompositeChannelCredentials":
        base = _channel_from_cython(cy._channel_credentials, grpc_creds, target)
        calls = [_call_plugins_from_cython(c) for c in cy._call_credentialses]
        return _credentials.composite_channel_credentials(base, *calls)
    raise TypeError("rgrpc cannot use grpcio channel credentials of kind %s" % name)


def channel_credentials(creds, target):
    """rgrpc ChannelCredentials for ``creds`` (rgrpc's, returned as is, or
    grpcio's, translated)."""
    from . import _api

    if isinstance(creds, _api.ChannelCredentials) and _is_rgrpc(getattr(creds, "_credentials", None)):
        return creds
    cy = getattr(creds, "_credentials", None)
    if cy is None:
        raise TypeError("credentials must be grpc.ChannelCredentials, got %r" % (creds,))
    return _channel_from_cython(cy, creds, target)


def call_credentials(creds):
    """rgrpc CallCredentials for grpcio's ``creds`` (None if not grpcio's)."""
    cy = getattr(creds, "_credentials", None)
    if cy is None or type(cy).__module__.split(".", 1)[0] != "grpc":
        return None
    return _call_plugins_from_cython(cy)


# ---------------------------------------------------------------------------
# Patched entry points


def _make_entry_points(grpc, orig):
    from . import _connectivity, _credentials, _interceptor
    from . import insecure_channel as _insecure_channel
    from .aio import _channel as _aio_channel

    def secure_channel(target, credentials, options=None, compression=None):
        creds = channel_credentials(credentials, target)
        if isinstance(creds._credentials, _credentials._Insecure):
            # grpcio takes insecure_channel_credentials() here (its
            # experimental single-call functions rely on it)
            return _insecure_channel(target, options, compression)
        return _credentials.secure_channel(target, creds, options, compression)

    def intercept_channel(channel, *interceptors):
        if _is_rgrpc(channel):
            return _interceptor.intercept_channel(channel, *interceptors)
        return orig["intercept_channel"](channel, *interceptors)

    def channel_ready_future(channel):
        if _is_rgrpc(channel):
            return _connectivity.channel_ready_future(channel)
        return orig["channel_ready_future"](channel)

    def local_channel_credentials(local_connect_type=grpc.LocalConnectionType.LOCAL_TCP):
        creds = orig["local_channel_credentials"](local_connect_type)
        creds._rgrpc_local_type = local_connect_type.name
        return creds

    def aio_secure_channel(target, credentials, options=None, compression=None,
                           interceptors=None):
        creds = channel_credentials(credentials, target)
        if isinstance(creds._credentials, _credentials._Insecure):
            return _aio_channel.insecure_channel(target, options, compression, interceptors)
        return _aio_channel.secure_channel(target, creds, options, compression, interceptors)

    for f in (secure_channel, intercept_channel, channel_ready_future, local_channel_credentials,
              aio_secure_channel):
        f.__module__ = "rgrpc._patch"
    return {
        "insecure_channel": _insecure_channel,
        "secure_channel": secure_channel,
        "intercept_channel": intercept_channel,
        "channel_ready_future": channel_ready_future,
        "local_channel_credentials": local_channel_credentials,
    }, {
        "insecure_channel": _aio_channel.insecure_channel,
        "secure_channel": aio_secure_channel,
    }


_ABC_NAMES = ("Future", "Call", "RpcContext", "Channel", "ClientCallDetails",
              "UnaryUnaryMultiCallable", "UnaryStreamMultiCallable",
              "StreamUnaryMultiCallable", "StreamStreamMultiCallable",
              "AuthMetadataPlugin", "AuthMetadataPluginCallback")
_INTERCEPTOR_NAMES = ("UnaryUnaryClientInterceptor", "UnaryStreamClientInterceptor",
                      "StreamUnaryClientInterceptor", "StreamStreamClientInterceptor")
_AIO_ABC_NAMES = ("Call", "RpcContext", "Channel", "UnaryUnaryCall", "UnaryStreamCall",
                  "StreamUnaryCall", "StreamStreamCall", "UnaryUnaryMultiCallable",
                  "UnaryStreamMultiCallable", "StreamUnaryMultiCallable",
                  "StreamStreamMultiCallable")
_registered = [False]


def _register_abcs(grpc, aio):
    from . import _api
    from .aio import _base, _interceptor as aio_interceptor

    if _registered[0]:
        return
    for n in _ABC_NAMES:
        g, r = getattr(grpc, n, None), getattr(_api, n, None)
        if g is not None and r is not None and hasattr(g, "register"):
            g.register(r)
    for n in _INTERCEPTOR_NAMES:
        getattr(_api, n).register(getattr(grpc, n))
        g = getattr(aio, n, None)
        if g is not None:
            getattr(aio_interceptor, n).register(g)
    from .aio import _metadata

    # grpcio's Metadata.__eq__ takes another Metadata of its class (isinstance)
    # and compares the same _metadata (key -> list of values) that rgrpc's has
    if hasattr(aio, "Metadata") and hasattr(aio.Metadata, "register"):
        aio.Metadata.register(_metadata.Metadata)
    for n in _AIO_ABC_NAMES:
        g, r = getattr(aio, n, None), getattr(_base, n, None)
        if g is not None and r is not None and hasattr(g, "register"):
            g.register(r)
    _registered[0] = True


def _bases_plan(grpc, aio):
    """[(rgrpc class, bases while patched)]"""
    from . import _api
    from .aio import _base

    plan = [
        (_api.RpcError, (grpc.RpcError,)),
        (_api.FutureTimeoutError, (grpc.FutureTimeoutError,)),
        (_api.FutureCancelledError, (grpc.FutureCancelledError,)),
        (_base.AioRpcError, (_api.RpcError, aio.AioRpcError)),
        (_base.BaseError, (aio.BaseError,)),
    ]
    for n in ("UsageError", "AbortError", "InternalError"):
        plan.append((getattr(_base, n), (_base.BaseError, getattr(aio, n))))
    return plan


def patch_grpcio():
    """Puts rgrpc under grpcio's client entry points (see the module's
    docstring); grpcio's servers keep working. Idempotent. Call it before
    code does ``from grpc import insecure_channel`` (a name copied earlier
    keeps grpcio's function)."""
    global _state
    import grpc

    if getattr(grpc, "_rgrpc_alias", False):
        raise RuntimeError("grpc is rgrpc already (install_as_grpc()): there is no "
                           "grpcio to patch")
    import grpc.aio

    from . import _api
    from . import aio as raio
    from .aio import _base

    with _lock:
        if _state is not None:
            return
        aio_mods = [grpc.aio]
        try:
            import grpc.experimental.aio as exp_aio

            if exp_aio is not grpc.aio:
                aio_mods.append(exp_aio)
        except ImportError:
            pass
        orig = {n: getattr(grpc, n) for n in ("insecure_channel", "secure_channel",
                                              "intercept_channel", "channel_ready_future",
                                              "local_channel_credentials")}
        sync, asyn = _make_entry_points(grpc, orig)
        aio_orig = [(m, {n: getattr(m, n) for n in asyn if hasattr(m, n)}) for m in aio_mods]
        plan = _bases_plan(grpc, grpc.aio)
        old_bases = [(cls, cls.__bases__) for cls, _ in plan]
        pairs = [(_api.StatusCode, grpc.StatusCode),
                 (_api.ChannelConnectivity, grpc.ChannelConnectivity),
                 (_base.EOF, grpc.aio.EOF)]
        _register_abcs(grpc, grpc.aio)
        for cls, bases in plan:
            cls.__bases__ = bases
        _rebind(pairs)
        _refill(_api.STATUS_CODES_BY_NUMBER, grpc.StatusCode)
        _refill(_api.CONNECTIVITY_BY_NUMBER, grpc.ChannelConnectivity)
        for n, f in sync.items():
            setattr(grpc, n, f)
        for m, _ in aio_orig:
            for n, f in asyn.items():
                setattr(m, n, f)
        _state = {"grpc": grpc, "orig": orig, "aio_orig": aio_orig, "old_bases": old_bases,
                  "pairs": pairs, "raio": raio}


def _refill(table, enum_cls):
    for member in enum_cls:
        table[member.value[0]] = member


def unpatch_grpcio():
    """Gives grpcio its own functions back and rgrpc its own types. Channels
    made while patched keep working (their calls report rgrpc's types from
    then on). The ``register`` calls stay (see the module's docstring)."""
    global _state
    from . import _api

    with _lock:
        st = _state
        if st is None:
            return
        grpc = st["grpc"]
        for n, f in st["orig"].items():
            setattr(grpc, n, f)
        for m, saved in st["aio_orig"]:
            for n, f in saved.items():
                setattr(m, n, f)
        _rebind([(new, old) for old, new in st["pairs"]])
        _refill(_api.STATUS_CODES_BY_NUMBER, _api.StatusCode)
        _refill(_api.CONNECTIVITY_BY_NUMBER, _api.ChannelConnectivity)
        for cls, bases in reversed(st["old_bases"]):
            cls.__bases__ = bases
        _state = None


def is_patched():
    """True between patch_grpcio() and unpatch_grpcio()."""
    return _state is not None


@contextlib.contextmanager
def patched_grpcio():
    """``with rgrpc.patched_grpcio(): ...``: patched inside the block (if it
    was patched already, it stays patched after)."""
    was = _state is not None
    patch_grpcio()
    try:
        yield
    finally:
        if not was:
            unpatch_grpcio()
