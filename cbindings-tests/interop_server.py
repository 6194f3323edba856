#!/usr/bin/env python3
"""gRPC interop TestService server (grpcio) used as a test peer for rgrpc.

Implements the server side of grpc/grpc doc/interop-test-descriptions.md for
``grpc.testing.TestService`` (plaintext or TLS), plus a few rgrpc test helpers.

Command line::

    interop_server.py [--port N] [--host H] [--uds PATH]
                      [--max_concurrent_streams N] [--max_workers N]
                      [--max_receive_message_length BYTES]
                      [--use_tls[=true|false] --tls_cert_file PATH --tls_key_file PATH
                       [--tls_client_ca_file PATH]]

``--use_tls`` serves TLS (``grpc.ssl_server_credentials``) with the PEM
certificate chain and key of ``--tls_cert_file`` and ``--tls_key_file``;
``--tls_client_ca_file`` also requires a client certificate signed by a CA
of that PEM file (mutual TLS).  Missing or unreadable files exit with
status 2.

``--port 0`` picks a free port.  ``--uds PATH`` listens on ``unix:PATH``
instead of TCP (a stale socket file at PATH is removed first).  Once
listening, exactly one line ``LISTENING <port>`` is written to stdout and
flushed (``LISTENING 0`` for ``--uds``); nothing else goes to stdout.  The
server runs until SIGTERM/SIGINT and then exits with status 0.  Bind failures
exit with status 1 and a message on stderr.
With ``RGRPC_TEST_PARENT_PID=PID`` in the environment (Linux), the server
gets SIGTERM when its parent process PID dies, and exits at once if PID is
not its parent any more.

Methods:

* EmptyCall -> Empty.
* UnaryCall -> payload of ``response_size`` zero bytes.  ``response_status``
  with a non-zero code ends the call with that code/message (codes outside
  1..16 are sent as UNKNOWN, a grpcio limitation).  ``response_compressed``
  true -> the response message is gzip-compressed.  ``expect_compressed`` true
  and the request message was not compressed -> INVALID_ARGUMENT.
  ``response_type`` other than COMPRESSABLE -> INVALID_ARGUMENT.
  ``fill_server_id`` fills ``server_id``/``hostname``.
* CacheableUnaryCall -> payload is the current time in ns (ASCII) plus a
  ``cache-control`` initial metadata entry.
* StreamingOutputCall -> for each ResponseParameters: sleep ``interval_us``,
  send ``size`` zero bytes (gzip-compressed when ``compressed`` is true); then
  ``response_status`` if set.
* StreamingInputCall -> ``aggregated_payload_size`` after half-close;
  ``expect_compressed`` checked per message.
* FullDuplexCall -> per request: non-zero ``response_status`` ends the call
  with it (before its response_parameters), otherwise one response per
  ResponseParameters as above.
* HalfDuplexCall -> buffers requests until half-close, then answers like
  FullDuplexCall.
* UnimplementedCall (and any other service/method) -> UNIMPLEMENTED.

Request metadata handled by every method (processed in this order):

* ``x-rgrpc-sleep-ms: N`` -- sleep N ms before anything else (the sleep ends
  early if the RPC is cancelled / its deadline expires).
* ``x-grpc-test-echo-initial*`` keys are echoed in initial metadata,
  ``x-grpc-test-echo-trailing*`` keys in trailing metadata (also when the
  call ends with an error status).  ``-bin`` values are echoed as bytes.
* ``x-rgrpc-echo-request-headers: 1`` adds to the initial metadata
  ``x-rgrpc-req-user-agent``, ``x-rgrpc-req-time-remaining-ms`` (only when the
  call has a deadline; grpcio does not expose grpc-timeout itself),
  ``x-rgrpc-req-authority`` and ``x-rgrpc-req-path`` (both read from grpcio's
  private call details; omitted if unavailable), ``x-rgrpc-req-authorization``
  (the ``authorization`` request metadata, when present) and, on a mutual-TLS
  connection, ``x-rgrpc-req-peer-cn`` (the client certificate's subject CN,
  from grpcio's auth context).
* ``x-rgrpc-echo-all: 1`` copies every request metadata item whose key does
  not start with ``grpc-`` or ``:`` and is not ``user-agent`` into the initial
  metadata as ``x-echo-<key>`` (``-bin`` values as bytes).

Retry test behaviour (gRFC A6 client retries; the tonic test server
implements the same convention).  It is active only when a request carries
``x-retry-key``, so interop behaviour is unchanged, and applies to
UnaryCall, StreamingOutputCall, StreamingInputCall and FullDuplexCall.  It
runs before everything else above (sleep, echo): a failing attempt does
nothing but fail.  Values are ASCII; attempt numbers are the server's own
count, 1-based, per key, in this server process.

* ``x-retry-key: K`` names the logical call.  Every attempt with key K is
  recorded (see the query below) when its handler starts.  The handler then
  reads ALL request messages (the streaming-request methods wait for the
  client's half-close, so a replay can be checked), then:
* ``x-delay: A:MS[,A:MS...]`` -- attempt A waits MS milliseconds before
  answering; it wakes early if the call ends (client cancel, deadline,
  connection loss), and then records ``cancelled`` and answers nothing.
* ``x-fail: N:CODE`` -- attempts 1..N end with status CODE (an integer
  1..16; others are sent as UNKNOWN), message ``x-fail attempt A``, no
  response message and no initial metadata before it (grpcio sends a
  Trailers-Only response).
* ``x-fail-after-headers: N:CODE`` -- attempts 1..N (not already failed by
  ``x-fail``) first send initial metadata (``x-retry-headers: 1``, a
  non-empty entry so grpcio cannot fold it into a Trailers-Only response),
  then end with status CODE, message ``x-fail-after-headers attempt A``.
  The headers commit the call: a client must not retry it.
* ``x-pushback: A:V[,A:V...]`` -- when attempt A fails (either way above)
  it also carries trailing metadata ``grpc-retry-pushback-ms: V``, V as
  given (``300``, ``-1``, ``abc``).
* Otherwise the attempt is answered as the method normally does, from the
  messages already read.

An attempt's record is a JSON object with these keys:

* ``n`` -- the attempt number (1-based, as this server counts).
* ``previous`` -- the value of the request header
  ``grpc-previous-rpc-attempts`` as a string, or null when absent.
* ``t_ms`` -- arrival time, ``time.monotonic()`` in milliseconds (float;
  the server's clock, the same CLOCK_MONOTONIC as its host's other
  processes), taken when the handler starts.
* ``method`` -- ``UnaryCall``, ``StreamingOutputCall``,
  ``StreamingInputCall`` or ``FullDuplexCall``.
* ``requests`` -- the number of request messages read; ``request_bytes``
  -- the sum of their ``payload.body`` lengths.
* ``server_id`` -- the ``--server_id``.
* ``cancelled`` -- true when the call ended (client cancel, deadline,
  connection loss) before the server had answered the attempt (answered:
  began sending its failure or its responses).  It can become true after
  the call returned on the client: poll for it.
* ``answered_ms`` -- when the server began answering the attempt (its
  failure, or the method's normal processing), same clock as ``t_ms``;
  null if it never did (cancelled).  A client's delay before the next
  attempt is at most ``t_ms`` of that attempt minus this (the rest is
  scheduling), so backoff and pushback lower bounds can be checked
  strictly.

Query and reset, with ``EmptyCall`` (no ``x-retry-key``):

* ``x-query-key: K`` -- the call returns Empty with trailing metadata
  ``x-attempts``: the JSON list of K's records, in arrival order (``[]``
  for an unknown key).
* ``x-reset-key: K`` -- forgets K's records (processed before a query in
  the same call).

The server keeps the records of the 20000 most recently used keys.

Initial metadata is sent explicitly (before any response message) whenever
there is something to echo; otherwise grpcio sends it with the first message,
or a Trailers-Only response is produced for an immediate error.

Compression detection: grpcio does not tell a handler whether a request
message was compressed.  The server therefore disables core's per-message
decompression (channel arg ``grpc.per_message_decompression=0``): a message
sent with the compressed flag then reaches the deserializer still compressed,
and the deserializer recognises and inflates it itself (gzip magic 1f 8b, or
a zlib header for ``deflate``; a serialized protobuf can never start with
0x1f, and a raw message is only treated as deflate if it also inflates
cleanly with a valid Adler-32).  So ``expect_compressed`` checks the real
per-message flag.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import signal
import socket
import stat
import sys
import threading
import time
import zlib
from concurrent import futures

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_protos  # noqa: E402

_pb = interop_protos.load()
messages_pb2 = _pb.messages_pb2
empty_pb2 = _pb.empty_pb2

SERVICE = "grpc.testing.TestService"
_LOG = logging.getLogger("interop_server")

_STATUS_BY_CODE = {c.value[0]: c for c in grpc.StatusCode}
_NO_DEADLINE_THRESHOLD_S = 10 * 365 * 24 * 3600  # grpcio reports ~9.2e18 s without a deadline

ECHO_INITIAL_PREFIX = "x-grpc-test-echo-initial"
ECHO_TRAILING_PREFIX = "x-grpc-test-echo-trailing"
SLEEP_KEY = "x-rgrpc-sleep-ms"
ECHO_HEADERS_KEY = "x-rgrpc-echo-request-headers"
ECHO_ALL_KEY = "x-rgrpc-echo-all"
ECHO_ALL_PREFIX = "x-echo-"


# --------------------------------------------------------------------------
# Request decoding with compression detection


class Incoming:
    """A decoded request message plus whether it arrived compressed."""

    __slots__ = ("msg", "compressed")

    def __init__(self, msg, compressed: bool):
        self.msg = msg
        self.compressed = compressed


# The server_id UnaryCall fills in (--server_id).
SERVER_ID = "rgrpc-interop-server"

def _looks_like_zlib(data: bytes) -> bool:
    return (
        len(data) >= 2
        and (data[0] & 0x0F) == 8
        and (data[0] >> 4) <= 7
        and ((data[0] << 8) | data[1]) % 31 == 0
    )


def _inflate(data: bytes) -> tuple[bytes, bool]:
    """Return (plain bytes, was_compressed) for a possibly-compressed message."""
    if len(data) >= 2 and data[0] == 0x1F and data[1] == 0x8B:
        return gzip.decompress(data), True  # errors -> INTERNAL via grpcio
    if _looks_like_zlib(data):
        try:
            d = zlib.decompressobj()
            out = d.decompress(data) + d.flush()
            if d.eof and not d.unused_data:
                return out, True
        except zlib.error:
            pass
    return data, False


def _deserializer(cls):
    def deserialize(data: bytes) -> Incoming:
        plain, compressed = _inflate(data)
        return Incoming(cls.FromString(plain), compressed)

    return deserialize


# --------------------------------------------------------------------------
# Per-call helper


class _Call:
    """Applies the metadata-driven behaviours and tracks header/compression state."""

    def __init__(self, context: grpc.ServicerContext):
        self.ctx = context
        self.md = list(context.invocation_metadata() or ())
        self._done = threading.Event()
        if not context.add_callback(self._done.set):
            self._done.set()
        self.headers_sent = False
        self.compressing = False

        sleep_ms = self._first(SLEEP_KEY)
        if sleep_ms:
            try:
                self.sleep(float(sleep_ms) / 1000.0)
            except ValueError:
                pass

        self.initial = [(k, v) for k, v in self.md if k.startswith(ECHO_INITIAL_PREFIX)]
        trailing = [(k, v) for k, v in self.md if k.startswith(ECHO_TRAILING_PREFIX)]
        if self._first(ECHO_HEADERS_KEY) == "1":
            self.initial.extend(self._request_header_reflection())
        if self._first(ECHO_ALL_KEY) == "1":
            self.initial.extend(
                (ECHO_ALL_PREFIX + k, v)
                for k, v in self.md
                if not (k.startswith("grpc-") or k.startswith(":") or k == "user-agent")
            )
        if trailing:
            context.set_trailing_metadata(tuple(trailing))

    def _first(self, key: str):
        for k, v in self.md:
            if k == key:
                return v.decode("latin-1") if isinstance(v, bytes) else v
        return None

    def _request_header_reflection(self):
        out = []
        ua = self._first("user-agent")
        if ua is not None:
            out.append(("x-rgrpc-req-user-agent", ua))
        remaining = self.ctx.time_remaining()
        if remaining is not None and remaining < _NO_DEADLINE_THRESHOLD_S:
            out.append(("x-rgrpc-req-time-remaining-ms", str(max(0, int(remaining * 1000)))))
        authorization = self._first("authorization")
        if authorization is not None:
            out.append(("x-rgrpc-req-authorization", authorization))
        peer_cn = self._peer_cn()
        if peer_cn is not None:
            out.append(("x-rgrpc-req-peer-cn", peer_cn))
        details = getattr(getattr(self.ctx, "_rpc_event", None), "call_details", None)
        for key, attr in (("x-rgrpc-req-authority", "host"), ("x-rgrpc-req-path", "method")):
            val = getattr(details, attr, None)
            if isinstance(val, bytes):
                val = val.decode("latin-1")
            if val:
                out.append((key, val))
        return out

    def _peer_cn(self):
        """The subject CN of the client's certificate (mutual TLS), or None."""
        try:
            auth = self.ctx.auth_context() or {}
        except Exception:  # pragma: no cover - grpcio without auth contexts
            return None
        for cn in auth.get("x509_common_name", ()):
            return cn.decode("latin-1") if isinstance(cn, bytes) else cn
        return None

    @property
    def active(self) -> bool:
        return not self._done.is_set()

    def sleep(self, seconds: float) -> bool:
        """Sleep unless the RPC terminates first; returns whether it is still active."""
        if seconds > 0:
            self._done.wait(seconds)
        return self.active

    def send_headers(self, extra=(), compress: bool = False, force: bool = False) -> None:
        """Send initial metadata now (if there is any, or force) and fix the
        call's response compression (only possible before headers go out)."""
        if self.headers_sent:
            return
        if compress and not self.compressing:
            self.ctx.set_compression(grpc.Compression.Gzip)
            self.compressing = True
        md = tuple(self.initial) + tuple(extra)
        if md or force:
            self.ctx.send_initial_metadata(md)
            self.headers_sent = True

    def fail(self, code: grpc.StatusCode, message: str):
        self.ctx.abort(code, message)

    def echo_status(self, status) -> None:
        if status.code != 0:
            code = _STATUS_BY_CODE.get(status.code, grpc.StatusCode.UNKNOWN)
            if code is grpc.StatusCode.OK:  # pragma: no cover - code != 0
                return
            self.ctx.abort(code, status.message)

    def check_response_type(self, response_type) -> None:
        if response_type != messages_pb2.COMPRESSABLE:
            self.fail(grpc.StatusCode.INVALID_ARGUMENT,
                      f"unsupported response_type {response_type}")

    def stream_responses(self, params):
        """Yield one StreamingOutputCallResponse per ResponseParameters."""
        for p in params:
            if p.size < 0:
                self.fail(grpc.StatusCode.INVALID_ARGUMENT, f"negative response size {p.size}")
            if not self.sleep(p.interval_us / 1e6):
                return
            want = p.compressed.value
            if want and not self.compressing and not self.headers_sent:
                self.ctx.set_compression(grpc.Compression.Gzip)
                self.compressing = True
            if self.compressing and not want:
                self.ctx.disable_next_message_compression()
            self.headers_sent = True  # grpcio sends headers with the first message
            yield messages_pb2.StreamingOutputCallResponse(
                payload=messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=bytes(p.size))
            )


