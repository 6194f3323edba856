"""Credentials: local channel credentials with access-token / plugin /
composite call credentials against the interop server (it echoes request
metadata with x-rgrpc-echo-all), refusals, and TLS + mTLS + token against a
grpcio TLS server with a throwaway CA (when librgrpc has TLS and openssl is
installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent import futures

import pytest

import rgrpc as grpc

ECHO_ALL = (("x-rgrpc-echo-all", "1"),)


def echoed(call, key):
    return [v for k, v in call.initial_metadata() if k == "x-echo-" + key]


@pytest.fixture
def local_target(server):
    return "127.0.0.1:%d" % server.port


def local_channel(target, *call_creds):
    creds = grpc.local_channel_credentials()
    if call_creds:
        creds = grpc.composite_channel_credentials(creds, *call_creds)
    return grpc.secure_channel(target, creds)


def test_local_credentials_plain_calls(local_target, pb):
    with local_channel(local_target) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        assert stub.UnaryCall(pb.messages_pb2.SimpleRequest(response_size=2)).payload.body \
            == bytes(2)


def test_access_token_per_call(local_target, pb):
    with local_channel(local_target) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        _, call = stub.EmptyCall.with_call(
            pb.empty_pb2.Empty(), metadata=ECHO_ALL,
            credentials=grpc.access_token_call_credentials("tok123"))
        assert echoed(call, "authorization") == ["Bearer tok123"]


def test_access_token_on_channel_all_patterns(local_target, pb):
    with local_channel(local_target, grpc.access_token_call_credentials("chan")) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        _, call = stub.EmptyCall.with_call(pb.empty_pb2.Empty(), metadata=ECHO_ALL)
        assert echoed(call, "authorization") == ["Bearer chan"]
        f = stub.EmptyCall.future(pb.empty_pb2.Empty(), metadata=ECHO_ALL)
        f.result(timeout=10)
        assert echoed(f, "authorization") == ["Bearer chan"]
        it = stub.StreamingOutputCall(pb.messages_pb2.StreamingOutputCallRequest(),
                                      metadata=ECHO_ALL)
        list(it)
        assert echoed(it, "authorization") == ["Bearer chan"]
        _, call = stub.StreamingInputCall.with_call(iter(()), metadata=ECHO_ALL)
        assert echoed(call, "authorization") == ["Bearer chan"]


class Plugin(grpc.AuthMetadataPlugin):
    def __init__(self, md=None, error=None, delay=0.0, raise_=False):
        self.md, self.error, self.delay, self.raise_ = md, error, delay, raise_
        self.contexts = []

    def __call__(self, context, callback):
        self.contexts.append(context)
        if self.raise_:
            raise RuntimeError("plugin crashed")

        def answer():
            if self.delay:
                time.sleep(self.delay)
            callback(self.md, self.error)

        if self.delay:
            threading.Thread(target=answer).start()
        else:
            answer()


def test_metadata_plugin(local_target, pb):
    plugin = Plugin(md=(("x-plugin", "p1"), ("x-plugin-bin", b"\x01\x02")))
    creds = grpc.metadata_call_credentials(plugin, name="test")
    with local_channel(local_target) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        _, call = stub.EmptyCall.with_call(pb.empty_pb2.Empty(), metadata=ECHO_ALL,
                                           credentials=creds)
        assert echoed(call, "x-plugin") == ["p1"]
        assert echoed(call, "x-plugin-bin") == [b"\x01\x02"]
    ctx = plugin.contexts[0]
    assert isinstance(ctx, grpc.AuthMetadataContext)
    assert ctx.method_name == "EmptyCall"
    assert ctx.service_url.endswith("/grpc.testing.TestService")


def test_plugin_answering_later_from_another_thread(local_target, pb):
    creds = grpc.metadata_call_credentials(Plugin(md=(("x-late", "yes"),), delay=0.2))
    with local_channel(local_target) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        _, call = stub.EmptyCall.with_call(pb.empty_pb2.Empty(), metadata=ECHO_ALL,
                                           credentials=creds)
        assert echoed(call, "x-late") == ["yes"]


def test_plugin_failure_is_unauthenticated(local_target, pb):
    with local_channel(local_target) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        for plugin in (Plugin(error=ValueError("no token")), Plugin(raise_=True)):
            with pytest.raises(grpc.RpcError) as info:
                stub.EmptyCall(pb.empty_pb2.Empty(),
                               credentials=grpc.metadata_call_credentials(plugin))
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_composite_call_credentials_in_order(local_target, pb):
    creds = grpc.composite_call_credentials(
        grpc.metadata_call_credentials(Plugin(md=(("x-order", "1"),))),
        grpc.metadata_call_credentials(Plugin(md=(("x-order", "2"),))),
    )
    with local_channel(local_target, grpc.access_token_call_credentials("c")) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        _, call = stub.EmptyCall.with_call(pb.empty_pb2.Empty(), metadata=ECHO_ALL,
                                           credentials=creds)
        assert echoed(call, "x-order") == ["1", "2"]
        assert echoed(call, "authorization") == ["Bearer c"]  # channel's, plus the call's


def test_call_credentials_refused_on_insecure_channel(stub, pb):
    with pytest.raises(grpc.RpcError) as info:
        stub.EmptyCall(pb.empty_pb2.Empty(),
                       credentials=grpc.access_token_call_credentials("t"))
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_secure_channel_refuses_insecure_credentials(target):
    with pytest.raises(ValueError):
        grpc.secure_channel(target, grpc.experimental.insecure_channel_credentials())


def test_local_credentials_refuse_remote_targets():
    with pytest.raises(ValueError):
        grpc.secure_channel("192.0.2.1:443", grpc.local_channel_credentials())


def test_local_credentials_unix_socket(make_server, pb):
    path = os.path.join(tempfile.mkdtemp(prefix="rgrpc-py-"), "s.sock")
    make_server(uds=path)
    creds = grpc.composite_channel_credentials(
        grpc.local_channel_credentials(grpc.LocalConnectionType.UDS),
        grpc.access_token_call_credentials("uds"))
    with grpc.secure_channel("unix:" + path, creds) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        _, call = stub.EmptyCall.with_call(pb.empty_pb2.Empty(), metadata=ECHO_ALL)
        assert echoed(call, "authorization") == ["Bearer uds"]


def test_ssl_credentials_arguments():
    grpc.ssl_channel_credentials()
    grpc.ssl_channel_credentials(root_certificates=b"pem")
    with pytest.raises(ValueError):
        grpc.ssl_channel_credentials(private_key=b"k")


# --- TLS -------------------------------------------------------------------------

needs_tls = pytest.mark.skipif(not shutil.which("openssl"),
                               reason="needs the openssl tool (for a throwaway CA)")


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki():
    """A throwaway CA, a server certificate for localhost/127.0.0.1/foo.test,
    a client certificate, and a second unrelated CA."""
    d = tempfile.mkdtemp(prefix="rgrpc-pki-")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", *ec, "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
                 "-subj", "/CN=rgrpc test " + ca, "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    exts = {
        "server": "subjectAltName=DNS:localhost,DNS:foo.test,IP:127.0.0.1\n"
                  "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        "client": "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
    }
    for name, ext in exts.items():
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write(ext)
        _openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr",
                 "-subj", "/CN=" + name, cwd=d)
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext",
                 cwd=d)

    def read(n):
        with open(os.path.join(d, n), "rb") as f:
            return f.read()

    yield {n: read(n) for n in ("ca.pem", "other-ca.pem", "server.pem", "server.key",
                                 "client.pem", "client.key")}
    shutil.rmtree(d, ignore_errors=True)


def _tls_server(pki, require_client_auth):
    grpcio = pytest.importorskip("grpc")

    def echo(request, context):
        md = dict(context.invocation_metadata())
        context.set_trailing_metadata((("x-auth", md.get("authorization", "")),))
        return request

    server = grpcio.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpcio.method_handlers_generic_handler(
        "test.Echo", {"Unary": grpcio.unary_unary_rpc_method_handler(echo)}),))
    creds = grpcio.ssl_server_credentials(
        [(pki["server.key"], pki["server.pem"])],
        root_certificates=pki["ca.pem"] if require_client_auth else None,
        require_client_auth=require_client_auth)
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return server, port


@pytest.fixture(scope="module")
def tls_server(pki):
    server, port = _tls_server(pki, False)
    yield port
    server.stop(0)


@pytest.fixture(scope="module")
def mtls_server(pki):
    server, port = _tls_server(pki, True)
    yield port
    server.stop(0)


def _echo(ch, **kw):
    return ch.unary_unary("/test.Echo/Unary").with_call(b"ping", timeout=10, **kw)


@needs_tls
def test_tls_with_custom_roots(pki, tls_server):
    creds = grpc.ssl_channel_credentials(root_certificates=pki["ca.pem"])
    for host in ("localhost", "127.0.0.1"):
        with grpc.secure_channel("%s:%d" % (host, tls_server), creds) as ch:
            response, call = _echo(ch)
            assert response == b"ping" and call.code() is grpc.StatusCode.OK


@needs_tls
def test_tls_untrusted_server_is_unavailable(pki, tls_server):
    creds = grpc.ssl_channel_credentials(root_certificates=pki["other-ca.pem"])
    with grpc.secure_channel("localhost:%d" % tls_server, creds) as ch:
        with pytest.raises(grpc.RpcError) as info:
            _echo(ch)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE


@needs_tls
def test_tls_name_override(pki, tls_server):
    creds = grpc.ssl_channel_credentials(root_certificates=pki["ca.pem"])
    opts = [("grpc.ssl_target_name_override", "foo.test")]
    with grpc.secure_channel("127.0.0.1:%d" % tls_server, creds, options=opts) as ch:
        assert _echo(ch)[0] == b"ping"
    opts = [("grpc.ssl_target_name_override", "bar.test")]
    with grpc.secure_channel("127.0.0.1:%d" % tls_server, creds, options=opts) as ch:
        with pytest.raises(grpc.RpcError) as info:
            _echo(ch)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE


@needs_tls
def test_tls_plus_access_token(pki, tls_server):
    creds = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=pki["ca.pem"]),
        grpc.access_token_call_credentials("secret"))
    with grpc.secure_channel("localhost:%d" % tls_server, creds) as ch:
        _, call = _echo(ch)
        assert ("x-auth", "Bearer secret") in call.trailing_metadata()
        _, call = _echo(ch, credentials=grpc.metadata_call_credentials(
            Plugin(md=(("x-extra", "1"),))))
        assert ("x-auth", "Bearer secret") in call.trailing_metadata()


@needs_tls
def test_mutual_tls(pki, mtls_server):
    good = grpc.ssl_channel_credentials(pki["ca.pem"], pki["client.key"], pki["client.pem"])
    with grpc.secure_channel("localhost:%d" % mtls_server, good) as ch:
        assert _echo(ch)[0] == b"ping"
    no_cert = grpc.ssl_channel_credentials(pki["ca.pem"])
    with grpc.secure_channel("localhost:%d" % mtls_server, no_cert) as ch:
        with pytest.raises(grpc.RpcError) as info:
            _echo(ch)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE


@needs_tls
def test_tls_to_plaintext_server_fails(target):
    creds = grpc.ssl_channel_credentials()
    with grpc.secure_channel(target, creds) as ch:
        with pytest.raises(grpc.RpcError) as info:
            ch.unary_unary("/grpc.testing.TestService/EmptyCall")(b"", timeout=10)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
