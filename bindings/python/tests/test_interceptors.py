"""intercept_channel with the four client interceptor kinds."""

from __future__ import annotations

import collections

import pytest

import rgrpc as grpc


class _Details(
    collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials",
                                        "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class HeaderAdder(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                  grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """The classic example: add a header to every call."""

    def __init__(self, key, value, log=None):
        self.key, self.value, self.log = key, value, log

    def _details(self, d):
        md = list(d.metadata or ()) + [(self.key, self.value)]
        if self.log is not None:
            self.log.append((self.value, d.method))
        return _Details(d.method, d.timeout, md, d.credentials, d.wait_for_ready, d.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


def echo_md(call, key):
    return [v for k, v in call.initial_metadata() if k == key]


def test_unary_unary_interceptor_adds_metadata(channel, pb):
    log = []
    ich = grpc.intercept_channel(channel, HeaderAdder("x-grpc-test-echo-initial", "added", log))
    stub = pb.test_pb2_grpc.TestServiceStub(ich)
    response, call = stub.UnaryCall.with_call(pb.messages_pb2.SimpleRequest(response_size=2))
    assert response.payload.body == bytes(2)
    assert echo_md(call, "x-grpc-test-echo-initial") == ["added"]
    assert stub.UnaryCall(pb.messages_pb2.SimpleRequest(response_size=1)).payload.body == b"\0"
    f = stub.UnaryCall.future(pb.messages_pb2.SimpleRequest(response_size=3))
    assert f.result(timeout=10).payload.body == bytes(3)
    assert echo_md(f, "x-grpc-test-echo-initial") == ["added"]
    assert log == [("added", "/grpc.testing.TestService/UnaryCall")] * 3


def test_interceptors_run_in_order(channel, pb):
    log = []
    ich = grpc.intercept_channel(channel,
                                 HeaderAdder("x-grpc-test-echo-initial", "first", log),
                                 HeaderAdder("x-grpc-test-echo-initial", "second", log))
    stub = pb.test_pb2_grpc.TestServiceStub(ich)
    _, call = stub.EmptyCall.with_call(pb.empty_pb2.Empty())
    assert [v for v, _ in log] == ["first", "second"]
    assert echo_md(call, "x-grpc-test-echo-initial") == ["first", "second"]


def test_streaming_interceptors(channel, pb):
    ich = grpc.intercept_channel(channel, HeaderAdder("x-grpc-test-echo-initial", "s"))
    stub = pb.test_pb2_grpc.TestServiceStub(ich)
    out = pb.messages_pb2.StreamingOutputCallRequest(
        response_parameters=[pb.messages_pb2.ResponseParameters(size=2)] * 3)
    it = stub.StreamingOutputCall(out)
    assert [len(r.payload.body) for r in it] == [2, 2, 2]
    assert echo_md(it, "x-grpc-test-echo-initial") == ["s"]

    req = pb.messages_pb2.StreamingInputCallRequest(payload=pb.messages_pb2.Payload(body=b"ab"))
    response, call = stub.StreamingInputCall.with_call(iter([req] * 3))
    assert response.aggregated_payload_size == 6
    assert echo_md(call, "x-grpc-test-echo-initial") == ["s"]
    assert stub.StreamingInputCall(iter([req])).aggregated_payload_size == 2
    assert stub.StreamingInputCall.future(iter([req])).result(timeout=10) \
        .aggregated_payload_size == 2

    bidi = stub.FullDuplexCall(iter([out, out]))
    assert sum(1 for _ in bidi) == 6
    assert echo_md(bidi, "x-grpc-test-echo-initial") == ["s"]


def test_interceptor_sees_errors_and_can_replace_results(channel, pb):
    seen = []

    class Observe(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):
            outcome = continuation(details, request)
            seen.append((outcome.code(), outcome.exception() is not None))
            return outcome

    stub = pb.test_pb2_grpc.TestServiceStub(grpc.intercept_channel(channel, Observe()))
    bad = pb.messages_pb2.SimpleRequest(
        response_status=pb.messages_pb2.EchoStatus(code=3, message="bad arg"))
    with pytest.raises(grpc.RpcError) as info:
        stub.UnaryCall(bad)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    stub.UnaryCall(pb.messages_pb2.SimpleRequest())
    assert seen == [(grpc.StatusCode.INVALID_ARGUMENT, True), (grpc.StatusCode.OK, False)]


def test_interceptor_rewrites_method(channel, pb):
    class Reroute(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):
            new = _Details("/grpc.testing.TestService/EmptyCall", details.timeout,
                           details.metadata, details.credentials, details.wait_for_ready,
                           details.compression)
            return continuation(new, request)

    ich = grpc.intercept_channel(channel, Reroute())
    mc = ich.unary_unary("/grpc.testing.TestService/DoesNotExist")
    assert mc(b"") == b""


def test_interceptor_with_old_style_details(channel, pb):
    """Details objects without wait_for_ready/compression still work."""
    Old = collections.namedtuple("Old", ("method", "timeout", "metadata", "credentials"))

    class Legacy(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):
            return continuation(Old(details.method, 5, details.metadata, None), request)

    stub = pb.test_pb2_grpc.TestServiceStub(grpc.intercept_channel(channel, Legacy()))
    response, call = stub.UnaryCall.with_call(pb.messages_pb2.SimpleRequest(response_size=1))
    assert 0 < call.time_remaining() <= 5


def test_interceptor_exception_becomes_failed_future(channel, pb):
    class Boom(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):
            raise ValueError("boom")

        def intercept_unary_stream(self, continuation, details, request):
            raise ValueError("boom stream")

    stub = pb.test_pb2_grpc.TestServiceStub(grpc.intercept_channel(channel, Boom()))
    with pytest.raises(ValueError):
        stub.UnaryCall(pb.messages_pb2.SimpleRequest())
    f = stub.UnaryCall.future(pb.messages_pb2.SimpleRequest())
    assert isinstance(f.exception(), ValueError)
    it = stub.StreamingOutputCall(pb.messages_pb2.StreamingOutputCallRequest())
    with pytest.raises(ValueError):
        next(it)


def test_non_matching_interceptor_kinds_pass_through(channel, pb):
    class OnlyUnary(grpc.UnaryUnaryClientInterceptor):
        def __init__(self):
            self.n = 0

        def intercept_unary_unary(self, continuation, details, request):
            self.n += 1
            return continuation(details, request)

    i = OnlyUnary()
    stub = pb.test_pb2_grpc.TestServiceStub(grpc.intercept_channel(channel, i))
    list(stub.StreamingOutputCall(pb.messages_pb2.StreamingOutputCallRequest()))
    stub.EmptyCall(pb.empty_pb2.Empty())
    assert i.n == 1


def test_intercept_channel_rejects_other_objects(channel):
    with pytest.raises(TypeError):
        grpc.intercept_channel(channel, object())


def test_intercepted_channel_context_manager(target, pb):
    with grpc.intercept_channel(grpc.insecure_channel(target), HeaderAdder("x-a", "b")) as ch:
        assert pb.test_pb2_grpc.TestServiceStub(ch).EmptyCall(pb.empty_pb2.Empty()) \
            == pb.empty_pb2.Empty()