# --------------------------------------------------------------------------
# Retry test behaviour (x-retry-key ...; see the module docstring)

RETRY_KEY = "x-retry-key"
RETRY_FAIL_KEY = "x-fail"
RETRY_FAIL_AFTER_HEADERS_KEY = "x-fail-after-headers"
RETRY_PUSHBACK_KEY = "x-pushback"
RETRY_DELAY_KEY = "x-delay"
RETRY_QUERY_KEY = "x-query-key"
RETRY_RESET_KEY = "x-reset-key"
RETRY_RECORDS_MD = "x-attempts"
RETRY_HEADERS_MD = "x-retry-headers"
PREVIOUS_ATTEMPTS_MD = "grpc-previous-rpc-attempts"
PUSHBACK_MD = "grpc-retry-pushback-ms"
_RETRY_MAX_KEYS = 20000

_retry_lock = threading.Lock()
_retry_records: dict = {}  # key -> [record dict], most recently used last


def _md_value(md, key: str):
    for k, v in md:
        if k == key:
            return v.decode("latin-1") if isinstance(v, bytes) else v
    return None


def _n_code(value):
    """``N:CODE`` -> (N, grpc.StatusCode), or None when absent/malformed."""
    if value is None:
        return None
    try:
        n, code = (int(x) for x in value.split(":", 1))
    except ValueError:
        return None
    status = _STATUS_BY_CODE.get(code, grpc.StatusCode.UNKNOWN)
    return n, (grpc.StatusCode.UNKNOWN if status is grpc.StatusCode.OK else status)


