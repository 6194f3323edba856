"""Plumbing shared by channels and calls.

* One module-level ctypes trampoline per callback type. A callback's
  ``user_data`` is a small integer key into ``_registry``; the registered
  object (never a user-facing call object) gets the event. So no CFUNCTYPE
  object is made per call, and nothing the library may still call can be
  garbage-collected: the trampolines live as long as the module.
* Library callbacks run on library threads; ctypes takes the GIL for them.
  No code here holds a Python lock while calling a C function that could
  wait for a callback (``rgrpc_call_wait``, ``unsubscribe``), so the two can
  never wait for each other.
* A pool of daemon worker threads runs long blocking jobs: consuming request
  iterators, and reading response streams for callers on the main thread
  (whose own wait must stay interruptible by Ctrl-C).
* ``Handle`` owns one ``rgrpc_call *`` and frees it when it is collected:
  Python code using the call holds the Handle, so the free comes once no
  Python code can use the pointer again (the library's threads may still
  be inside the call: the C API allows that).
* At interpreter exit every channel is closed and every call we hold is
  cancelled, then we wait (briefly) for outstanding callbacks, so no library
  thread tries to take the GIL of a finalizing interpreter.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import time
import weakref

from ._lib import CONNECTIVITY_CB, DONE_CB, MESSAGE_CB, UNARY_DONE_CB, lib

_LOGGER = logging.getLogger("rgrpc")

# ---------------------------------------------------------------------------
# Callback registry and trampolines

_registry = {}  # key -> object with _native_done / _native_message / ...
_next_key = itertools.count(1).__next__
_exiting = False
_exit_started = []  # not empty once _at_exit ran: stop freeing calls


def register(obj) -> int:
    key = _next_key()
    _registry[key] = obj
    return key


def unregister(key: int):
    return _registry.pop(key, None)


def _log_callback_error(what):
    try:
        _LOGGER.exception("rgrpc: exception in %s", what)
    except Exception:  # pragma: no cover - logging during shutdown
        pass


# One entry per library callback running right now (list.append / pop are
# atomic under the GIL); the exit handler waits for it to empty.
_running = []


def _done_trampoline(key, status):
    _running.append(None)
    try:
        obj = _registry.pop(key, None)
        if obj is not None and not _exiting:
            obj._native_done(status)
    except BaseException:  # never let anything unwind into the library
        _log_callback_error("a call-done callback")
    finally:
        _running.pop()


def _message_trampoline(key, data, length):
    _running.append(None)
    try:
        obj = _registry.get(key)
        if obj is not None and not _exiting:
            obj._native_message(data, length)
    except BaseException:
        _log_callback_error("a message callback")
    finally:
        _running.pop()


def _unary_trampoline(key, status, data, length):
    _running.append(None)
    try:
        obj = _registry.pop(key, None)
        if obj is not None and not _exiting:
            obj._native_unary_done(status, data, length)
    except BaseException:
        _log_callback_error("a unary-done callback")
    finally:
        _running.pop()


def _connectivity_trampoline(key, state):
    _running.append(None)
    try:
        obj = _registry.get(key)
        if obj is not None and not _exiting:
            obj._native_connectivity(state)
    except BaseException:
        _log_callback_error("a connectivity callback")
    finally:
        _running.pop()


DONE_TRAMPOLINE = DONE_CB(_done_trampoline)
MESSAGE_TRAMPOLINE = MESSAGE_CB(_message_trampoline)
UNARY_TRAMPOLINE = UNARY_DONE_CB(_unary_trampoline)
CONNECTIVITY_TRAMPOLINE = CONNECTIVITY_CB(_connectivity_trampoline)

# ---------------------------------------------------------------------------
# Call handles


class Handle(object):
    """Owns an ``rgrpc_call *`` (``ptr``); frees it when collected.

    Python's reference count decides when: code that calls a library
    function on the call holds this object (in a local variable or an
    argument) for as long as it may still use ``ptr``, so the free comes
    only once no Python code can use the pointer again. Owners (a
    ``CallState``) drop their reference when the call's Python object is
    collected or its outcome has been read, after cancelling an active
    call, so a thread blocked in the call returns at once and lets go too.

    The free may run on any thread at any time (gc, a library callback of
    this very call) while the library's own threads are still inside the
    call: ``rgrpc_call`` is reference-counted and ``rgrpc_call_free`` is
    safe then (include/rgrpc.h). At interpreter exit nothing is freed (see
    ``_at_exit``).
    """

    __slots__ = ("ptr", "__weakref__")

    def __init__(self, ptr):
        self.ptr = ptr
        _live_handles.add(self)

    def cancel(self):
        lib.rgrpc_call_cancel(self.ptr)

    # Default arguments: still bound while the interpreter tears the module
    # down.
    def __del__(self, _free=lib.rgrpc_call_free, _exit_started=_exit_started):
        p, self.ptr = self.ptr, None
        if p is not None and not _exit_started:
            _free(p)


_live_handles = weakref.WeakSet()  # cancelled at exit; counted by tests


# ---------------------------------------------------------------------------
# Worker threads


class _Worker(object):
    __slots__ = ("_wake", "_job")

    def __init__(self):
        self._wake = threading.Lock()
        self._wake.acquire()
        self._job = None


class WorkerPool(object):
    """Daemon threads for blocking jobs; idle ones are reused, and exit
    after ``idle_timeout`` seconds without work. Never refuses a job (jobs
    may block for a stream's lifetime, so a bounded pool could deadlock)."""

    def __init__(self, idle_timeout=30.0):
        self._lock = threading.Lock()
        self._idle = []
        self._idle_timeout = idle_timeout
        self._serial = itertools.count(1).__next__

    def submit(self, fn, *args):
        with self._lock:
            w = self._idle.pop() if self._idle else None
        if w is not None:
            w._job = (fn, args)
            w._wake.release()
            return
        w = _Worker()
        t = threading.Thread(target=self._run, args=(w, fn, args),
                             name="rgrpc-worker-%d" % self._serial(), daemon=True)
        t.start()

    def _run(self, w, fn, args):
        while True:
            try:
                fn(*args)
            except BaseException:
                _log_callback_error("a background job")
            fn = args = None
            with self._lock:
                self._idle.append(w)
            if not w._wake.acquire(timeout=self._idle_timeout):
                with self._lock:
                    try:
                        self._idle.remove(w)
                        return  # nobody handed us a job: retire
                    except ValueError:
                        pass  # a job is being handed to us right now
                w._wake.acquire()
            fn, args = w._job
            w._job = None


workers = WorkerPool()

# ---------------------------------------------------------------------------
# Exit

_live_channels = weakref.WeakSet()


def track_channel(ch):
    _live_channels.add(ch)


def exiting() -> bool:
    return _exiting


def _pending_callbacks():
    if _running:
        return True
    return any(getattr(o, "_expects_callback", True) for o in list(_registry.values()))


def _at_exit():
    """Before the interpreter finalizes: no library thread may then enter a
    trampoline (taking the GIL of a finalizing interpreter ends the thread
    with a forced unwind, which aborts the process inside Rust's frames).
    So: close every channel (which also ends connectivity subscriptions),
    cancel every call still held, and wait until every callback they owe has
    run and returned."""
    try:
        for ch in list(_live_channels):
            try:
                ch.close()
            except Exception:
                pass
        for h in list(_live_handles):
            try:
                h.cancel()
            except Exception:
                pass
        deadline = time.monotonic() + 3.0
        while _pending_callbacks() and time.monotonic() < deadline:
            time.sleep(0.002)
    except Exception:  # pragma: no cover
        pass
    global _exiting
    _exiting = True
    # From now on a collected Handle leaks its call: freeing an active one
    # would have its done callbacks take the GIL of a finalizing
    # interpreter, and the process ends anyway.
    _exit_started.append(True)


atexit.register(_at_exit)
