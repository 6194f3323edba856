"""A load of unary calls by every path at once, each checked for its own
response; used by test_unary.py in-process and in a fresh interpreter with
the library's multi-threaded runtime."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def check_every_response(stub, m, rounds):
    """Per round: 40 futures in flight, 40 blocking calls on worker threads
    (the binding's direct path) and, meanwhile, blocking calls and
    ``with_call`` on this thread (the main thread's path), response sizes
    0..6; each response must be the one asked for."""
    for r in range(rounds):
        sizes = [(r + i) % 7 for i in range(40)]
        futures = [stub.UnaryCall.future(m.SimpleRequest(response_size=n)) for n in sizes]
        with ThreadPoolExecutor(4) as pool:
            direct = [pool.submit(stub.UnaryCall, m.SimpleRequest(response_size=n))
                      for n in sizes]
            for n in sizes[:5]:
                assert stub.UnaryCall(m.SimpleRequest(response_size=n)).payload.body == bytes(n)
                response, call = stub.UnaryCall.with_call(m.SimpleRequest(response_size=n))
                assert response.payload.body == bytes(n)
                assert call.code().name == "OK"
            for n, f in zip(sizes, direct):
                assert f.result(timeout=30).payload.body == bytes(n)
        for n, f in zip(sizes, futures):
            assert f.result(timeout=30).payload.body == bytes(n)