def _per_attempt(value) -> dict:
    """``A:V[,A:V...]`` -> {A: V} (V a string; malformed items ignored)."""
    out = {}
    for item in (value or "").split(","):
        a, sep, v = item.strip().partition(":")
        if sep:
            try:
                out[int(a)] = v.strip()
            except ValueError:
                pass
    return out


def _retry_snapshot(key: str) -> list:
    with _retry_lock:
        return [dict(r) for r in _retry_records.get(key, ())]


class _Attempt:
    """One recorded attempt of a logical call (x-retry-key)."""

    def __init__(self, context, key: str, method: str, previous):
        self.ctx = context
        self._done = threading.Event()
        self._answered = False
        t_ms = round(time.monotonic() * 1000.0, 3)
        with _retry_lock:
            records = _retry_records.pop(key, [])
            _retry_records[key] = records  # most recently used last
            while len(_retry_records) > _RETRY_MAX_KEYS:
                del _retry_records[next(iter(_retry_records))]
            self.n = len(records) + 1
            self.record = {
                "n": self.n, "previous": previous, "t_ms": t_ms, "method": method,
                "requests": 0, "request_bytes": 0, "server_id": SERVER_ID,
                "cancelled": False, "answered_ms": None,
            }
            records.append(self.record)
        if not context.add_callback(self._on_done):
            self._on_done()

    def _on_done(self):
        with _retry_lock:
            if not self._answered:
                self.record["cancelled"] = True
        self._done.set()

    def answer(self) -> bool:
        """Marks the attempt answered; False if the call had already ended."""
        with _retry_lock:
            if self.record["cancelled"]:
                return False
            self._answered = True
            self.record["answered_ms"] = round(time.monotonic() * 1000.0, 3)
            return True

    def count(self, requests) -> None:
        with _retry_lock:
            self.record["requests"] = len(requests)
            self.record["request_bytes"] = sum(
                len(inc.msg.payload.body) for inc in requests if inc.msg.HasField("payload"))

    def wait(self, seconds: float) -> bool:
        """Waits unless the call ends first; returns whether it is still active."""
        if seconds > 0:
            self._done.wait(seconds)
        return not self._done.is_set()


