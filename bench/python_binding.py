#!/usr/bin/env python3
"""rgrpc's Python binding vs grpcio's Python client, same server, same process.

    python3 bench/python_binding.py [--server grpcio|tonic|HOST:PORT]
            [--calls N] [--warmup N] [--rounds N] [--stream-messages N]

Starts the interop server (grpcio: cbindings-tests/interop_server.py; tonic:
target/release/tonic-interop-server) unless given HOST:PORT, then measures,
alternating the clients each round (medians over rounds):

* unary: blocking UnaryCall (SimpleRequest, 10-byte response), one call in
  flight; p50/p90/p99 latency in µs and calls/s;
* server streaming: one StreamingOutputCall of --stream-messages 10-byte
  messages, iterated on the main thread; messages/s.

Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
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


def measure(fn, calls, warmup):
    for _ in range(warmup):
        fn()
    ts = []
    pc = time.perf_counter
    t_all = pc()
    for _ in range(calls):
        t = pc()
        fn()
        ts.append(pc() - t)
    elapsed = pc() - t_all
    ts.sort()
    return {"p50": ts[len(ts) // 2] * 1e6, "p90": ts[int(len(ts) * 0.9)] * 1e6,
            "p99": ts[int(len(ts) * 0.99)] * 1e6, "qps": calls / elapsed}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="grpcio")
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stream-messages", type=int, default=20000)
    args = ap.parse_args()
    import grpc
    import interop_protos
    import rgrpc

    pb = interop_protos.load()
    proc = None
    if args.server in ("grpcio", "tonic"):
        proc, target = start_server(args.server)
    else:
        target = args.server
    try:
        req = pb.messages_pb2.SimpleRequest(response_size=10)
        clients = {}
        for name, mod in (("rgrpc", rgrpc), ("grpcio", grpc)):
            ch = mod.insecure_channel(target)
            stub = pb.test_pb2_grpc.TestServiceStub(ch)
            stub.UnaryCall(req, timeout=10)
            clients[name] = (ch, stub.UnaryCall)
        results = {n: [] for n in clients}
        stream_rates = {n: [] for n in clients}
        m = pb.messages_pb2
        sreq = m.StreamingOutputCallRequest(
            response_parameters=[m.ResponseParameters(size=10)] * args.stream_messages)
        import threading

        def in_thread(fn):
            box = []
            t = threading.Thread(target=lambda: box.append(fn()))
            t.start()
            t.join()
            return box[0]

        def stream_rate(ch):
            stream = pb.test_pb2_grpc.TestServiceStub(ch).StreamingOutputCall
            t = time.perf_counter()
            n = sum(1 for _ in stream(sreq))
            return n / (time.perf_counter() - t)

        # rgrpc on the main thread (interruptible by Ctrl-C: library-driven
        # unary, read-ahead streams) and on a worker thread (the calling
        # thread drives the call); grpcio on the main thread.
        variants = [("rgrpc", "rgrpc", False), ("rgrpc-thread", "rgrpc", True),
                    ("grpcio", "grpcio", False)]
        results = {v[0]: [] for v in variants}
        stream_rates = {v[0]: [] for v in variants}
        for _ in range(args.rounds):
            for label, name, threaded in variants:
                ch, call = clients[name]
                run = (lambda: measure(lambda: call(req), args.calls, args.warmup))
                results[label].append(in_thread(run) if threaded else run())
                rate = (lambda: stream_rate(ch))
                stream_rates[label].append(in_thread(rate) if threaded else rate())
        out = {"server": args.server, "calls": args.calls, "rounds": args.rounds}
        for name, rs in results.items():
            med = lambda k: sorted(r[k] for r in rs)[len(rs) // 2]  # noqa: E731
            out[name] = {k: round(med(k), 1) for k in ("p50", "p90", "p99", "qps")}
            out[name]["stream_msgs_per_s"] = round(sorted(stream_rates[name])[len(rs) // 2])
            print("%-12s unary p50 %7.1f us  p90 %7.1f us  p99 %7.1f us  %7.0f calls/s   "
                  "server streaming %8.0f msgs/s" % (
                      name, out[name]["p50"], out[name]["p90"], out[name]["p99"],
                      out[name]["qps"], out[name]["stream_msgs_per_s"]))
        print(json.dumps(out))
        for ch, _ in clients.values():
            ch.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(5)


if __name__ == "__main__":
    main()
