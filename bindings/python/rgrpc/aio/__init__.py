"""rgrpc.aio: grpcio's asyncio client API (``grpc.aio``) over librgrpc.

    from rgrpc import aio

    async with aio.insecure_channel("localhost:50051") as channel:
        stub = helloworld_pb2_grpc.GreeterStub(channel)
        reply = await stub.SayHello(helloworld_pb2.HelloRequest(name="you"))

Every call completes into a librgrpc completion queue, one per event loop,
whose descriptor the loop watches (``loop.add_reader``): no thread per
call, no hand-off per message. Client side only (no ``aio.server``).
"""

from __future__ import annotations

from ._base import (
    EOF,
    AbortError,
    AioRpcError,
    BaseError,
    Call,
    Channel,
    InternalError,
    RpcContext,
    StreamStreamCall,
    StreamStreamMultiCallable,
    StreamUnaryCall,
    StreamUnaryMultiCallable,
    UnaryStreamCall,
    UnaryStreamMultiCallable,
    UnaryUnaryCall,
    UnaryUnaryMultiCallable,
    UsageError,
)
from ._channel import insecure_channel, secure_channel
from ._interceptor import (
    ClientCallDetails,
    ClientInterceptor,
    InterceptedUnaryUnaryCall,
    StreamStreamClientInterceptor,
    StreamUnaryClientInterceptor,
    UnaryStreamClientInterceptor,
    UnaryUnaryClientInterceptor,
)
from ._metadata import Metadata


def init_grpc_aio():
    """grpcio's explicit initialisation; nothing to do here."""


def shutdown_grpc_aio():
    """grpcio's explicit shutdown; nothing to do here (queues go with
    their channels or loops)."""


_SERVER_NAMES = frozenset(("server", "Server", "ServerInterceptor", "ServicerContext"))


def __getattr__(name):
    if name in _SERVER_NAMES:
        raise AttributeError(
            "rgrpc is a gRPC client library: grpc.aio.%s (server side) is not provided; "
            "use grpcio for servers" % name)
    raise AttributeError("module 'rgrpc.aio' has no attribute %r" % name)


__all__ = (
    "EOF", "AbortError", "AioRpcError", "BaseError", "Call", "Channel", "ClientCallDetails",
    "ClientInterceptor", "InterceptedUnaryUnaryCall", "InternalError", "Metadata",
    "RpcContext", "StreamStreamCall", "StreamStreamClientInterceptor",
    "StreamStreamMultiCallable", "StreamUnaryCall", "StreamUnaryClientInterceptor",
    "StreamUnaryMultiCallable", "UnaryStreamCall", "UnaryStreamClientInterceptor",
    "UnaryStreamMultiCallable", "UnaryUnaryCall", "UnaryUnaryClientInterceptor",
    "UnaryUnaryMultiCallable", "UsageError", "init_grpc_aio", "insecure_channel",
    "secure_channel", "shutdown_grpc_aio",
)