def _retry_step(context, method: str, requests):
    """Applies the retry test behaviour when the call carries x-retry-key.

    ``requests`` is the request iterator (or a one-item list for the unary
    request methods); returns what the method's normal code should read:
    the requests themselves, all read already when the behaviour is
    active.  A failing attempt ends here (context.abort raises)."""
    md = context.invocation_metadata() or ()
    key = _md_value(md, RETRY_KEY)
    if key is None:
        return requests
    attempt = _Attempt(context, key, method, _md_value(md, PREVIOUS_ATTEMPTS_MD))
    requests = list(requests)  # all of them, before deciding (replay check)
    attempt.count(requests)
    n = attempt.n

    delay = _per_attempt(_md_value(md, RETRY_DELAY_KEY)).get(n)
    if delay is not None:
        try:
            ms = float(delay)
        except ValueError:
            ms = 0.0
        attempt.wait(ms / 1000.0)

    if not attempt.answer():  # the call ended first: nothing to send
        context.abort(grpc.StatusCode.CANCELLED, "attempt %d cancelled" % n)

    fail = _n_code(_md_value(md, RETRY_FAIL_KEY))
    after_headers = _n_code(_md_value(md, RETRY_FAIL_AFTER_HEADERS_KEY))
    failing = None
    if fail is not None and n <= fail[0]:
        failing = (fail[1], "x-fail attempt %d" % n)
    elif after_headers is not None and n <= after_headers[0]:
        context.send_initial_metadata(((RETRY_HEADERS_MD, "1"),))
        failing = (after_headers[1], "x-fail-after-headers attempt %d" % n)
    if failing is not None:
        pushback = _per_attempt(_md_value(md, RETRY_PUSHBACK_KEY)).get(n)
        if pushback is not None:
            context.set_trailing_metadata(((PUSHBACK_MD, pushback),))
        context.abort(*failing)
    return requests


