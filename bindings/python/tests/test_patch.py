"""rgrpc.patch_grpcio(): rgrpc under grpcio's client entry points, grpcio's
types in what it returns and raises, a grpcio server in the same process;
and install_as_grpc()'s grpc.* submodule aliases and grpc.__version__.

Patching is global, so each test runs a script in a fresh interpreter: a
prelude starts a grpcio TestService server in that process (the servicer
below) and calls rgrpc.patch_grpcio(); the script prints OK at its end."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import PKG_ROOT, free_port
from test_credentials import needs_tls, pki  # noqa: F401  (pki is a fixture)

pytest.importorskip("grpc")

PRELUDE = r'''
import asyncio, sys, threading, time
sys.path.insert(0, %(pkg)r)
sys.path.insert(0, %(gen)r)
from concurrent import futures
import grpc
import grpc.aio
import rgrpc
from rgrpc_testing import test_pb2_grpc, messages_pb2, empty_pb2

CODES = {c.value[0]: c for c in grpc.StatusCode}


class Servicer(test_pb2_grpc.TestServiceServicer):
    def EmptyCall(self, request, context):
        return empty_pb2.Empty()

    def UnaryCall(self, request, context):
        md = dict(context.invocation_metadata())
        if "authorization" in md:
            context.set_trailing_metadata((("x-auth", md["authorization"]),))
        if request.response_status.code:
            context.abort(CODES[request.response_status.code], request.response_status.message)
        return messages_pb2.SimpleResponse(
            payload=messages_pb2.Payload(body=bytes(request.response_size)))

    def StreamingOutputCall(self, request, context):
        for p in request.response_parameters:
            yield messages_pb2.StreamingOutputCallResponse(
                payload=messages_pb2.Payload(body=bytes(p.size)))
        if request.response_status.code:
            context.abort(CODES[request.response_status.code], request.response_status.message)

    def StreamingInputCall(self, request_iterator, context):
        n = sum(len(r.payload.body) for r in request_iterator)
        return messages_pb2.StreamingInputCallResponse(aggregated_payload_size=n)

    def FullDuplexCall(self, request_iterator, context):
        for r in request_iterator:
            for p in r.response_parameters:
                yield messages_pb2.StreamingOutputCallResponse(
                    payload=messages_pb2.Payload(body=bytes(p.size)))


def start_server(creds=None):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    test_pb2_grpc.add_TestServiceServicer_to_server(Servicer(), server)
    if creds is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return server, port


server, port = start_server()
target = "127.0.0.1:%%d" %% port
PATCH = %(patch)r
if PATCH:
    rgrpc.patch_grpcio()


def is_rgrpc(obj):
    return type(obj).__module__.startswith("rgrpc.")


def out_req(*sizes, code=0, message=""):
    return messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=s) for s in sizes],
        response_status=messages_pb2.EchoStatus(code=code, message=message))
'''


def run_script(pb, body, patch=True, extra=None, timeout=90):
    code = PRELUDE % {"pkg": PKG_ROOT, "gen": str(pb.cache_dir), "patch": patch}
    code += textwrap.dedent(body) + "\nserver.stop(None)\nprint('OK')\n"
    env = dict(os.environ)
    env.update(extra or {})
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=timeout, env=env)
    assert p.returncode == 0, p.stderr[-4000:]
    assert p.stdout.strip().splitlines()[-1] == "OK", (p.stdout, p.stderr[-2000:])
    return p.stdout


def test_four_patterns_with_grpcio_server_in_process(pb):
    run_script(pb, """
        ch = grpc.insecure_channel(target)
        assert is_rgrpc(ch), type(ch)
        assert isinstance(ch, grpc.Channel)
        stub = test_pb2_grpc.TestServiceStub(ch)
        r = stub.UnaryCall(messages_pb2.SimpleRequest(response_size=7), timeout=10)
        assert r.payload.body == bytes(7)
        r, call = stub.UnaryCall.with_call(messages_pb2.SimpleRequest(response_size=3))
        assert call.code() is grpc.StatusCode.OK and isinstance(call, grpc.Call)
        rgrpc.keep_call_stats(True)
        r, call = stub.UnaryCall.with_call(messages_pb2.SimpleRequest(response_size=3))
        assert rgrpc.call_stats(call)["messages_received"] == 1   # an rgrpc call
        got = [len(m.payload.body) for m in stub.StreamingOutputCall(out_req(1, 2, 3))]
        assert got == [1, 2, 3], got
        reqs = (messages_pb2.StreamingInputCallRequest(payload=messages_pb2.Payload(body=bytes(n)))
                for n in (4, 5))
        assert stub.StreamingInputCall(reqs).aggregated_payload_size == 9
        reqs = [out_req(2), out_req(4, 6)]
        got = [len(m.payload.body) for m in stub.FullDuplexCall(iter(reqs))]
        assert got == [2, 4, 6], got
        # the grpcio server in this process still serves a grpcio client
        from grpc._channel import Channel as GrpcioChannel
        gch = GrpcioChannel(target, (), None, None)
        gstub = test_pb2_grpc.TestServiceStub(gch)
        assert gstub.UnaryCall(messages_pb2.SimpleRequest(response_size=2)).payload.body == bytes(2)
        gch.close()
        ch.close()
    """)


def test_experimental_single_calls_go_through_rgrpc(pb):
    """grpcio's grpc.experimental.unary_unary (what generated static methods
    use) makes its channels with grpc.secure_channel and grpcio's insecure
    credentials: patched, they are rgrpc channels."""
    run_script(pb, """
        r = test_pb2_grpc.TestService.UnaryCall(
            messages_pb2.SimpleRequest(response_size=6), target, insecure=True, timeout=10)
        assert r.payload.body == bytes(6)
        from grpc import _simple_stubs
        cache = _simple_stubs.ChannelCache.get()
        chans = [v[0] for v in cache._mapping.values()]
        assert chans and all(is_rgrpc(c) for c in chans), chans
        got = list(test_pb2_grpc.TestService.StreamingOutputCall(
            out_req(1, 2), target, insecure=True, timeout=10))
        assert [len(m.payload.body) for m in got] == [1, 2]
    """)


def test_errors_are_grpcio_types(pb):
    run_script(pb, """
        ch = grpc.insecure_channel(target)
        stub = test_pb2_grpc.TestServiceStub(ch)
        bad = messages_pb2.SimpleRequest(
            response_status=messages_pb2.EchoStatus(code=5, message="no such thing"))
        try:
            stub.UnaryCall(bad, timeout=10)
            raise AssertionError("no error")
        except grpc.RpcError as e:
            assert is_rgrpc(e), type(e)
            assert e.code() == grpc.StatusCode.NOT_FOUND
            assert e.code() is grpc.StatusCode.NOT_FOUND
            assert isinstance(e.code(), grpc.StatusCode)
            assert {grpc.StatusCode.NOT_FOUND: "x"}[e.code()] == "x"
            assert e.details() == "no such thing"
            assert isinstance(e, grpc.Call)
            assert isinstance(e, rgrpc.RpcError)      # still rgrpc's too
        # from a future
        f = stub.UnaryCall.future(bad)
        assert isinstance(f, grpc.Future) and isinstance(f, grpc.Call)
        try:
            f.result(timeout=10)
            raise AssertionError("no error")
        except grpc.RpcError as e:
            assert e.code() is grpc.StatusCode.NOT_FOUND
        assert f.code() is grpc.StatusCode.NOT_FOUND
        assert isinstance(f.exception(), grpc.RpcError)
        # a stream ending in an error, after its messages
        it = stub.StreamingOutputCall(out_req(1, 1, code=9, message="late"))
        got = []
        try:
            for m in it:
                got.append(m)
            raise AssertionError("no error")
        except grpc.RpcError as e:
            assert e.code() is grpc.StatusCode.FAILED_PRECONDITION and e.details() == "late"
        assert len(got) == 2
        # deadline: the request stream stays open (held below), so only the
        # deadline can end the call
        gate = threading.Event()
        def held():
            gate.wait(10)
            return
            yield
        try:
            stub.FullDuplexCall(held(), timeout=0.05).next()
            raise AssertionError("no error")
        except grpc.RpcError as e:
            assert e.code() is grpc.StatusCode.DEADLINE_EXCEEDED, e.code()
        gate.set()
        # future timeout and cancel
        f = stub.FullDuplexCall(iter([out_req(1)]))
        next(f)
        f.cancel()
        assert f.code() is grpc.StatusCode.CANCELLED
        ch.close()
    """)


def test_channel_ready_future_and_connectivity(pb):
    run_script(pb, """
        dead = grpc.insecure_channel("127.0.0.1:%d")
        f = grpc.channel_ready_future(dead)
        assert isinstance(f, grpc.Future)
        t0 = time.monotonic()
        try:
            f.result(timeout=0.3)
            raise AssertionError("ready on a dead port")
        except grpc.FutureTimeoutError as e:
            assert isinstance(e, rgrpc.FutureTimeoutError)
        assert time.monotonic() - t0 < 5
        f.cancel()
        try:
            f.result()
        except grpc.FutureCancelledError:
            pass
        else:
            raise AssertionError("not cancelled")
        dead.close()
        ch = grpc.insecure_channel(target)
        seen = []
        ch.subscribe(seen.append, try_to_connect=True)
        grpc.channel_ready_future(ch).result(timeout=10)
        for _ in range(100):
            if grpc.ChannelConnectivity.READY in seen:
                break
            time.sleep(0.02)
        assert grpc.ChannelConnectivity.READY in seen, seen
        assert all(isinstance(s, grpc.ChannelConnectivity) for s in seen), seen
        ch.close()
        # a grpcio channel made without the patch still goes to grpcio
        from grpc._channel import Channel as GrpcioChannel
        gch = GrpcioChannel(target, (), None, None)
        gf = grpc.channel_ready_future(gch)
        assert not is_rgrpc(gf)
        gf.result(timeout=10)
        gch.close()
    """ % free_port())


def test_grpcio_interceptor_through_intercept_channel(pb):
    run_script(pb, """
        import collections

        class Details(collections.namedtuple(
                "Details", ("method", "timeout", "metadata", "credentials",
                            "wait_for_ready", "compression")), grpc.ClientCallDetails):
            pass

        class AddHeader(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
            def __init__(self):
                self.methods = []

            def _details(self, d):
                self.methods.append(d.method)
                md = list(d.metadata or ()) + [("authorization", "Bearer from-interceptor")]
                return Details(d.method, d.timeout, md, d.credentials, d.wait_for_ready,
                               d.compression)

            def intercept_unary_unary(self, continuation, d, request):
                return continuation(self._details(d), request)

            def intercept_unary_stream(self, continuation, d, request):
                return continuation(self._details(d), request)

        icpt = AddHeader()
        ch = grpc.intercept_channel(grpc.insecure_channel(target), icpt)
        assert is_rgrpc(ch), type(ch)
        stub = test_pb2_grpc.TestServiceStub(ch)
        r, call = stub.UnaryCall.with_call(messages_pb2.SimpleRequest(response_size=1))
        assert dict(call.trailing_metadata())["x-auth"] == "Bearer from-interceptor"
        assert len(list(stub.StreamingOutputCall(out_req(1, 2)))) == 2
        assert [m.rsplit("/", 1)[-1] for m in icpt.methods] == ["UnaryCall",
                                                                 "StreamingOutputCall"]
        try:
            stub.UnaryCall(messages_pb2.SimpleRequest(
                response_status=messages_pb2.EchoStatus(code=7, message="no")))
        except grpc.RpcError as e:
            assert e.code() is grpc.StatusCode.PERMISSION_DENIED
        else:
            raise AssertionError("no error")
    """)


def test_aio_patched(pb):
    run_script(pb, """
        async def main():
            ch = grpc.aio.insecure_channel(target)
            assert is_rgrpc(ch), type(ch)
            assert isinstance(ch, grpc.aio.Channel)
            async with ch:
                stub = test_pb2_grpc.TestServiceStub(ch)
                call = stub.UnaryCall(messages_pb2.SimpleRequest(response_size=5))
                assert isinstance(call, grpc.aio.UnaryUnaryCall)
                r = await call
                assert r.payload.body == bytes(5)
                assert await call.code() is grpc.StatusCode.OK
                try:
                    await stub.UnaryCall(messages_pb2.SimpleRequest(
                        response_status=messages_pb2.EchoStatus(code=5, message="gone")))
                    raise AssertionError("no error")
                except grpc.aio.AioRpcError as e:
                    assert is_rgrpc(e), type(e)
                    assert e.code() is grpc.StatusCode.NOT_FOUND and e.details() == "gone"
                    assert isinstance(e, grpc.RpcError)
                stream = stub.StreamingOutputCall(out_req(1, 2))
                assert isinstance(stream, grpc.aio.UnaryStreamCall)
                assert len((await stream.read()).payload.body) == 1
                assert len((await stream.read()).payload.body) == 2
                assert (await stream.read()) is grpc.aio.EOF
                assert ch.get_state() is grpc.ChannelConnectivity.READY
            assert grpc.experimental.aio.insecure_channel is grpc.aio.insecure_channel
        asyncio.run(main())
    """)


@needs_tls
def test_grpcio_credentials_through_patched_secure_channel(pb, pki):  # noqa: F811
    body = """
        pki = %r
        tserver, tport = start_server(grpc.ssl_server_credentials(
            [(pki["server.key"], pki["server.pem"])]))
        mserver, mport = start_server(grpc.ssl_server_credentials(
            [(pki["server.key"], pki["server.pem"])], root_certificates=pki["ca.pem"],
            require_client_auth=True))
        # made before anything else, as a library would at import time
        roots = grpc.ssl_channel_credentials(root_certificates=pki["ca.pem"])
        assert type(roots) is grpc.ChannelCredentials
        ch = grpc.secure_channel("localhost:%%d" %% tport, roots)
        assert is_rgrpc(ch)
        stub = test_pb2_grpc.TestServiceStub(ch)
        assert stub.UnaryCall(messages_pb2.SimpleRequest(response_size=3),
                              timeout=10).payload.body == bytes(3)
        # per-call grpcio call credentials
        r, call = stub.UnaryCall.with_call(
            messages_pb2.SimpleRequest(), timeout=10,
            credentials=grpc.access_token_call_credentials("tok1"))
        assert dict(call.trailing_metadata())["x-auth"] == "Bearer tok1"
        ch.close()

        # grpcio's composite of TLS and a metadata plugin
        class Plugin(grpc.AuthMetadataPlugin):
            def __call__(self, context, callback):
                assert context.method_name == "UnaryCall", context
                callback((("authorization", "Plugin p"),), None)

        comp = grpc.composite_channel_credentials(
            roots, grpc.metadata_call_credentials(Plugin(), name="p"))
        with grpc.secure_channel("127.0.0.1:%%d" %% tport, comp) as ch:
            r, call = test_pb2_grpc.TestServiceStub(ch).UnaryCall.with_call(
                messages_pb2.SimpleRequest(), timeout=10)
            assert dict(call.trailing_metadata())["x-auth"] == "Plugin p"

        # mutual TLS
        mtls = grpc.ssl_channel_credentials(pki["ca.pem"], pki["client.key"], pki["client.pem"])
        with grpc.secure_channel("localhost:%%d" %% mport, mtls) as ch:
            assert test_pb2_grpc.TestServiceStub(ch).UnaryCall(
                messages_pb2.SimpleRequest(response_size=1), timeout=10).payload.body == bytes(1)
        # without the client certificate: refused by the server
        with grpc.secure_channel("localhost:%%d" %% mport, roots) as ch:
            try:
                test_pb2_grpc.TestServiceStub(ch).UnaryCall(messages_pb2.SimpleRequest(),
                                                            timeout=10)
                raise AssertionError("mTLS server accepted a client without a certificate")
            except grpc.RpcError as e:
                assert e.code() is grpc.StatusCode.UNAVAILABLE, e.code()

        # local credentials (insecure server on loopback) with call credentials
        local = grpc.composite_channel_credentials(
            grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP),
            grpc.access_token_call_credentials("tok2"))
        with grpc.secure_channel(target, local) as ch:
            r, call = test_pb2_grpc.TestServiceStub(ch).UnaryCall.with_call(
                messages_pb2.SimpleRequest(), timeout=10)
            assert dict(call.trailing_metadata())["x-auth"] == "Bearer tok2"

        # aio secure channel with grpcio credentials
        async def main():
            async with grpc.aio.secure_channel("localhost:%%d" %% tport, roots) as ch:
                assert is_rgrpc(ch)
                r = await test_pb2_grpc.TestServiceStub(ch).UnaryCall(
                    messages_pb2.SimpleRequest(response_size=2), timeout=10)
                assert r.payload.body == bytes(2)
        asyncio.run(main())
        tserver.stop(None)
        mserver.stop(None)
    """ % (pki,)
    run_script(pb, body)


def test_unpatch_restores_grpcio(pb):
    run_script(pb, """
        assert rgrpc.is_patched()
        assert rgrpc.StatusCode is grpc.StatusCode
        rgrpc.unpatch_grpcio()
        assert not rgrpc.is_patched()
        assert rgrpc.StatusCode is not grpc.StatusCode
        assert grpc.insecure_channel.__module__ == "grpc"
        assert grpc.secure_channel.__module__ == "grpc"
        assert grpc.aio.insecure_channel.__module__.startswith("grpc.aio")
        ch = grpc.insecure_channel(target)
        assert not is_rgrpc(ch), type(ch)
        ch.close()
        # rgrpc itself is back to its own types
        with rgrpc.insecure_channel(target) as rch:
            stub = test_pb2_grpc.TestServiceStub(rch)
            try:
                stub.UnaryCall(messages_pb2.SimpleRequest(
                    response_status=messages_pb2.EchoStatus(code=5)))
            except grpc.RpcError:
                raise AssertionError("unpatched rgrpc raised a grpcio RpcError")
            except rgrpc.RpcError as e:
                assert e.code() is rgrpc.StatusCode.NOT_FOUND
        # the context manager patches for its block only
        with rgrpc.patched_grpcio():
            ch = grpc.insecure_channel(target)
            assert is_rgrpc(ch)
            try:
                test_pb2_grpc.TestServiceStub(ch).UnaryCall(messages_pb2.SimpleRequest(
                    response_status=messages_pb2.EchoStatus(code=5)))
            except grpc.RpcError as e:
                assert e.code() is grpc.StatusCode.NOT_FOUND
        assert not rgrpc.is_patched()
        assert not is_rgrpc(grpc.insecure_channel(target))
    """)


def test_not_patched_is_untouched(pb):
    """Without patch_grpcio(), grpcio and rgrpc are separate (and rgrpc's
    secure_channel still takes grpcio credentials objects)."""
    run_script(pb, """
        assert not rgrpc.is_patched()
        assert not is_rgrpc(grpc.insecure_channel(target))
        assert rgrpc.StatusCode is not grpc.StatusCode
        assert not issubclass(rgrpc.RpcError, grpc.RpcError)
        with rgrpc.secure_channel(target, grpc.local_channel_credentials()) as ch:
            r = test_pb2_grpc.TestServiceStub(ch).UnaryCall(
                messages_pb2.SimpleRequest(response_size=1), timeout=10,
                credentials=grpc.access_token_call_credentials("t"))
            assert r.payload.body == bytes(1)
    """, patch=False)


def test_install_as_grpc_submodule_aliases(pb, target):
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, %(pkg)r)
        import rgrpc
        rgrpc.install_as_grpc()
        import grpc
        import grpc._channel
        import grpc._utilities, grpc._common, grpc._interceptor, grpc.compression
        import grpc.experimental, grpc.experimental.aio, grpc.aio, grpc.aio._call
        from grpc._channel import _InactiveRpcError, _MultiThreadedRendezvous, Channel
        assert grpc._channel is rgrpc._channel
        assert grpc.aio is rgrpc.aio and grpc.experimental.aio is rgrpc.aio
        assert grpc.aio._call.AioRpcError is rgrpc.aio.AioRpcError
        assert grpc.__version__ == rgrpc.GRPCIO_API_VERSION != rgrpc.__version__, (
            grpc.__version__, rgrpc.__version__)
        assert tuple(int(x) for x in grpc.__version__.split(".")[:2]) >= (1, 83)
        assert grpc.insecure_channel is rgrpc.insecure_channel
        assert grpc.RpcError is rgrpc.RpcError
        assert grpc._common.encode("a") == b"a"
        assert grpc._interceptor._Channel is rgrpc._interceptor._InterceptedChannel
        try:
            grpc.server
        except AttributeError as e:
            assert "client library" in str(e)
        sys.path.insert(0, %(gen)r)
        from rgrpc_testing import test_pb2_grpc, messages_pb2
        with grpc.insecure_channel(%(target)r) as ch:
            assert isinstance(ch, grpc._channel.Channel)
            stub = test_pb2_grpc.TestServiceStub(ch)
            try:
                stub.UnimplementedCall(messages_pb2.SimpleRequest(), timeout=10)
                raise AssertionError("no error")
            except grpc._channel._InactiveRpcError as e:
                assert e.code() is grpc.StatusCode.UNIMPLEMENTED
            f = stub.UnimplementedCall.future(messages_pb2.SimpleRequest(), timeout=10)
            assert isinstance(f, grpc._channel._MultiThreadedRendezvous)
            try:
                f.result()
                raise AssertionError("no error")
            except grpc._channel._MultiThreadedRendezvous as e:
                assert e.code() is grpc.StatusCode.UNIMPLEMENTED
        # installing again is allowed (the grpc module is already rgrpc's)
        rgrpc.install_as_grpc()
        try:
            rgrpc.patch_grpcio()
            raise AssertionError("patched rgrpc's own grpc module")
        except RuntimeError as e:
            assert "install_as_grpc" in str(e)
        print("OK")
    """) % {"pkg": PKG_ROOT, "gen": str(pb.cache_dir), "target": target}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "OK"
