"""Channel connectivity: ``Channel.subscribe`` / ``unsubscribe`` and
``channel_ready_future``, on librgrpc's

    rgrpc_connectivity_state rgrpc_channel_get_state(rgrpc_channel *ch, bool try_to_connect);
    rgrpc_result rgrpc_channel_subscribe(rgrpc_channel *ch, rgrpc_connectivity_cb cb,
                                         void *user_data, bool try_to_connect,
                                         uint64_t *subscription_out);
    rgrpc_result rgrpc_channel_unsubscribe(rgrpc_channel *ch, uint64_t subscription);

One native subscription per channel, shared by every Python subscriber. The
library's callback only queues the new state; user callbacks run in order
on a worker thread (never on a library thread), so they may block, call
``unsubscribe`` or make RPCs. ``channel_ready_future`` is built on
``subscribe`` (so it also works on intercepted channels).
"""

from __future__ import annotations

import threading
from ctypes import byref, c_uint64

from . import _api, _lib, _runtime
from ._api import CONNECTIVITY_BY_NUMBER, ChannelConnectivity


class _Connectivity(object):
    _expects_callback = False  # never popped by a done callback (see _runtime)

    def __init__(self, channel):
        self._channel = channel  # the Channel (for its native pointer)
        self._lock = threading.Lock()
        self._subscribers = []
        self._state = None
        self._key = None
        self._subscription = None
        self._pending = []  # (callbacks, state) to deliver
        self._delivering = False
        self._shut = False

    # -- library side -------------------------------------------------------

    def _native_connectivity(self, number):
        state = CONNECTIVITY_BY_NUMBER.get(int(number))
        if state is None:
            return
        with self._lock:
            if self._shut:
                return
            self._state = state
            if self._subscribers:
                self._queue(list(self._subscribers), state)

    def _queue(self, callbacks, state):
        # under self._lock
        self._pending.append((callbacks, state))
        if not self._delivering:
            self._delivering = True
            _runtime.workers.submit(self._deliver)

    def _deliver(self):
        while True:
            with self._lock:
                if not self._pending:
                    self._delivering = False
                    return
                callbacks, state = self._pending.pop(0)
            for cb in callbacks:
                with self._lock:
                    still = cb in self._subscribers
                if not still:
                    continue
                try:
                    cb(state)
                except Exception:
                    _runtime._LOGGER.exception("Exception in a connectivity callback")

    # -- Python side --------------------------------------------------------

    def subscribe(self, callback, try_to_connect):
        lib = _lib.lib
        ptr = self._channel._native()
        start = False
        with self._lock:
            self._subscribers.append(callback)
            if self._key is None:
                self._key = _runtime.register(self)
                start = True
            elif self._state is not None:
                self._queue([callback], self._state)
        if start:
            sub = c_uint64()
            rc = lib.rgrpc_channel_subscribe(ptr, _runtime.CONNECTIVITY_TRAMPOLINE, self._key,
                                             bool(try_to_connect), byref(sub))
            if rc != _lib.Result.OK:
                with self._lock:
                    _runtime.unregister(self._key)
                    self._key = None
                    self._subscribers.remove(callback)
                raise RuntimeError("rgrpc_channel_subscribe: %s" % _lib.channel_error(ptr, rc))
            with self._lock:
                self._subscription = sub.value
        elif try_to_connect:
            lib.rgrpc_channel_get_state(ptr, True)

    def unsubscribe(self, callback):
        stop = None
        with self._lock:
            try:
                self._subscribers.remove(callback)
            except ValueError:
                return
            if not self._subscribers and self._subscription is not None:
                stop = self._subscription
                self._subscription = None
                key, self._key = self._key, None
                self._state = None
        if stop is not None:
            # Outside the lock: the library may wait for a callback in flight,
            # and that callback takes the lock.
            _lib.lib.rgrpc_channel_unsubscribe(self._channel._ptr, stop)
            _runtime.unregister(key)

    def shutdown(self):
        """The channel closes: tell subscribers SHUTDOWN, then stop."""
        with self._lock:
            if self._shut:
                return
            subs = list(self._subscribers)
            if subs and self._state is not ChannelConnectivity.SHUTDOWN:
                self._queue(subs, ChannelConnectivity.SHUTDOWN)
            self._shut = True
            stop, self._subscription = self._subscription, None
            key, self._key = self._key, None
        if stop is not None and self._channel._ptr is not None:
            _lib.lib.rgrpc_channel_unsubscribe(self._channel._ptr, stop)
        if key is not None:
            _runtime.unregister(key)


def connectivity_of(channel):
    conn = channel._connectivity
    if conn is None:
        conn = channel._connectivity = _Connectivity(channel)
    return conn


class _ChannelReadyFuture(_api.Future):
    """Completes when the channel is READY (``result()`` returns None)."""

    def __init__(self, channel):
        self._channel = channel
        self._cond = threading.Condition()
        self._matured = False
        self._cancelled = False
        self._callbacks = []

    def _update(self, state):
        if state is not ChannelConnectivity.READY:
            return
        with self._cond:
            if self._matured or self._cancelled:
                return
            self._matured = True
            cbs, self._callbacks = self._callbacks, None
            self._cond.notify_all()
        self._finish(cbs)

    def _start(self):
        self._channel.subscribe(self._update, try_to_connect=True)

    def _finish(self, cbs):
        """Stops following the channel and runs the callbacks (outside the
        lock)."""
        self._channel.unsubscribe(self._update)
        for fn in cbs:
            try:
                fn(self)
            except Exception:
                _runtime._LOGGER.exception("Exception in a channel-ready callback")

    def cancel(self):
        with self._cond:
            if self._matured or self._cancelled:
                return False
            self._cancelled = True
            cbs, self._callbacks = self._callbacks, None
            self._cond.notify_all()
        self._finish(cbs)
        return True

    def cancelled(self):
        with self._cond:
            return self._cancelled

    def running(self):
        with self._cond:
            return not (self._matured or self._cancelled)

    def done(self):
        with self._cond:
            return self._matured or self._cancelled

    def _wait(self, timeout):
        with self._cond:
            if not self._cond.wait_for(lambda: self._matured or self._cancelled, timeout):
                raise _api.FutureTimeoutError()
            if self._cancelled:
                raise _api.FutureCancelledError()

    def result(self, timeout=None):
        self._wait(timeout)
        return None

    def exception(self, timeout=None):
        self._wait(timeout)
        return None

    def traceback(self, timeout=None):
        self._wait(timeout)
        return None

    def add_done_callback(self, fn):
        with self._cond:
            if not (self._matured or self._cancelled):
                self._callbacks.append(fn)
                return
        fn(self)

    def __del__(self):
        try:
            if not self.done():
                self.cancel()
        except Exception:  # pragma: no cover
            pass


def channel_ready_future(channel):
    """A Future that completes when ``channel`` is READY (it is asked to
    connect)."""
    f = _ChannelReadyFuture(channel)
    f._start()
    return f