def _retry_query(context) -> bool:
    """EmptyCall's x-reset-key / x-query-key; True when it was one of them."""
    md = context.invocation_metadata() or ()
    reset = _md_value(md, RETRY_RESET_KEY)
    query = _md_value(md, RETRY_QUERY_KEY)
    if reset is not None:
        with _retry_lock:
            _retry_records.pop(reset, None)
    if query is not None:
        context.set_trailing_metadata(
            ((RETRY_RECORDS_MD, json.dumps(_retry_snapshot(query), separators=(",", ":"))),))
    return reset is not None or query is not None


# --------------------------------------------------------------------------
# Handlers


def empty_call(inc: Incoming, context):
    if _retry_query(context):
        return empty_pb2.Empty()
    call = _Call(context)
    call.send_headers()
    return empty_pb2.Empty()


def unary_call(inc: Incoming, context):
    _retry_step(context, "UnaryCall", [inc])
    call = _Call(context)
    req = inc.msg
    if not call.active:
        return messages_pb2.SimpleResponse()
    call.send_headers(compress=req.response_compressed.value)
    if req.expect_compressed.value and not inc.compressed:
        call.fail(grpc.StatusCode.INVALID_ARGUMENT, "Expected compressed request, got uncompressed")
    call.check_response_type(req.response_type)
    if req.response_size < 0:
        call.fail(grpc.StatusCode.INVALID_ARGUMENT, f"negative response_size {req.response_size}")
    call.echo_status(req.response_status)
    resp = messages_pb2.SimpleResponse(
        payload=messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=bytes(req.response_size))
    )
    if req.fill_server_id:
        resp.server_id = SERVER_ID
        resp.hostname = socket.gethostname()
    return resp


