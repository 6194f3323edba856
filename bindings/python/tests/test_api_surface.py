"""rgrpc offers grpcio's client names, enum values and signatures."""

from __future__ import annotations

import inspect

import pytest

import rgrpc

CLIENT_NAMES = [
    "insecure_channel", "secure_channel", "ssl_channel_credentials",
    "access_token_call_credentials", "metadata_call_credentials", "composite_call_credentials",
    "composite_channel_credentials", "local_channel_credentials", "intercept_channel",
    "channel_ready_future", "StatusCode", "ChannelConnectivity", "Compression", "RpcError",
    "FutureTimeoutError", "FutureCancelledError", "Future", "Call", "RpcContext",
    "ClientCallDetails", "UnaryUnaryClientInterceptor", "UnaryStreamClientInterceptor",
    "StreamUnaryClientInterceptor", "StreamStreamClientInterceptor", "Channel",
    "UnaryUnaryMultiCallable", "UnaryStreamMultiCallable", "StreamUnaryMultiCallable",
    "StreamStreamMultiCallable", "ChannelCredentials", "CallCredentials",
    "AuthMetadataContext", "AuthMetadataPlugin", "AuthMetadataPluginCallback",
    "LocalConnectionType", "Status",
]


@pytest.mark.parametrize("name", CLIENT_NAMES)
def test_name_exists(name):
    assert hasattr(rgrpc, name)


def test_status_codes_match_grpc_spec():
    assert len(rgrpc.StatusCode) == 17
    assert rgrpc.StatusCode.OK.value == (0, "ok")
    assert rgrpc.StatusCode.UNAUTHENTICATED.value == (16, "unauthenticated")
    assert rgrpc.StatusCode.DEADLINE_EXCEEDED.value == (4, "deadline exceeded")


def test_server_side_names_explain_themselves():
    with pytest.raises(AttributeError, match="client"):
        rgrpc.server  # noqa: B018
    assert not hasattr(rgrpc, "unary_unary_rpc_method_handler")


def test_submodules():
    assert rgrpc.compression.Gzip == 2
    assert callable(rgrpc.experimental.insecure_channel_credentials)
    assert rgrpc._utilities.first_version_is_lower("0.1.0", "9.9.9") is False


def test_library_info():
    assert rgrpc.library_version.startswith("rgrpc/")
    assert rgrpc.library_path
    assert rgrpc.__version__


@pytest.fixture(scope="module")
def grpcio():
    return pytest.importorskip("grpc")


@pytest.mark.parametrize("enum_name", ["StatusCode", "ChannelConnectivity", "Compression",
                                       "LocalConnectionType"])
def test_enums_equal_grpcio(grpcio, enum_name):
    ours = {m.name: m.value for m in getattr(rgrpc, enum_name)}
    theirs = {m.name: m.value for m in getattr(grpcio, enum_name)}
    assert ours == theirs


@pytest.mark.parametrize("cls,methods", [
    ("UnaryUnaryMultiCallable", ["__call__", "with_call", "future"]),
    ("UnaryStreamMultiCallable", ["__call__"]),
    ("StreamUnaryMultiCallable", ["__call__", "with_call", "future"]),
    ("StreamStreamMultiCallable", ["__call__"]),
    ("Channel", ["subscribe", "unsubscribe", "unary_unary", "unary_stream", "stream_unary",
                 "stream_stream", "close"]),
    ("Future", ["cancel", "cancelled", "running", "done", "result", "exception", "traceback",
                "add_done_callback"]),
    ("RpcContext", ["is_active", "time_remaining", "cancel", "add_callback"]),
    ("Call", ["initial_metadata", "trailing_metadata", "code", "details"]),
])
def test_method_signatures_equal_grpcio(grpcio, cls, methods):
    for m in methods:
        ours = inspect.signature(getattr(getattr(rgrpc, cls), m))
        theirs = inspect.signature(getattr(getattr(grpcio, cls), m))
        assert list(ours.parameters) == list(theirs.parameters), (cls, m)


@pytest.mark.parametrize("fn", ["insecure_channel", "secure_channel", "ssl_channel_credentials",
                                "local_channel_credentials", "metadata_call_credentials",
                                "access_token_call_credentials", "composite_call_credentials",
                                "composite_channel_credentials", "intercept_channel",
                                "channel_ready_future"])
def test_function_signatures_equal_grpcio(grpcio, fn):
    ours = inspect.signature(getattr(rgrpc, fn))
    theirs = inspect.signature(getattr(grpcio, fn))
    assert list(ours.parameters) == list(theirs.parameters)


def test_concrete_multicallables_match(grpcio, channel):
    for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        mc = getattr(channel, kind)("/a/b")
        theirs = getattr(grpcio, "".join(p.capitalize() for p in kind.split("_"))
                         + "MultiCallable")
        for name in ("__call__", "with_call", "future"):
            if hasattr(theirs, name):
                assert list(inspect.signature(getattr(mc, name)).parameters) == \
                    list(inspect.signature(getattr(theirs, name)).parameters)[1:]
