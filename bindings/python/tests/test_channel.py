"""Channel management (grpcio's channel-management examples): creation,
options, context manager, close, compression, Unix sockets, connectivity."""

from __future__ import annotations

import os
import tempfile
import threading
import time
import warnings

import pytest

import rgrpc as grpc

from conftest import free_port


def simple(pb, size=1):
    return pb.messages_pb2.SimpleRequest(response_size=size)


def test_insecure_channel_and_stub(target, pb):
    channel = grpc.insecure_channel(target)
    stub = pb.test_pb2_grpc.TestServiceStub(channel)
    assert stub.UnaryCall(simple(pb, 4)).payload.body == bytes(4)
    channel.close()


def test_context_manager_closes(target, pb):
    with grpc.insecure_channel(target) as channel:
        stub = pb.test_pb2_grpc.TestServiceStub(channel)
        assert stub.EmptyCall(pb.empty_pb2.Empty()) == pb.empty_pb2.Empty()
    with pytest.raises(ValueError, match="closed"):
        stub.EmptyCall(pb.empty_pb2.Empty())
    with pytest.raises(ValueError):
        stub.StreamingOutputCall(pb.messages_pb2.StreamingOutputCallRequest())
    with pytest.raises(ValueError):
        stub.StreamingInputCall(iter(()))
    with pytest.raises(ValueError):
        stub.UnaryCall.future(simple(pb))


def test_channel_is_abstract_channel(channel):
    assert isinstance(channel, grpc.Channel)
    assert isinstance(channel.unary_unary("/a/b"), grpc.UnaryUnaryMultiCallable)
    assert isinstance(channel.unary_stream("/a/b"), grpc.UnaryStreamMultiCallable)
    assert isinstance(channel.stream_unary("/a/b"), grpc.StreamUnaryMultiCallable)
    assert isinstance(channel.stream_stream("/a/b"), grpc.StreamStreamMultiCallable)


def test_close_is_idempotent(target):
    ch = grpc.insecure_channel(target)
    ch.close()
    ch.close()


def test_close_cancels_active_rpcs(target, pb):
    ch = grpc.insecure_channel(target)
    stub = pb.test_pb2_grpc.TestServiceStub(ch)
    f = stub.UnaryCall.future(simple(pb), metadata=(("x-rgrpc-sleep-ms", "5000"),))
    it = stub.StreamingOutputCall(pb.messages_pb2.StreamingOutputCallRequest(
        response_parameters=[pb.messages_pb2.ResponseParameters(size=1, interval_us=100000)] * 50))
    next(it)
    result = {}

    def blocking():
        try:
            stub.UnaryCall(simple(pb), metadata=(("x-rgrpc-sleep-ms", "5000"),))
        except grpc.RpcError as e:
            result["code"] = e.code()

    t = threading.Thread(target=blocking)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    ch.close()
    t.join(5)
    assert result["code"] is grpc.StatusCode.CANCELLED
    assert f.exception(timeout=5).code() is grpc.StatusCode.CANCELLED
    with pytest.raises(grpc.RpcError) as info:
        for _ in it:
            pass
    assert info.value.code() is grpc.StatusCode.CANCELLED
    assert time.monotonic() - t0 < 3


def test_channel_survives_dropping_the_object(target, pb):
    stub = pb.test_pb2_grpc.TestServiceStub(grpc.insecure_channel(target))
    assert stub.UnaryCall(simple(pb, 2)).payload.body == bytes(2)