def cacheable_unary_call(inc: Incoming, context):
    call = _Call(context)
    call.send_headers(extra=(("cache-control", "max-age=60, public"),))
    return messages_pb2.SimpleResponse(
        payload=messages_pb2.Payload(
            type=messages_pb2.COMPRESSABLE, body=str(time.time_ns()).encode()
        )
    )


def streaming_output_call(inc: Incoming, context):
    _retry_step(context, "StreamingOutputCall", [inc])
    call = _Call(context)
    req = inc.msg
    if not call.active:
        return
    call.check_response_type(req.response_type)
    call.send_headers(compress=any(p.compressed.value for p in req.response_parameters))
    yield from call.stream_responses(req.response_parameters)
    if call.active:
        call.echo_status(req.response_status)


def streaming_input_call(request_iterator, context):
    request_iterator = _retry_step(context, "StreamingInputCall", request_iterator)
    call = _Call(context)
    call.send_headers()
    total = 0
    for inc in request_iterator:
        if inc.msg.expect_compressed.value and not inc.compressed:
            call.fail(grpc.StatusCode.INVALID_ARGUMENT, "Expected compressed request, got uncompressed")
        total += len(inc.msg.payload.body)
    return messages_pb2.StreamingInputCallResponse(aggregated_payload_size=total)


def full_duplex_call(request_iterator, context):
    request_iterator = _retry_step(context, "FullDuplexCall", request_iterator)
    call = _Call(context)
    call.send_headers()  # only sends if there is metadata to echo
    for inc in request_iterator:
        req = inc.msg
        call.echo_status(req.response_status)
        call.check_response_type(req.response_type)
        yield from call.stream_responses(req.response_parameters)
        if not call.active:
            return


