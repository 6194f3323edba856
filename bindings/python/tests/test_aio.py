"""rgrpc.aio (grpcio's asyncio client API) against the grpcio interop
server: the four patterns with generated stubs, metadata, errors,
deadlines, cancellation (the server sees it), many concurrent calls on one
loop, write()/read() styles, connectivity, interceptors, closing, and the
completion-queue driving (no thread per call, the queue goes with the last
channel).

pytest-asyncio is not used: each test runs its coroutine with asyncio.run.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

import rgrpc
from rgrpc import aio
from rgrpc.aio import _cq

from conftest import PKG_ROOT

StatusCode = rgrpc.StatusCode


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def out_req(pb, sizes, interval_us=0, status=None):
    req = pb.messages_pb2.StreamingOutputCallRequest(
        response_parameters=[pb.messages_pb2.ResponseParameters(size=s, interval_us=interval_us)
                             for s in sizes])
    if status is not None:
        req.response_status.code, req.response_status.message = status
    return req


def in_req(pb, n):
    return pb.messages_pb2.StreamingInputCallRequest(payload=pb.messages_pb2.Payload(body=bytes(n)))


def stub_of(ch, pb):
    return pb.test_pb2_grpc.TestServiceStub(ch)


async def server_records(stub, pb, key, pred, timeout=10.0):
    """The interop server's records of x-retry-key ``key``, polled until
    ``pred(records)`` holds (or the timeout passes)."""
    end = time.monotonic() + timeout
    while True:
        call = stub.EmptyCall(pb.empty_pb2.Empty(), metadata=[("x-query-key", key)], timeout=10)
        await call
        records = json.loads(dict(await call.trailing_metadata())["x-attempts"])
        if pred(records) or time.monotonic() > end:
            return records
        await asyncio.sleep(0.05)


# --- the four patterns --------------------------------------------------------


def test_four_patterns_with_generated_stubs(target, pb):
    m = pb.messages_pb2

    async def main():
        async with aio.insecure_channel(target) as ch:
            stub = stub_of(ch, pb)
            # unary-unary
            r = await stub.UnaryCall(m.SimpleRequest(response_size=7))
            assert r.payload.body == bytes(7)
            assert await stub.EmptyCall(pb.empty_pb2.Empty()) == pb.empty_pb2.Empty()
            # unary-stream, as an async iterator
            call = stub.StreamingOutputCall(out_req(pb, [1, 10, 100, 1000]))
            assert isinstance(call, aio.UnaryStreamCall)
            assert [len(x.payload.body) async for x in call] == [1, 10, 100, 1000]
            assert await call.code() is StatusCode.OK
            assert call.done() and not call.cancelled()
            # stream-unary, with a sync iterator and with an async one
            r = await stub.StreamingInputCall(iter([in_req(pb, 3), in_req(pb, 4)]))
            assert r.aggregated_payload_size == 7

            async def agen():
                for n in (1, 2, 3):
                    await asyncio.sleep(0)
                    yield in_req(pb, n)

            call = stub.StreamingInputCall(agen())
            assert isinstance(call, aio.StreamUnaryCall)
            assert (await call).aggregated_payload_size == 6
            assert await call.code() is StatusCode.OK
            # stream-stream with an iterator
            call = stub.FullDuplexCall(iter([out_req(pb, [5]), out_req(pb, [6, 7])]))
            assert isinstance(call, aio.StreamStreamCall)
            assert [len(x.payload.body) async for x in call] == [5, 6, 7]
            assert await call.code() is StatusCode.OK
            call = stub.HalfDuplexCall(iter([out_req(pb, [1]), out_req(pb, [2])]))
            assert [len(x.payload.body) async for x in call] == [1, 2]

    run(main())


def test_raw_bytes_without_serializers(target, pb):
    async def main():
        async with aio.insecure_channel(target) as ch:
            mc = ch.unary_unary("/grpc.testing.TestService/UnaryCall")
            raw = await mc(pb.messages_pb2.SimpleRequest(response_size=5).SerializeToString())
            assert isinstance(raw, bytes)
            assert pb.messages_pb2.SimpleResponse.FromString(raw).payload.body == bytes(5)

    run(main())


# --- metadata -----------------------------------------------------------------


def test_metadata_in_and_out(target, pb):
    md = (("x-grpc-test-echo-initial", "hello"),
          ("x-grpc-test-echo-trailing-bin", b"\x00\x01\xff"))

    async def main():
        async with aio.insecure_channel(target) as ch:
            stub = stub_of(ch, pb)
            call = stub.UnaryCall(pb.messages_pb2.SimpleRequest(response_size=1), metadata=md)
            initial = await call.initial_metadata()
            assert isinstance(initial, aio.Metadata)
            assert initial["x-grpc-test-echo-initial"] == "hello"
            await call
            trailing = await call.trailing_metadata()
            assert trailing["x-grpc-test-echo-trailing-bin"] == b"\x00\x01\xff"
            # aio.Metadata as the argument, on a streaming call
            call = stub.StreamingOutputCall(out_req(pb, [1, 2]), metadata=aio.Metadata(*md))
            assert (await call.initial_metadata())["x-grpc-test-echo-initial"] == "hello"
            assert len([x async for x in call]) == 2
            assert (await call.trailing_metadata()).get_all(
                "x-grpc-test-echo-trailing-bin") == [b"\x00\x01\xff"]
            # cache-control comes in the initial metadata of CacheableUnaryCall
            call = stub.CacheableUnaryCall(pb.messages_pb2.SimpleRequest())
            await call
            assert (await call.initial_metadata())["cache-control"] == "max-age=60, public"

    run(main())


def test_initial_metadata_beside_reads(target, pb):
    """initial_metadata() awaited while reads are in progress (and the other
    way round), on fresh channels and with headers that come late: every
    message arrives (librgrpc refuses a receive beside a pending
    initial-metadata operation with BUSY; the binding orders them)."""
    md = [("x-grpc-test-echo-initial", "v"), ("x-rgrpc-sleep-ms", "300")]

    async def main():
        for md_first in (True, False):
            async with aio.insecure_channel(target) as ch:
                stub = stub_of(ch, pb)
                call = stub.StreamingOutputCall(out_req(pb, [1, 2, 3]), metadata=md)
                if md_first:
                    await call.wait_for_connection()  # the stream is open
                    m = asyncio.ensure_future(call.initial_metadata())
                    await asyncio.sleep(0)
                    r = asyncio.ensure_future(call.read())
                else:
                    r = asyncio.ensure_future(call.read())
                    await asyncio.sleep(0)
                    m = asyncio.ensure_future(call.initial_metadata())
                assert len((await r).payload.body) == 1
                assert (await m)["x-grpc-test-echo-initial"] == "v"
                assert len((await call.read()).payload.body) == 2
                assert len((await call.read()).payload.body) == 3
                assert await call.read() is aio.EOF
            # unary-unary: headers first, on a fresh channel
            async with aio.insecure_channel(target) as ch:
                call = stub_of(ch, pb).UnaryCall(pb.messages_pb2.SimpleRequest(response_size=1),
                                                 metadata=md[:1])
                assert (await call.initial_metadata())["x-grpc-test-echo-initial"] == "v"
                assert (await call).payload.body == bytes(1)

    run(main())


# --- errors -------------------------------------------------------------------


def test_status_error_is_aio_rpc_error(target, pb):
    async def main():
        async with aio.insecure_channel(target) as ch:
            stub = stub_of(ch, pb)
            req = pb.messages_pb2.SimpleRequest(response_size=1)
            req.response_status.code = StatusCode.FAILED_PRECONDITION.value[0]
            req.response_status.message = "not now"
            call = stub.UnaryCall(req, metadata=[("x-grpc-test-echo-trailing", "t1")])
            with pytest.raises(aio.AioRpcError) as ei:
                await call
            e = ei.value
            assert isinstance(e, rgrpc.RpcError)
            assert e.code() is StatusCode.FAILED_PRECONDITION
            assert e.details() == "not now"
            assert e.trailing_metadata()["x-grpc-test-echo-trailing"] == "t1"
            assert "FAILED_PRECONDITION" in e.debug_error_string()
            assert await call.code() is StatusCode.FAILED_PRECONDITION
            assert await call.details() == "not now"
            assert call.done() and not call.cancelled()
            # on a response stream: after the messages, the error
            call = stub.StreamingOutputCall(out_req(pb, [1, 2], status=(5, "gone")))
            got = []
            with pytest.raises(aio.AioRpcError) as ei:
                async for x in call:
                    got.append(len(x.payload.body))
            assert got == [1, 2]
            assert ei.value.code() is StatusCode.NOT_FOUND
            assert ei.value.details() == "gone"
            # unimplemented
            with pytest.raises(aio.AioRpcError) as ei:
                await stub.UnimplementedCall(pb.empty_pb2.Empty())
            assert ei.value.code() is StatusCode.UNIMPLEMENTED

    run(main())


def test_deadline_exceeded(target, pb):
    async def main():
        async with aio.insecure_channel(target) as ch:
            stub = stub_of(ch, pb)
            t0 = time.monotonic()
            call = stub.UnaryCall(pb.messages_pb2.SimpleRequest(), timeout=0.3,
                                  metadata=[("x-rgrpc-sleep-ms", "5000")])
            assert 0 < call.time_remaining() <= 0.3
            with pytest.raises(aio.AioRpcError) as ei:
                await call
            assert ei.value.code() is StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - t0 < 3
            assert call.time_remaining() == 0
            # a response stream that outlives its deadline
            call = stub.StreamingOutputCall(out_req(pb, [1] * 10, interval_us=200000), timeout=0.5)
            n = 0
            with pytest.raises(aio.AioRpcError) as ei:
                async for _ in call:
                    n += 1
            assert ei.value.code() is StatusCode.DEADLINE_EXCEEDED
            assert n < 10
            assert await call.code() is StatusCode.DEADLINE_EXCEEDED
            # without a timeout: no deadline
            assert stub.EmptyCall(pb.empty_pb2.Empty()).time_remaining() is None

    run(main())


def test_unavailable_and_wait_for_ready(pb):
    from conftest import free_port

    async def main():
        async with aio.insecure_channel("127.0.0.1:%d" % free_port()) as ch:
            stub = stub_of(ch, pb)
            with pytest.raises(aio.AioRpcError) as ei:
                await stub.EmptyCall(pb.empty_pb2.Empty(), timeout=10)
            assert ei.value.code() is StatusCode.UNAVAILABLE
            t0 = time.monotonic()
            with pytest.raises(aio.AioRpcError) as ei:
                await stub.EmptyCall(pb.empty_pb2.Empty(), timeout=0.5, wait_for_ready=True)
            assert ei.value.code() is StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - t0 >= 0.4
            call = stub.FullDuplexCall(timeout=10)
            with pytest.raises(aio.AioRpcError) as ei:
                await call.read()
            assert ei.value.code() is StatusCode.UNAVAILABLE

    run(main())


def test_failing_request_iterator_and_deserializer(target, pb):
    def requests():
        yield in_req(pb, 1)
        raise RuntimeError("boom")

    async def main():
        async with aio.insecure_channel(target) as ch:
            stub = stub_of(ch, pb)
            call = stub.StreamingInputCall(requests())
            with pytest.raises(asyncio.CancelledError):
                await call
            assert await call.code() is StatusCode.CANCELLED

            def bad(_data):
                raise ValueError("cannot")

            mc = ch.unary_unary("/grpc.testing.TestService/EmptyCall",
                                request_serializer=pb.empty_pb2.Empty.SerializeToString,
                                response_deserializer=bad)
            with pytest.raises(aio.AioRpcError) as ei:
                await mc(pb.empty_pb2.Empty())
            assert ei.value.code() is StatusCode.INTERNAL
            assert "deserializ" in ei.value.details()

    run(main())


# --- cancellation ---------------------------------------------------------------


def test_cancel_from_another_task_server_sees_it(target, pb):
    key = "aio-cancel-" + uuid.uuid4().hex

    async def main():
        async with aio.insecure_channel(target) as ch:
            stub = stub_of(ch, pb)
            call = stub.UnaryCall(pb.messages_pb2.SimpleRequest(),
                                  metadata=[("x-retry-key", key), ("x-delay", "1:10000")])
            await server_records(stub, pb, key, lambda r: len(r) == 1)

            async def canceller():
                await asyncio.sleep(0.05)
                assert call.cancel()

            t0 = time.monotonic()
            task = asyncio.ensure_future(canceller())
            with pytest.raises(asyncio.CancelledError):
                await call
            await task
            assert time.monotonic() - t0 < 5
            assert call.cancelled() and call.done()
            assert await call.code() is StatusCode.CANCELLED
            assert not call.cancel()  # already ended
            records = await server_records(stub, pb, key, lambda r: r and r[0]["cancelled"])
            assert records[0]["cancelled"] is True, records

    run(main())


def test_cancelling_the_awaiting_task_cancels_the_rpc(target, pb):
    key = "aio-task-" + uuid.uuid4().hex
    skey = "aio-task-stream-" + uuid.uuid4().hex

    async def main():
        async with aio.insecure_channel(target) as ch:
            stub = stub_of(ch, pb)
            call = stub.UnaryCall(pb.messages_pb2.SimpleRequest(),
                                  metadata=[("x-retry-key", key), ("x-delay", "1:10000")])

            async def waiter():
                return await call

            task = asyncio.ensure_future(waiter())
            await server_records(stub, pb, key, lambda r: len(r) == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await call.code() is StatusCode.CANCELLED
            assert call.cancelled()
            records = await server_records(stub, pb, key, lambda r: r and r[0]["cancelled"])
            assert records[0]["cancelled"] is True, records

            # a task reading a stream
            scall = stub.FullDuplexCall(metadata=[("x-retry-key", skey), ("x-delay", "1:10000")])

            async def reader():
                return [x async for x in scall]

            task = asyncio.ensure_future(reader())
            await server_records(stub, pb, skey, lambda r: len(r) == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await scall.code() is StatusCode.CANCELLED

    run(main())


def test_wait_for_with_timeout_cancels_the_call(target, pb):
    async def main():
        async with aio.insecure_channel(target) as ch:
            stub = stub_of(ch, pb)
            call = stub.UnaryCall(pb.messages_pb2.SimpleRequest(),
                                  metadata=[("x-rgrpc-sleep-ms", "5000")])
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(call, 0.2)
            assert await call.code() is StatusCode.CANCELLED

    run(main())


# --- many calls, no threads ---------------------------------------------------------


def test_concurrent_unary_calls_with_gather(target, pb):
    async def main():
        async with aio.insecure_channel(target) as ch:
            stub = stub_of(ch, pb)
            sizes = [i % 50 for i in range(250)]
            rs = await asyncio.gather(
                *[stub.UnaryCall(pb.messages_pb2.SimpleRequest(response_size=n)) for n in sizes])
            assert [len(r.payload.body) for r in rs] == sizes

    run(main())


def test_no_thread_per_call(target, pb):
    async def main():
        async with aio.insecure_channel(target) as ch:
            stub = stub_of(ch, pb)
            await stub.EmptyCall(pb.empty_pb2.Empty())  # the library is up
            before = threading.active_count()
            native_before = len(os.listdir("/proc/self/task")) if os.path.isdir(
                "/proc/self/task") else None
            peak = before
            for i in range(100):
                if i % 4 == 0:
                    await stub.UnaryCall(pb.messages_pb2.SimpleRequest(response_size=1))
                elif i % 4 == 1:
                    assert len([x async for x in stub.StreamingOutputCall(out_req(pb, [1]))]) == 1
                elif i % 4 == 2:
                    await stub.StreamingInputCall(iter([in_req(pb, 1)]))
                else:
                    call = stub.FullDuplexCall()
                    await call.write(out_req(pb, [1]))
                    await call.read()
                    await call.done_writing()
                peak = max(peak, threading.active_count())
            assert peak == before, (before, peak, [t.name for t in threading.enumerate()])
            if native_before is not None:
                # librgrpc's own threads do not grow with the calls either
                assert len(os.listdir("/proc/self/task")) <= native_before + 2

    run(main())


# --- write()/read() styles -------------------------------------------------------------


def test_write_and_done_writing(target, pb):
    async def main():
        async with aio.insecure_channel(target) as ch:
            stub = stub_of(ch, pb)
            # stream-unary
            call = stub.StreamingInputCall()
            for n in (10, 20, 30):
                await call.write(in_req(pb, n))
            await call.done_writing()
            await call.done_writing()  # idempotent
            assert (await call).aggregated_payload_size == 60
            with pytest.raises(asyncio.InvalidStateError):
                await call.write(in_req(pb, 1))
            # stream-stream ping-pong
            call = stub.FullDuplexCall()
            for i in range(1, 20):
                await call.write(out_req(pb, [i]))
                r = await call.read()
                assert len(r.payload.body) == i
            await call.done_writing()
            with pytest.raises(asyncio.InvalidStateError):
                await call.write(out_req(pb, [1]))
            assert await call.read() is aio.EOF
            assert await call.read() is aio.EOF
            assert await call.code() is StatusCode.OK
            # the two styles do not mix
            call = stub.FullDuplexCall(iter([out_req(pb, [1])]))
            with pytest.raises(aio.UsageError):
                await call.write(out_req(pb, [1]))
            assert len([x async for x in call]) == 1
            call = stub.FullDuplexCall()
            await call.write(out_req(pb, [3]))
            assert len((await call.read()).payload.body) == 3
            with pytest.raises(aio.UsageError):
                call.__aiter__()
            call.cancel()

    run(main())


def test_read_until_eof(target, pb):
    async def main():
        async with aio.insecure_channel(target) as ch:
            stub = stub_of(ch, pb)
            call = stub.StreamingOutputCall(out_req(pb, [3, 2, 1]))
            got = []
            while True:
                r = await call.read()
                if r is aio.EOF:
                    break
                got.append(len(r.payload.body))
            assert got == [3, 2, 1]
            assert not aio.EOF
            assert await call.code() is StatusCode.OK
            # the status asked for before reading: messages are not lost
            call = stub.StreamingOutputCall(out_req(pb, [4, 5]))
            assert await call.code() is StatusCode.OK
            assert len((await call.read()).payload.body) == 4
            assert len((await call.read()).payload.body) == 5
            assert await call.read() is aio.EOF

    run(main())


# --- connectivity ------------------------------------------------------------------


def test_channel_ready_get_state_wait_for_state_change(target, pb):
    ChannelConnectivity = rgrpc.ChannelConnectivity

    async def main():
        ch = aio.insecure_channel(target)
        assert ch.get_state() is ChannelConnectivity.IDLE
        state = ch.get_state(try_to_connect=True)
        assert state in (ChannelConnectivity.IDLE, ChannelConnectivity.CONNECTING,
                         ChannelConnectivity.READY)
        if state is not ChannelConnectivity.READY:
            await asyncio.wait_for(ch.wait_for_state_change(state), 10)
            assert ch.get_state() is not state
        await asyncio.wait_for(ch.channel_ready(), 10)
        assert ch.get_state() is ChannelConnectivity.READY
        # A watch of READY ends when the channel closes.
        watch = asyncio.ensure_future(ch.wait_for_state_change(ChannelConnectivity.READY))
        await asyncio.sleep(0.1)
        assert not watch.done()
        await ch.close()
        await asyncio.wait_for(watch, 10)
        assert ch.get_state() is ChannelConnectivity.SHUTDOWN
        with pytest.raises(aio.UsageError):
            await ch.channel_ready()

    run(main())


def test_channel_ready_connects_to_a_server_started_later(make_server, pb):
    from conftest import free_port

    port = free_port()

    async def main():
        async with aio.insecure_channel("127.0.0.1:%d" % port) as ch:
            ready = asyncio.ensure_future(ch.channel_ready())
            await asyncio.sleep(0.3)
            assert not ready.done()
            await asyncio.get_running_loop().run_in_executor(None, make_server, (), None, port)
            ch.get_state(try_to_connect=True)
            await asyncio.wait_for(ready, 20)
            assert ch.get_state() is rgrpc.ChannelConnectivity.READY

    run(main())


# --- interceptors ----------------------------------------------------------------------


class _AddMetadata(aio.UnaryUnaryClientInterceptor, aio.UnaryStreamClientInterceptor,
                   aio.StreamUnaryClientInterceptor, aio.StreamStreamClientInterceptor):
    def __init__(self, key, value, log):
        self.key, self.value, self.log = key, value, log

    def _details(self, d):
        md = aio.Metadata(*d.metadata) if d.metadata is not None else aio.Metadata()
        md.add(self.key, self.value)
        self.log.append(("call", self.key, d.method))
        return aio.ClientCallDetails(d.method, d.timeout, md, d.credentials, d.wait_for_ready)

    async def intercept_unary_unary(self, continuation, details, request):
        call = await continuation(self._details(details), request)
        try:
            response = await call
            self.log.append(("response", self.key, type(response).__name__))
        except aio.AioRpcError as e:
            self.log.append(("error", self.key, e.code()))
        return call

    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(self._details(details), request)

    async def intercept_stream_unary(self, continuation, details, request_iterator):
        return await continuation(self._details(details), request_iterator)

    async def intercept_stream_stream(self, continuation, details, request_iterator):
        return await continuation(self._details(details), request_iterator)


def test_interceptor_chain_adds_metadata(target, pb):
    log = []
    interceptors = [_AddMetadata("x-first", "1", log), _AddMetadata("x-second", "2", log)]
    echo = [("x-rgrpc-echo-all", "1")]

    async def main():
        async with aio.insecure_channel(target, interceptors=interceptors) as ch:
            stub = stub_of(ch, pb)
            call = stub.UnaryCall(pb.messages_pb2.SimpleRequest(response_size=2), metadata=echo)
            r = await call
            assert r.payload.body == bytes(2)
            md = await call.initial_metadata()
            assert md["x-echo-x-first"] == "1" and md["x-echo-x-second"] == "2"
            assert await call.code() is StatusCode.OK
            assert log == [("call", "x-first", b"/grpc.testing.TestService/UnaryCall"),
                           ("call", "x-second", b"/grpc.testing.TestService/UnaryCall"),
                           ("response", "x-second", "SimpleResponse"),
                           ("response", "x-first", "SimpleResponse")]
            # errors are observed, then raised to the application
            del log[:]
            with pytest.raises(aio.AioRpcError) as ei:
                await stub.UnimplementedCall(pb.empty_pb2.Empty())
            assert ei.value.code() is StatusCode.UNIMPLEMENTED
            assert ("error", "x-first", StatusCode.UNIMPLEMENTED) in log
            # the streaming kinds
            call = stub.StreamingOutputCall(out_req(pb, [1, 2]), metadata=echo)
            assert len([x async for x in call]) == 2
            md = await call.initial_metadata()
            assert md["x-echo-x-first"] == "1" and md["x-echo-x-second"] == "2"
            call = stub.StreamingInputCall(iter([in_req(pb, 2)]), metadata=echo)
            assert (await call).aggregated_payload_size == 2
            assert (await call.initial_metadata())["x-echo-x-second"] == "2"
            # write()/read() through interceptors
            call = stub.FullDuplexCall(metadata=echo)
            await call.write(out_req(pb, [4]))
            assert len((await call.read()).payload.body) == 4
            await call.done_writing()
            assert await call.read() is aio.EOF
            assert (await call.initial_metadata())["x-echo-x-first"] == "1"
            assert await call.code() is StatusCode.OK

    run(main())


def test_interceptor_replacing_the_response(target, pb):
    class Fixed(aio.UnaryUnaryClientInterceptor):
        async def intercept_unary_unary(self, continuation, details, request):
            await (await continuation(details, request))
            return pb.messages_pb2.SimpleResponse(username="replaced")

    async def main():
        async with aio.insecure_channel(target, interceptors=[Fixed()]) as ch:
            call = stub_of(ch, pb).UnaryCall(pb.messages_pb2.SimpleRequest())
            assert (await call).username == "replaced"
            assert await call.code() is StatusCode.OK

    run(main())


def test_interceptor_returning_a_response_iterator(target, pb):
    class Doubling(aio.UnaryStreamClientInterceptor):
        async def intercept_unary_stream(self, continuation, details, request):
            call = await continuation(details, request)

            async def doubled():
                async for response in call:
                    yield len(response.payload.body) * 2

            return doubled()

    async def main():
        async with aio.insecure_channel(target, interceptors=[Doubling()]) as ch:
            stub = stub_of(ch, pb)
            call = stub.StreamingOutputCall(out_req(pb, [1, 2, 3]))
            assert [n async for n in call] == [2, 4, 6]
            assert await call.code() is StatusCode.OK
            call = stub.StreamingOutputCall(out_req(pb, [5]))
            assert await call.read() == 10
            assert await call.read() is aio.EOF

    run(main())


def test_cancel_through_interceptor(target, pb):
    log = []

    async def main():
        async with aio.insecure_channel(target,
                                        interceptors=[_AddMetadata("x-a", "1", log)]) as ch:
            call = stub_of(ch, pb).UnaryCall(pb.messages_pb2.SimpleRequest(),
                                             metadata=[("x-rgrpc-sleep-ms", "5000")])
            task = asyncio.ensure_future(_await(call))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await call.code() is StatusCode.CANCELLED

    async def _await(call):
        return await call

    run(main())


def test_bad_interceptor_refused(target):
    with pytest.raises(ValueError):
        aio.insecure_channel(target, interceptors=[object()])


# --- closing ------------------------------------------------------------------------


def test_close_cancels_calls_in_flight(target, pb):
    async def main():
        ch = aio.insecure_channel(target)
        stub = stub_of(ch, pb)
        slow = [("x-rgrpc-sleep-ms", "10000")]
        unary = stub.UnaryCall(pb.messages_pb2.SimpleRequest(), metadata=slow)
        stream = stub.StreamingOutputCall(out_req(pb, [1] * 5, interval_us=2000000))
        bidi = stub.FullDuplexCall()
        await bidi.write(out_req(pb, [1]))
        assert len((await bidi.read()).payload.body) == 1
        done = []
        unary.add_done_callback(lambda c: done.append(c))
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        await ch.close()
        for c in (unary, stream, bidi):
            assert await c.code() is StatusCode.CANCELLED
            assert c.done()
        with pytest.raises(asyncio.CancelledError):
            await unary
        await asyncio.sleep(0)
        assert done == [unary]
        assert time.monotonic() - t0 < 3
        with pytest.raises(aio.UsageError):
            stub.EmptyCall(pb.empty_pb2.Empty())
        await ch.close()  # idempotent

    run(main())


def test_close_with_grace_lets_calls_finish(target, pb):
    async def main():
        ch = aio.insecure_channel(target)
        stub = stub_of(ch, pb)
        call = stub.UnaryCall(pb.messages_pb2.SimpleRequest(response_size=1),
                              metadata=[("x-rgrpc-sleep-ms", "200")])
        await asyncio.sleep(0.05)
        await ch.close(grace=5)
        assert await call.code() is StatusCode.OK
        assert (await call).payload.body == bytes(1)

    run(main())


def test_queue_is_freed_with_the_last_channel(target, pb):
    async def main():
        loop = asyncio.get_running_loop()
        a = aio.insecure_channel(target)
        b = aio.insecure_channel(target)
        await stub_of(a, pb).EmptyCall(pb.empty_pb2.Empty())
        await stub_of(b, pb).EmptyCall(pb.empty_pb2.Empty())
        q = _cq._queues[loop]
        fd = q.fd
        assert loop._selector.get_key(fd) is not None
        await a.close()
        assert _cq._queues.get(loop) is q and q.ptr is not None
        pending = stub_of(b, pb).UnaryCall(pb.messages_pb2.SimpleRequest(),
                                           metadata=[("x-rgrpc-sleep-ms", "10000")])
        await asyncio.sleep(0.05)
        await b.close()
        assert await pending.code() is StatusCode.CANCELLED
        for _ in range(200):
            if q.ptr is None:
                break
            await asyncio.sleep(0.01)
        assert q.ptr is None and not q.ops
        assert loop not in _cq._queues
        with pytest.raises(KeyError):
            loop._selector.get_key(fd)
        # a new channel on the same loop gets a new queue
        async with aio.insecure_channel(target) as c:
            await stub_of(c, pb).EmptyCall(pb.empty_pb2.Empty())
            assert _cq._queues[loop] is not q

    run(main())


def test_queue_is_freed_with_its_loop(target, pb):
    """Channels left open: the queue goes when the loop is collected."""
    import gc

    box = []

    async def main():
        ch = aio.insecure_channel(target)
        await stub_of(ch, pb).EmptyCall(pb.empty_pb2.Empty())
        box.append((ch, _cq._queues[asyncio.get_running_loop()]))

    asyncio.run(main())
    ch, q = box.pop()
    gc.collect()
    assert q.ptr is None and q.fd >= 0

    async def again():  # the channel on a second loop, with its own queue
        r = await stub_of(ch, pb).UnaryCall(pb.messages_pb2.SimpleRequest(response_size=2))
        assert r.payload.body == bytes(2)
        assert _cq._queues[asyncio.get_running_loop()] is not q
        await ch.close()

    run(again())
    assert ch.get_state() is rgrpc.ChannelConnectivity.SHUTDOWN


def test_ctrl_c_interrupts_asyncio_run(target, pb):
    code = textwrap.dedent("""
        import asyncio, sys, time
        sys.path.insert(0, %(pkg)r)
        from rgrpc import aio
        async def main():
            async with aio.insecure_channel(%(target)r) as ch:
                mc = ch.unary_unary("/grpc.testing.TestService/EmptyCall")
                await mc(b"")
                print("READY", flush=True)
                await mc(b"", metadata=[("x-rgrpc-sleep-ms", "30000")])
        t0 = time.monotonic()
        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            print("INTERRUPTED %%.1f" %% (time.monotonic() - t0), flush=True)
    """) % {"pkg": PKG_ROOT, "target": target}
    import signal

    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "READY"
        time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert out.startswith("INTERRUPTED"), (out, err)
    assert float(out.split()[1]) < 20


def test_one_queue_per_loop_in_threads(target, pb):
    """Two event loops in two threads, each with its own queue."""
    results = []

    def in_thread():
        async def main():
            async with aio.insecure_channel(target) as ch:
                rs = await asyncio.gather(*[stub_of(ch, pb).UnaryCall(
                    pb.messages_pb2.SimpleRequest(response_size=3)) for _ in range(20)])
                results.append((id(_cq._queues[asyncio.get_running_loop()]), len(rs)))

        asyncio.run(main())

    threads = [threading.Thread(target=in_thread) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [n for _, n in results] == [20, 20]
    assert results[0][0] != results[1][0]


# --- misc ---------------------------------------------------------------------------


def test_add_done_callback_and_wait_for_connection(target, pb):
    async def main():
        async with aio.insecure_channel(target) as ch:
            stub = stub_of(ch, pb)
            seen = []
            call = stub.StreamingOutputCall(out_req(pb, [1, 2, 3]))
            await call.wait_for_connection()
            call.add_done_callback(seen.append)
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            assert seen == [call] and call.done()
            # the messages received ahead for the callback are still there
            assert [len(x.payload.body) async for x in call] == [1, 2, 3]
            call = stub.EmptyCall(pb.empty_pb2.Empty())
            await call
            call.add_done_callback(seen.append)
            await asyncio.sleep(0)
            assert seen[-1] is call

    run(main())


def test_per_call_options_and_compression(target, pb):
    async def main():
        async with aio.insecure_channel(target, compression=rgrpc.Compression.Gzip) as ch:
            stub = stub_of(ch, pb)
            req = pb.messages_pb2.SimpleRequest(response_size=10, expect_compressed=
                                                pb.messages_pb2.BoolValue(value=True),
                                                payload=pb.messages_pb2.Payload(body=bytes(1000)))
            r = await stub.UnaryCall(req, wait_for_ready=True, timeout=10,
                                     compression=rgrpc.Compression.Gzip)
            assert r.payload.body == bytes(10)
            # uncompressed per call: the server refuses (it expects compression)
            with pytest.raises(aio.AioRpcError) as ei:
                await stub.UnaryCall(req, compression=rgrpc.Compression.NoCompression)
            assert ei.value.code() is StatusCode.INVALID_ARGUMENT

    run(main())


def test_call_credentials_refused_on_insecure_channel(target, pb):
    async def main():
        async with aio.insecure_channel(target) as ch:
            creds = rgrpc.access_token_call_credentials("tok")
            # as grpcio's aio: refused when the call is made
            with pytest.raises(aio.UsageError, match="only valid on secure channels"):
                stub_of(ch, pb).EmptyCall(pb.empty_pb2.Empty(), credentials=creds)

    run(main())


def test_secure_channel_with_local_and_call_credentials(server, pb):
    target = "127.0.0.1:%d" % server.port
    creds = rgrpc.composite_channel_credentials(rgrpc.local_channel_credentials(),
                                                rgrpc.access_token_call_credentials("chan"))
    echo = [("x-rgrpc-echo-all", "1")]

    async def main():
        async with aio.secure_channel(target, creds) as ch:
            stub = stub_of(ch, pb)
            call = stub.EmptyCall(pb.empty_pb2.Empty(), metadata=echo)
            await call
            assert (await call.initial_metadata()).get_all("x-echo-authorization") == \
                ["Bearer chan"]
            call = stub.StreamingOutputCall(
                out_req(pb, [1]), metadata=echo,
                credentials=rgrpc.access_token_call_credentials("percall"))
            assert len([x async for x in call]) == 1
            assert (await call.initial_metadata()).get_all("x-echo-authorization") == \
                ["Bearer chan", "Bearer percall"]

    run(main())


def test_bad_metadata_fails_the_call(target, pb):
    async def main():
        async with aio.insecure_channel(target) as ch:
            call = stub_of(ch, pb).EmptyCall(pb.empty_pb2.Empty(),
                                             metadata=[("Bad Key", "x")])
            with pytest.raises(aio.AioRpcError) as ei:
                await call
            assert ei.value.code() is StatusCode.INTERNAL
            assert call.done()

    run(main())


def test_install_as_grpc_gives_aio(target, pb):
    code = textwrap.dedent("""
        import asyncio, sys
        sys.path.insert(0, %(pkg)r)
        import rgrpc
        rgrpc.install_as_grpc()
        import grpc
        import grpc.aio
        import grpc.experimental.aio
        from grpc import aio
        assert grpc.aio is rgrpc.aio and aio is rgrpc.aio
        assert grpc.experimental.aio is rgrpc.aio
        sys.path.insert(0, %(gen)r)
        from rgrpc_testing import test_pb2_grpc, messages_pb2
        async def main():
            async with grpc.aio.insecure_channel(%(target)r) as ch:
                stub = test_pb2_grpc.TestServiceStub(ch)
                r = await stub.UnaryCall(messages_pb2.SimpleRequest(response_size=4))
                assert r.payload.body == bytes(4), r
                try:
                    await stub.UnimplementedCall(messages_pb2.SimpleRequest())
                except grpc.aio.AioRpcError as e:
                    assert e.code() is grpc.StatusCode.UNIMPLEMENTED
                    assert isinstance(e, grpc.RpcError)
        asyncio.run(main())
        print("OK")
    """) % {"pkg": PKG_ROOT, "gen": str(pb.cache_dir), "target": target}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "OK"


def test_names_mirror_grpcio_aio():
    grpc_aio = pytest.importorskip("grpc.aio")
    server_side = {"Server", "ServerInterceptor", "ServicerContext", "server"}
    missing = [n for n in grpc_aio.__all__ if n not in server_side and not hasattr(aio, n)]
    assert not missing
    assert issubclass(aio.AioRpcError, rgrpc.RpcError)
    assert issubclass(aio.UsageError, aio.BaseError)
    with pytest.raises(AttributeError, match="client library"):
        aio.server


# --- the C contract rgrpc.aio works around ---------------------------------------


def test_c_recv_cq_beside_pending_initial_metadata_cq(target):
    """At the C level (ctypes), no aio code: the header says
    rgrpc_call_initial_metadata_cq "may run beside a receive"."""
    import ctypes
    from ctypes import byref, c_void_p

    from rgrpc._lib import Completion, Result, lib

    wait = lib.rgrpc_completion_queue_wait
    wait.restype = ctypes.c_uint32
    wait.argtypes = [c_void_p, ctypes.c_int64, ctypes.POINTER(Completion)]
    ch, err, cq, call = c_void_p(), c_void_p(), c_void_p(), c_void_p()
    assert lib.rgrpc_channel_new(target.encode(), None, None, byref(ch), byref(err)) == 0
    assert lib.rgrpc_completion_queue_new(byref(cq), None) == 0
    opts = lib.rgrpc_call_options_new()
    lib.rgrpc_call_options_add_metadata(opts, b"x-rgrpc-sleep-ms", b"500", 3)
    try:
        assert lib.rgrpc_call_start_cq(ch, b"/grpc.testing.TestService/StreamingOutputCall",
                                       opts, cq, 1, byref(call)) == 0
        req = bytes([0x12, 2, 0x08, 5])  # one ResponseParameters{size: 5}
        assert lib.rgrpc_call_send_cq(call, req, len(req), 1, cq, 2) == 0
        c = Completion()
        results = {}
        end = time.monotonic() + 10
        while 1 not in results and time.monotonic() < end:  # the stream is open
            if wait(cq, 100, byref(c)) == 0:
                results[c.tag] = c.result
        assert lib.rgrpc_call_initial_metadata_cq(call, cq, 3) == 0  # headers: in 500 ms
        assert lib.rgrpc_call_recv_cq(call, cq, 4) == 0
        while 4 not in results and time.monotonic() < end:
            if wait(cq, 100, byref(c)) == 0:
                results[c.tag] = c.result
                lib.rgrpc_buffer_free(c.message)
                lib.rgrpc_status_free(c.status)
        assert results.get(4) == Result.OK, results  # the message; BUSY today
    finally:
        lib.rgrpc_call_options_free(opts)
        lib.rgrpc_call_free(call)
        lib.rgrpc_completion_queue_free(cq)
        lib.rgrpc_channel_free(ch)