def test_options_max_receive_message_length(target, pb):
    opts = [("grpc.max_receive_message_length", 1000)]
    with grpc.insecure_channel(target, options=opts) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        assert stub.UnaryCall(simple(pb, 900)).payload.body == bytes(900)
        with pytest.raises(grpc.RpcError) as info:
            stub.UnaryCall(simple(pb, 2000))
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_options_max_send_message_length(target, pb):
    opts = [("grpc.max_send_message_length", 100)]
    with grpc.insecure_channel(target, options=opts) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        req = pb.messages_pb2.SimpleRequest(payload=pb.messages_pb2.Payload(body=bytes(500)))
        with pytest.raises(grpc.RpcError) as info:
            stub.UnaryCall(req)
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_options_user_agent_and_authority(target, pb):
    opts = [("grpc.primary_user_agent", "my-app/1.0"),
            ("grpc.secondary_user_agent", "extra/2"),
            ("grpc.default_authority", "example.test")]
    with grpc.insecure_channel(target, options=opts) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        _, call = stub.UnaryCall.with_call(
            simple(pb), metadata=(("x-rgrpc-echo-request-headers", "1"),))
        md = dict(call.initial_metadata())
        assert md["x-rgrpc-req-user-agent"].startswith("my-app/1.0")
        assert md["x-rgrpc-req-user-agent"].endswith("extra/2")
        if "x-rgrpc-req-authority" in md:
            assert md["x-rgrpc-req-authority"] == "example.test"


def test_user_agent_metadata_is_accepted(target, pb):
    """grpcio's examples pass ('user-agent', ...) as call metadata: it goes
    in front of the library's user agent, in one header."""
    with grpc.insecure_channel(target) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        _, call = stub.UnaryCall.with_call(
            simple(pb), metadata=(("x-rgrpc-echo-request-headers", "1"),
                                  ("user-agent", "my-client/1.0")))
        ua = [v for k, v in call.initial_metadata() if k == "x-rgrpc-req-user-agent"]
        assert len(ua) == 1, ua
        assert ua[0].startswith("my-client/1.0 grpc-c-rgrpc/"), ua


