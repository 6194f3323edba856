"""One librgrpc completion queue per asyncio event loop.

The queue's descriptor (level-triggered: readable exactly while a
completion waits, or once the queue has finished) is watched with
``loop.add_reader``; the reader callback drains
``rgrpc_completion_queue_next`` and hands each completion to the handler
registered under its tag. Tags are small integers (never addresses of
Python objects), kept in ``Queue.ops`` until their one completion comes.
So every RPC of the loop is driven from the loop's own thread: no thread
per call, no hand-off per message (librgrpc's own driver thread does the
network I/O, see ``rgrpc_completion_queue`` in include/rgrpc.h).

Lifetime: channels ``acquire`` the queue of the loop they are used on and
``release`` it when they close. When the last one lets go the queue is
shut down (it refuses new operations); the reader keeps draining until
``rgrpc_completion_queue_next`` says every started operation has
completed (``RGRPC_RESULT_QUEUE_SHUTDOWN``), then removes itself and frees
the queue. A loop that is closed or collected with its queue still alive
frees it (completions still to come are dropped by the library).
"""

from __future__ import annotations

import itertools
import logging
import weakref
from ctypes import byref, c_void_p

from .._lib import Completion, Result, lib, result_str
from .._results import status_info, take_buffer

_LOGGER = logging.getLogger("rgrpc")

_OK = Result.OK
_QUEUE_EMPTY = Result.QUEUE_EMPTY
_QUEUE_SHUTDOWN = Result.QUEUE_SHUTDOWN

_next = lib.rgrpc_completion_queue_next
_status_free = lib.rgrpc_status_free

# loop -> its current Queue (a queue being shut down is no longer here)
_queues = weakref.WeakKeyDictionary()


class _Ptr(object):
    """The ``rgrpc_completion_queue *``, shared with the loop's finalizer."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _free_ptr(ptr):
    p, ptr.value = ptr.value, None
    if p is not None:
        lib.rgrpc_completion_queue_free(p)


class Queue(object):
    """A completion queue bound to one event loop."""

    def __init__(self, loop):
        cq = c_void_p()
        err = c_void_p()
        rc = lib.rgrpc_completion_queue_new(byref(cq), byref(err))
        if rc != _OK:
            msg = (lib.rgrpc_error_message(err.value) or b"").decode("utf-8", "replace")
            lib.rgrpc_error_free(err.value)
            raise RuntimeError("rgrpc: no completion queue: %s" % (msg or result_str(rc)))
        self._ptr = _Ptr(cq.value)
        self.fd = lib.rgrpc_completion_queue_fd(cq.value)
        self._loop = weakref.ref(loop)
        self.ops = {}  # tag -> handler(op, result, message bytes|None, status|None, state)
        self._tags = itertools.count(1).__next__
        self._users = 0
        self._shut = False
        self._reading = False
        self._completion = Completion()
        loop.add_reader(self.fd, self._drain)
        self._reading = True
        # The loop may be closed (and collected) without the channels
        # having been closed: free the queue then.
        self._finalizer = weakref.finalize(loop, _free_ptr, self._ptr)

    @property
    def ptr(self):
        return self._ptr.value

    # -- users ----------------------------------------------------------------

    def acquire(self):
        self._users += 1

    def release(self):
        self._users -= 1
        if self._users <= 0:
            self.shutdown()

    def shutdown(self):
        """No new operations; free once every started one has completed."""
        if self._shut:
            return
        self._shut = True
        loop = self._loop()
        if loop is not None and _queues.get(loop) is self:
            del _queues[loop]
        p = self._ptr.value
        if p is None:
            return
        lib.rgrpc_completion_queue_shutdown(p)
        if loop is None or loop.is_closed() or not self._reading:
            self._end()
        # else: the descriptor is readable once the queue has finished; the
        # reader then sees QUEUE_SHUTDOWN and ends it.

    def _end(self):
        loop = self._loop()
        if self._reading:
            self._reading = False
            if loop is not None and not loop.is_closed():
                try:
                    loop.remove_reader(self.fd)
                except Exception:  # pragma: no cover - loop being torn down
                    pass
        self._finalizer.detach()
        _free_ptr(self._ptr)
        ops, self.ops = self.ops, {}
        for handler in ops.values():
            # Only reached when the loop went away: their completions were
            # dropped with the queue.
            try:
                handler(0, Result.SHUTDOWN, None, None, 0)
            except Exception:
                pass

    # -- operations -----------------------------------------------------------

    def start(self, begin, handler):
        """Starts one operation: ``begin(tag)`` calls the ``_cq`` function
        and returns its result; ``handler`` gets the completion. Returns
        that result (anything but OK: no completion will come)."""
        p = self._ptr.value
        if p is None or self._shut:
            return Result.QUEUE_SHUTDOWN
        tag = self._tags()
        self.ops[tag] = handler
        rc = begin(p, tag)
        if rc != _OK:
            self.ops.pop(tag, None)
        return rc

    def _drain(self):
        p = self._ptr.value
        if p is None:  # pragma: no cover
            return
        c = self._completion
        ops = self.ops
        while True:
            rc = _next(p, byref(c))
            if rc != _OK:
                if rc == _QUEUE_SHUTDOWN:
                    self._end()
                return
            handler = ops.pop(c.tag, None)
            msg, st = c.message, c.status
            data = take_buffer(msg) if msg else None
            status = None
            if st:
                status = status_info(st)
                _status_free(st)
            if handler is None:  # pragma: no cover - every tag is registered
                continue
            try:
                handler(c.op, c.result, data, status, c.state)
            except Exception:
                _LOGGER.exception("rgrpc.aio: exception handling a completion")


def queue_of(loop):
    """The loop's completion queue (made on first use)."""
    q = _queues.get(loop)
    if q is None:
        q = Queue(loop)
        _queues[loop] = q
    return q
