"""Channel.subscribe / unsubscribe / channel_ready_future against a
simulated C side (the three functions of include/rgrpc.h implemented in
Python and calling the same ctypes trampoline the library calls), so the
Python logic is checked deterministically; test_channel.py checks the real
ones."""

from __future__ import annotations

import threading
import time

import pytest

import rgrpc as grpc
from rgrpc import _lib

from conftest import wait_until

IDLE, CONNECTING, READY, TRANSIENT_FAILURE, SHUTDOWN = range(5)


class FakeConnectivity(object):
    """rgrpc_channel_get_state / _subscribe / _unsubscribe, per channel
    pointer. ``reachable`` decides whether connecting ends READY or
    TRANSIENT_FAILURE."""

    def __init__(self, reachable=True):
        self.reachable = reachable
        self.state = {}
        self.subs = {}
        self.next_id = 1
        self.lock = threading.Lock()
        self.calls = []

    def _set(self, ch, st):
        with self.lock:
            self.state[ch] = st
            subs = [s for s in self.subs.values() if s[0] == ch]
        for _, cb, ud in subs:
            cb(ud, st)

    def _connect(self, ch):
        with self.lock:
            if self.state.get(ch, IDLE) not in (IDLE, TRANSIENT_FAILURE):
                return
            self.state[ch] = CONNECTING

        def run():
            self._set(ch, CONNECTING)
            time.sleep(0.05)
            self._set(ch, READY if self.reachable else TRANSIENT_FAILURE)

        threading.Thread(target=run, daemon=True).start()

    def get_state(self, ch, try_to_connect):
        self.calls.append(("get_state", bool(try_to_connect)))
        st = self.state.get(ch, IDLE)
        if try_to_connect:
            self._connect(ch)
        return st

    def subscribe(self, ch, cb, ud, try_to_connect, sub_out):
        self.calls.append(("subscribe", bool(try_to_connect)))
        with self.lock:
            sid = self.next_id
            self.next_id += 1
            self.subs[sid] = (ch, cb, ud)
            current = self.state.get(ch, IDLE)
        sub_out._obj.value = sid
        threading.Thread(target=cb, args=(ud, current), daemon=True).start()
        if try_to_connect:
            self._connect(ch)
        return 0

    def unsubscribe(self, ch, sid):
        self.calls.append(("unsubscribe", sid))
        with self.lock:
            return 0 if self.subs.pop(sid, None) else _lib.Result.NOT_FOUND


@pytest.fixture
def fake(monkeypatch):
    f = FakeConnectivity()
    monkeypatch.setattr(_lib.lib, "rgrpc_channel_get_state", f.get_state)
    monkeypatch.setattr(_lib.lib, "rgrpc_channel_subscribe", f.subscribe)
    monkeypatch.setattr(_lib.lib, "rgrpc_channel_unsubscribe", f.unsubscribe)
    return f


def test_subscribe_sees_states_in_order(fake, target):
    ch = grpc.insecure_channel(target)
    seen = []
    ready = threading.Event()

    def cb(state):
        seen.append(state)
        if state is grpc.ChannelConnectivity.READY:
            ready.set()

    ch.subscribe(cb, try_to_connect=True)
    assert ready.wait(5)
    assert seen[0] in (grpc.ChannelConnectivity.IDLE, grpc.ChannelConnectivity.CONNECTING)
    assert seen[-1] is grpc.ChannelConnectivity.READY
    assert ("subscribe", True) in fake.calls
    ch.unsubscribe(cb)
    assert not fake.subs
    ch.close()


def test_second_subscriber_gets_current_state(fake, target):
    ch = grpc.insecure_channel(target)
    first = threading.Event()
    ch.subscribe(lambda s: s is grpc.ChannelConnectivity.READY and first.set(),
                 try_to_connect=True)
    assert first.wait(5)
    got = []
    ev = threading.Event()
    ch.subscribe(lambda s: (got.append(s), ev.set()))
    assert ev.wait(5)
    assert got == [grpc.ChannelConnectivity.READY]
    assert len(fake.subs) == 1  # one native subscription per channel
    ch.close()


def test_unsubscribe_stops_callbacks(fake, target):
    ch = grpc.insecure_channel(target)
    got = []

    def cb(s):
        got.append(s)

    ch.subscribe(cb)
    assert wait_until(lambda: got)
    ch.unsubscribe(cb)
    n = len(got)
    ch.subscribe(lambda s: None, try_to_connect=True)
    time.sleep(0.2)
    assert len(got) == n
    ch.unsubscribe(cb)  # unknown callback: no error
    ch.close()


def test_callback_may_unsubscribe_itself(fake, target):
    ch = grpc.insecure_channel(target)
    got = []

    def cb(s):
        got.append(s)
        ch.unsubscribe(cb)

    ch.subscribe(cb, try_to_connect=True)
    assert wait_until(lambda: got)
    time.sleep(0.2)
    assert len(got) == 1
    ch.close()


def test_channel_ready_future(fake, target):
    ch = grpc.insecure_channel(target)
    f = grpc.channel_ready_future(ch)
    assert isinstance(f, grpc.Future)
    done = []
    f.add_done_callback(done.append)
    assert f.result(timeout=5) is None
    assert f.done() and not f.cancelled() and not f.running()
    assert wait_until(lambda: done == [f])
    assert wait_until(lambda: not fake.subs)  # the future unsubscribed itself
    ch.close()


def test_channel_ready_future_unreachable(fake, target):
    fake.reachable = False
    ch = grpc.insecure_channel(target)
    f = grpc.channel_ready_future(ch)
    with pytest.raises(grpc.FutureTimeoutError):
        f.result(timeout=0.3)
    assert f.running()
    assert f.cancel() is True
    assert f.cancelled() and f.done()
    with pytest.raises(grpc.FutureCancelledError):
        f.result()
    assert f.cancel() is False
    assert wait_until(lambda: not fake.subs)
    ch.close()


def test_close_delivers_shutdown(fake, target):
    ch = grpc.insecure_channel(target)
    got = []
    ch.subscribe(got.append)
    assert wait_until(lambda: got)
    ch.close()
    assert wait_until(lambda: got[-1] is grpc.ChannelConnectivity.SHUTDOWN)
    assert not fake.subs


def test_intercepted_channel_forwards_subscribe(fake, target):
    class Noop(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):
            return continuation(details, request)

    ch = grpc.insecure_channel(target)
    ich = grpc.intercept_channel(ch, Noop())
    grpc.channel_ready_future(ich).result(timeout=5)
    ch.close()
