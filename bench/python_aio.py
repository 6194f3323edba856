#!/usr/bin/env python3
"""rgrpc.aio vs grpcio's grpc.aio client, same server, same process.

    python3 bench/python_aio.py [--server grpcio|tonic|HOST:PORT]
            [--calls N] [--concurrent-calls N] [--inflight N] [--rounds N]
            [--stream-messages N]

Starts the interop server (grpcio: cbindings-tests/interop_server.py; tonic:
target/release/tonic-interop-server) unless given HOST:PORT, then measures
each client on a fresh event loop, alternating the clients each round
(medians over rounds):

* unary p50: --calls UnaryCalls (SimpleRequest, 10-byte response) awaited
  one after another; p50/p90/p99 in µs;
* unary calls/s: --concurrent-calls UnaryCalls with --inflight (64) in
  flight from one loop (that many tasks, each awaiting calls in turn);
* server streaming: one StreamingOutputCall of --stream-messages 10-byte
  messages read with `async for`; messages/s.

Also the process's CPU time per unary call in the concurrent phase. Prints
a table and a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "cbindings-tests"))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))


def start_server(kind):
    if kind == "grpcio":
        cmd = [sys.executable, os.path.join(ROOT, "cbindings-tests", "interop_server.py"),
               "--port", "0"]
    else:
        cmd = [os.path.join(ROOT, "target", "release", "tonic-interop-server"), "--port", "0"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    if not line or line[0] != "LISTENING":
        p.kill()
        sys.exit("server did not start: %r" % line)
    return p, "127.0.0.1:" + line[1]


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def one_round(aio, target, pb, args):
    m = pb.messages_pb2
    req = m.SimpleRequest(response_size=10)
    sreq = m.StreamingOutputCallRequest(
        response_parameters=[m.ResponseParameters(size=10)] * args.stream_messages)
    async with aio.insecure_channel(target) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        for _ in range(args.warmup):
            await stub.UnaryCall(req, timeout=10)
        pc = time.perf_counter
        ts = []
        for _ in range(args.calls):
            t = pc()
            await stub.UnaryCall(req, timeout=10)
            ts.append(pc() - t)
        ts.sort()
        out = {"p50": ts[len(ts) // 2] * 1e6, "p90": ts[int(len(ts) * 0.9)] * 1e6,
               "p99": ts[int(len(ts) * 0.99)] * 1e6}

        left = [args.concurrent_calls]

        async def worker():
            while left[0] > 0:
                left[0] -= 1
                await stub.UnaryCall(req, timeout=30)

        c0, t0 = cpu(), pc()
        await asyncio.gather(*(worker() for _ in range(args.inflight)))
        el = pc() - t0
        out["qps"] = args.concurrent_calls / el
        out["cpu_us_per_call"] = (cpu() - c0) / args.concurrent_calls * 1e6

        t0 = pc()
        n = 0
        async for _ in stub.StreamingOutputCall(sreq, timeout=60):
            n += 1
        assert n == args.stream_messages, n
        out["stream_msgs_per_s"] = n / (pc() - t0)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="grpcio")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--concurrent-calls", type=int, default=5000)
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stream-messages", type=int, default=20000)
    args = ap.parse_args()
    import grpc.aio as grpc_aio

    import interop_protos
    import rgrpc.aio as rgrpc_aio

    pb = interop_protos.load()
    proc = None
    if args.server in ("grpcio", "tonic"):
        proc, target = start_server(args.server)
    else:
        target = args.server
    try:
        clients = (("rgrpc.aio", rgrpc_aio), ("grpc.aio", grpc_aio))
        results = {n: [] for n, _ in clients}
        for _ in range(args.rounds):
            for name, aio in clients:
                results[name].append(asyncio.run(one_round(aio, target, pb, args)))
        out = {"server": args.server, "rounds": args.rounds, "inflight": args.inflight}
        keys = ("p50", "p90", "p99", "qps", "cpu_us_per_call", "stream_msgs_per_s")
        for name, rs in results.items():
            med = lambda k: sorted(r[k] for r in rs)[len(rs) // 2]  # noqa: E731
            out[name] = {k: round(med(k), 1) for k in keys}
            out[name]["rounds"] = [{k: round(r[k], 1) for k in keys} for r in rs]
            o = out[name]
            print("%-10s unary p50 %7.1f us  p99 %7.1f us | %d in flight: %7.0f calls/s, "
                  "%6.1f us CPU/call | server streaming %8.0f msgs/s" % (
                      name, o["p50"], o["p99"], args.inflight, o["qps"], o["cpu_us_per_call"],
                      o["stream_msgs_per_s"]))
        print(json.dumps(out))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(5)


if __name__ == "__main__":
    main()