def test_unknown_and_unsupported_options_warn_but_work(target, pb):
    opts = [("grpc.some_option_nobody_knows", 1),
            ("grpc.keepalive_time_ms", 10000),
            ("grpc.enable_retries", 0)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ch = grpc.insecure_channel(target, options=opts)
    with ch:
        assert pb.test_pb2_grpc.TestServiceStub(ch).UnaryCall(simple(pb)).payload.body == b"\0"
    assert any("grpc.some_option_nobody_knows" in str(w.message) for w in caught)


def test_invalid_option_value_raises(target):
    with pytest.raises(ValueError):
        grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", "lots")])


def test_invalid_target_raises():
    with pytest.raises(ValueError):
        grpc.insecure_channel("xds:///not-supported")


def test_unix_socket_target(make_server, pb):
    path = os.path.join(tempfile.mkdtemp(prefix="rgrpc-py-"), "s.sock")
    srv = make_server(uds=path)
    for target in ("unix:" + path, "unix://" + path):
        with grpc.insecure_channel(target) as ch:
            stub = pb.test_pb2_grpc.TestServiceStub(ch)
            assert stub.UnaryCall(simple(pb, 3)).payload.body == bytes(3)
    srv.stop()


def test_dns_and_ipv4_targets(server, pb):
    for target in ("localhost:%d" % server.port, "dns:///localhost:%d" % server.port,
                   "ipv4:127.0.0.1:%d" % server.port):
        with grpc.insecure_channel(target) as ch:
            assert pb.test_pb2_grpc.TestServiceStub(ch).EmptyCall(pb.empty_pb2.Empty()) \
                == pb.empty_pb2.Empty()


def test_one_channel_shared_by_threads(channel, pb):
    stub = pb.test_pb2_grpc.TestServiceStub(channel)
    out = []

    def work():
        out.append(sum(len(stub.UnaryCall(simple(pb, 3)).payload.body) for _ in range(30)))

    ts = [threading.Thread(target=work) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert out == [90] * 8


def test_server_restart_then_calls_succeed_again(make_server, pb):
    port = free_port()
    srv = make_server(extra=["--port", str(port)])
    # make_server passes --port 0 first; the later --port wins (argparse)
    with grpc.insecure_channel(srv.target) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        assert stub.EmptyCall(pb.empty_pb2.Empty())  == pb.empty_pb2.Empty()
        srv.stop()
        with pytest.raises(grpc.RpcError) as info:
            stub.EmptyCall(pb.empty_pb2.Empty(), timeout=5)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        make_server(extra=["--port", str(srv.port)])
        ok = False
        for _ in range(50):
            try:
                stub.EmptyCall(pb.empty_pb2.Empty(), timeout=5)
                ok = True
                break
            except grpc.RpcError:
                time.sleep(0.1)
        assert ok


# --- compression -------------------------------------------------------------------


def compressed_request(pb, size=1000):
    r = pb.messages_pb2.SimpleRequest(response_size=1,
                                      payload=pb.messages_pb2.Payload(body=bytes(size)))
    r.expect_compressed.value = True  # the server checks the message's compressed flag
    return r


def test_compression_enum_and_aliases():
    assert int(grpc.Compression.NoCompression) == 0
    assert int(grpc.Compression.Deflate) == 1
    assert int(grpc.Compression.Gzip) == 2
    assert grpc.compression.Gzip is grpc.Compression.Gzip
    assert grpc.compression.Deflate is grpc.Compression.Deflate
    assert grpc.compression.NoCompression is grpc.Compression.NoCompression


def test_uncompressed_by_default(stub, pb):
    with pytest.raises(grpc.RpcError) as info:
        stub.UnaryCall(compressed_request(pb))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("alg", [grpc.Compression.Gzip, grpc.Compression.Deflate])
def test_per_call_compression(stub, pb, alg):
    assert stub.UnaryCall(compressed_request(pb), compression=alg).payload.body == b"\0"
    assert stub.UnaryCall.future(compressed_request(pb), compression=alg).result(timeout=10)


def test_channel_compression_and_per_call_override(target, pb):
    with grpc.insecure_channel(target, compression=grpc.Compression.Gzip) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        assert stub.UnaryCall(compressed_request(pb)).payload.body == b"\0"
        with pytest.raises(grpc.RpcError) as info:
            stub.UnaryCall(compressed_request(pb), compression=grpc.Compression.NoCompression)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_client_streaming_compression(stub, pb):
    def reqs():
        for _ in range(3):
            r = pb.messages_pb2.StreamingInputCallRequest(
                payload=pb.messages_pb2.Payload(body=bytes(2000)))
            r.expect_compressed.value = True
            yield r

    assert stub.StreamingInputCall(reqs(), compression=grpc.Compression.Gzip) \
        .aggregated_payload_size == 6000


def test_server_compressed_responses(stub, pb):
    r = pb.messages_pb2.SimpleRequest(response_size=5000)
    r.response_compressed.value = True
    assert stub.UnaryCall(r).payload.body == bytes(5000)


# --- connectivity ------------------------------------------------------------------


def test_channel_connectivity_enum():
    assert [c.value for c in grpc.ChannelConnectivity] == [
        (0, "idle"), (1, "connecting"), (2, "ready"), (3, "transient failure"), (4, "shutdown")]


def test_channel_ready_future_with_server(target):
    with grpc.insecure_channel(target) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)


def test_channel_ready_future_without_server():
    with grpc.insecure_channel("127.0.0.1:%d" % free_port()) as ch:
        f = grpc.channel_ready_future(ch)
        with pytest.raises(grpc.FutureTimeoutError):
            f.result(timeout=0.5)
        assert f.cancel()
        with pytest.raises(grpc.FutureCancelledError):
            f.result()


def test_subscribe_unsubscribe_real(target):
    with grpc.insecure_channel(target) as ch:
        states = []
        ready = threading.Event()

        def cb(state):
            states.append(state)
            if state is grpc.ChannelConnectivity.READY:
                ready.set()

        ch.subscribe(cb, try_to_connect=True)
        assert ready.wait(10)
        ch.unsubscribe(cb)
        assert states[-1] is grpc.ChannelConnectivity.READY
