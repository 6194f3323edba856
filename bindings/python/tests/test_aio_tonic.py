"""rgrpc.aio against a tonic server (testing/tonic-interop: the Rust interop
server), beside test_aio.py's grpcio server: the four patterns through the
generated stubs, metadata both ways, an error status, a deadline,
cancellation, many calls from one loop.

The server binary comes from RGRPC_TONIC_SERVER (the test command sets it
and builds the server first), else target/debug or target/release of the
checkout; without any the module is skipped."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from rgrpc import aio
import rgrpc

from conftest import REPO


def _server_binary():
    env = os.environ.get("RGRPC_TONIC_SERVER")
    if env:
        if not os.path.exists(env):
            pytest.fail("RGRPC_TONIC_SERVER=%s does not exist" % env)
        return env
    for kind in ("debug", "release"):
        p = os.path.join(REPO, "target", kind, "tonic-interop-server")
        if os.path.exists(p):
            return p
    pytest.skip("no tonic-interop-server (set RGRPC_TONIC_SERVER)")


@pytest.fixture(scope="module")
def tonic_target():
    p = subprocess.Popen([_server_binary(), "--port", "0"], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    if len(line) != 2 or line[0] != "LISTENING":
        p.kill()
        pytest.fail("tonic server did not start: %r" % line)
    yield "127.0.0.1:" + line[1]
    p.terminate()
    p.wait(10)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_four_patterns(tonic_target, pb):
    m = pb.messages_pb2

    async def main():
        async with aio.insecure_channel(tonic_target) as ch:
            stub = pb.test_pb2_grpc.TestServiceStub(ch)
            r = await stub.UnaryCall(m.SimpleRequest(response_size=31), timeout=10)
            assert len(r.payload.body) == 31
            sizes = [5, 6, 7]
            req = m.StreamingOutputCallRequest(
                response_parameters=[m.ResponseParameters(size=s) for s in sizes])
            got = [len(x.payload.body) async for x in stub.StreamingOutputCall(req, timeout=10)]
            assert got == sizes

            async def reqs():
                for n in (10, 20, 30):
                    yield m.StreamingInputCallRequest(payload=m.Payload(body=b"\0" * n))

            r = await stub.StreamingInputCall(reqs(), timeout=10)
            assert r.aggregated_payload_size == 60
            call = stub.FullDuplexCall(timeout=10)
            for n in (3, 4):
                await call.write(m.StreamingOutputCallRequest(
                    response_parameters=[m.ResponseParameters(size=n)]))
                assert len((await call.read()).payload.body) == n
            await call.done_writing()
            assert await call.read() is aio.EOF
            assert await call.code() == rgrpc.StatusCode.OK

    run(main())


def test_metadata_and_error_status(tonic_target, pb):
    m = pb.messages_pb2

    async def main():
        async with aio.insecure_channel(tonic_target) as ch:
            stub = pb.test_pb2_grpc.TestServiceStub(ch)
            call = stub.UnaryCall(
                m.SimpleRequest(response_size=1), timeout=10,
                metadata=(("x-grpc-test-echo-initial", "hello"),
                          ("x-grpc-test-echo-trailing-bin", b"\x00\xff")))
            await call
            assert ("x-grpc-test-echo-initial", "hello") in tuple(await call.initial_metadata())
            assert ("x-grpc-test-echo-trailing-bin", b"\x00\xff") in tuple(
                await call.trailing_metadata())
            with pytest.raises(aio.AioRpcError) as e:
                await stub.UnaryCall(m.SimpleRequest(
                    response_status=m.EchoStatus(code=5, message="not here")), timeout=10)
            assert e.value.code() == rgrpc.StatusCode.NOT_FOUND
            assert e.value.details() == "not here"

    run(main())


def test_deadline_and_cancel(tonic_target, pb):
    m = pb.messages_pb2
    slow = m.StreamingOutputCallRequest(
        response_parameters=[m.ResponseParameters(size=1, interval_us=2000000)])

    async def main():
        async with aio.insecure_channel(tonic_target) as ch:
            stub = pb.test_pb2_grpc.TestServiceStub(ch)
            call = stub.StreamingOutputCall(slow, timeout=0.2)
            with pytest.raises(aio.AioRpcError) as e:
                async for _ in call:
                    pass
            assert e.value.code() == rgrpc.StatusCode.DEADLINE_EXCEEDED
            call = stub.StreamingOutputCall(slow, timeout=10)

            async def reader():
                async for _ in call:
                    pass

            task = asyncio.ensure_future(reader())
            await asyncio.sleep(0.1)
            assert call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert call.cancelled()
            assert await call.code() == rgrpc.StatusCode.CANCELLED

    run(main())


def test_many_calls_from_one_loop(tonic_target, pb):
    m = pb.messages_pb2

    async def main():
        async with aio.insecure_channel(tonic_target) as ch:
            stub = pb.test_pb2_grpc.TestServiceStub(ch)
            rs = await asyncio.gather(*(
                stub.UnaryCall(m.SimpleRequest(response_size=i % 50), timeout=30)
                for i in range(500)))
            assert [len(r.payload.body) for r in rs] == [i % 50 for i in range(500)]

    run(main())


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