def half_duplex_call(request_iterator, context):
    call = _Call(context)
    requests = [inc.msg for inc in request_iterator]
    if not call.active:
        return
    call.send_headers(
        compress=any(p.compressed.value for r in requests for p in r.response_parameters)
    )
    for req in requests:
        call.echo_status(req.response_status)
        call.check_response_type(req.response_type)
        yield from call.stream_responses(req.response_parameters)
        if not call.active:
            return


def unimplemented_call(inc: Incoming, context):
    call = _Call(context)
    call.send_headers()
    call.fail(grpc.StatusCode.UNIMPLEMENTED, "UnimplementedCall is not implemented")


def _handlers():
    ser = lambda m: m.SerializeToString()  # noqa: E731
    d_empty = _deserializer(empty_pb2.Empty)
    d_simple = _deserializer(messages_pb2.SimpleRequest)
    d_out = _deserializer(messages_pb2.StreamingOutputCallRequest)
    d_in = _deserializer(messages_pb2.StreamingInputCallRequest)
    uu, us = grpc.unary_unary_rpc_method_handler, grpc.unary_stream_rpc_method_handler
    su, ss = grpc.stream_unary_rpc_method_handler, grpc.stream_stream_rpc_method_handler
    kw = lambda d: dict(request_deserializer=d, response_serializer=ser)  # noqa: E731
    return {
        "EmptyCall": uu(empty_call, **kw(d_empty)),
        "UnaryCall": uu(unary_call, **kw(d_simple)),
        "CacheableUnaryCall": uu(cacheable_unary_call, **kw(d_simple)),
        "StreamingOutputCall": us(streaming_output_call, **kw(d_out)),
        "StreamingInputCall": su(streaming_input_call, **kw(d_in)),
        "FullDuplexCall": ss(full_duplex_call, **kw(d_out)),
        "HalfDuplexCall": ss(half_duplex_call, **kw(d_out)),
        "UnimplementedCall": uu(unimplemented_call, **kw(d_empty)),
    }


# --------------------------------------------------------------------------
# grpc.testing.BenchmarkService, for the smoke test of bench/rgrpc_bench
# (bench/smoke.py). The benchmarks themselves run against bench/cpp_server.

BENCH_SERVICE = "grpc.testing.BenchmarkService"


def _bench_response(size: int):
    return messages_pb2.SimpleResponse(payload=messages_pb2.Payload(body=bytes(size)))


def bench_unary(req, context):
    return _bench_response(req.response_size)


def bench_streaming(reqs, context):
    for req in reqs:
        yield _bench_response(req.response_size)


def bench_from_client(reqs, context):
    last = 0
    for req in reqs:
        last = req.response_size
    return _bench_response(last)


def bench_from_server(req, context):
    resp = _bench_response(req.response_size)
    while context.is_active():
        yield resp


def _bench_handlers():
    kw = dict(request_deserializer=messages_pb2.SimpleRequest.FromString,
              response_serializer=lambda m: m.SerializeToString())
    return {
        "UnaryCall": grpc.unary_unary_rpc_method_handler(bench_unary, **kw),
        "StreamingCall": grpc.stream_stream_rpc_method_handler(bench_streaming, **kw),
        "StreamingFromClient": grpc.stream_unary_rpc_method_handler(bench_from_client, **kw),
        "StreamingFromServer": grpc.unary_stream_rpc_method_handler(bench_from_server, **kw),
    }


# --------------------------------------------------------------------------
# main


def _parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=10000, help="TCP port (0 = pick a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--server_id", default="rgrpc-interop-server",
                   help="the server_id UnaryCall fills in (fill_server_id)")
    p.add_argument("--uds", metavar="PATH", help="listen on unix:PATH instead of TCP")
    p.add_argument("--max_concurrent_streams", type=int, default=None,
                   help="HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS advertised by the server")
    p.add_argument("--max_workers", type=int, default=64,
                   help="handler threads (each in-flight RPC occupies one; default 64)")
    p.add_argument("--max_receive_message_length", type=int, default=None,
                   help="max request message size in bytes (grpcio default 4 MiB)")
    p.add_argument("--use_tls", nargs="?", const="true", default="false",
                   choices=["true", "false"], help="serve TLS (alone: true)")
    p.add_argument("--tls_cert_file", metavar="PATH", help="server certificate chain (PEM)")
    p.add_argument("--tls_key_file", metavar="PATH", help="server private key (PEM)")
    p.add_argument("--tls_client_ca_file", metavar="PATH",
                   help="require client certificates signed by a CA of this PEM file")
    args = p.parse_args(argv)
    args.use_tls = args.use_tls == "true"
    tls_files = (args.tls_cert_file, args.tls_key_file, args.tls_client_ca_file)
    if args.use_tls and not (args.tls_cert_file and args.tls_key_file):
        p.error("--use_tls needs --tls_cert_file and --tls_key_file")
    if not args.use_tls and any(tls_files):
        p.error("--tls_* files given without --use_tls")
    return args


def _server_credentials(args):
    """grpc.ssl_server_credentials for the TLS flags (exits 2 on unreadable files)."""
    def read(flag, path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            print(f"interop_server: {flag} {path}: {e}", file=sys.stderr, flush=True)
            sys.exit(2)

    chain = read("--tls_cert_file", args.tls_cert_file)
    key = read("--tls_key_file", args.tls_key_file)
    client_ca = None
    if args.tls_client_ca_file:
        client_ca = read("--tls_client_ca_file", args.tls_client_ca_file)
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None)


def _die_with_parent_from_env() -> None:
    """``RGRPC_TEST_PARENT_PID=PID`` in the environment: get SIGTERM when
    the parent (the test that started this server, PID) dies (Linux
    ``prctl(PR_SET_PDEATHSIG)``; elsewhere nothing), and exit at once if it
    is already gone.  Done here rather than in the parent's ``preexec_fn``:
    Python code between fork and exec is unsafe in a parent whose grpcio
    threads are busy (C-core's fork handlers crash there)."""
    want = os.environ.get("RGRPC_TEST_PARENT_PID")
    if not want or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except Exception:
        return
    if str(os.getppid()) != want:
        os._exit(0)


def main(argv=None) -> int:
    global SERVER_ID
    args = _parse_args(argv)
    _die_with_parent_from_env()
    SERVER_ID = args.server_id
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="interop_server: %(levelname)s %(message)s")

    options = [
        ("grpc.per_message_decompression", 0),  # see "Compression detection"
        ("grpc.so_reuseport", 0),  # a taken --port must fail, not be shared
    ]
    if args.max_concurrent_streams is not None:
        options.append(("grpc.max_concurrent_streams", args.max_concurrent_streams))
    if args.max_receive_message_length is not None:
        options.append(("grpc.max_receive_message_length", args.max_receive_message_length))

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.max_workers,
                                   thread_name_prefix="interop"),
        options=options,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, _handlers()),
         grpc.method_handlers_generic_handler(BENCH_SERVICE, _bench_handlers()))
    )

    if args.uds:
        try:
            if stat.S_ISSOCK(os.stat(args.uds).st_mode):
                os.unlink(args.uds)
        except FileNotFoundError:
            pass
        address = f"unix:{args.uds}"
    else:
        host = f"[{args.host}]" if ":" in args.host and not args.host.startswith("[") else args.host
        address = f"{host}:{args.port}"
    try:
        if args.use_tls:
            port = server.add_secure_port(address, _server_credentials(args))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as e:
        print(f"interop_server: cannot listen on {address}: {e}", file=sys.stderr, flush=True)
        return 1
    if not args.uds and port == 0:
        print(f"interop_server: cannot listen on {address}", file=sys.stderr, flush=True)
        return 1

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server.start()
    sys.stdout.write(f"LISTENING {0 if args.uds else port}\n")
    sys.stdout.flush()

    while not stop.wait(0.5):
        pass
    server.stop(grace=0.2).wait(2.0)
    if args.uds:
        try:
            os.unlink(args.uds)
        except OSError:
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    # Worker threads blocked in handlers must not delay exit.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
