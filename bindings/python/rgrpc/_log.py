"""librgrpc's log lines into Python's ``logging``: every line (of a tracer
turned on with ``GRPC_TRACE``, or at the ``GRPC_VERBOSITY`` level, as for
grpcio) goes to the logger ``rgrpc.<tracer>`` (``rgrpc`` for a line of no
tracer) at DEBUG, INFO or ERROR, instead of stderr. Nothing is logged
unless those variables (or :func:`rgrpc.set_trace` /
:func:`rgrpc.set_verbosity`) ask for it."""

from __future__ import annotations

import atexit
import logging
from ctypes import byref, c_void_p

from ._lib import LOG_CB, Result, lib, result_str

_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.ERROR}


def _on_line(_ud, level, tracer, message):
    try:
        name = "rgrpc." + tracer.decode("utf-8", "replace") if tracer else "rgrpc"
        logging.getLogger(name).log(
            _LEVELS.get(level, logging.INFO), "%s", message.decode("utf-8", "replace"))
    except Exception:  # a logging handler failed: never into the C side
        pass


_CALLBACK = LOG_CB(_on_line)  # kept alive for as long as the library may call it
lib.rgrpc_log_set_callback(_CALLBACK, None, None)


@atexit.register
def _detach():
    # Lines written while the interpreter finalizes go to stderr instead.
    lib.rgrpc_log_set_callback(LOG_CB(), None, None)


def set_trace(spec):
    """Turns librgrpc's tracers on or off as ``GRPC_TRACE`` does
    (``"all,-http"``, ``"subchannel,pick_first"``, ``"none"``); raises
    ValueError for an unknown tracer."""
    err = c_void_p()
    rc = lib.rgrpc_log_set_trace(spec.encode("utf-8"), byref(err))
    if rc != Result.OK:
        msg = (lib.rgrpc_error_message(err.value) or b"").decode("utf-8", "replace")
        lib.rgrpc_error_free(err.value)
        raise ValueError(msg or result_str(rc))


def set_verbosity(level):
    """Lines of at least ``level`` (``"DEBUG"``, ``"INFO"``, ``"ERROR"``,
    ``"NONE"``, as ``GRPC_VERBOSITY``) are written whatever their tracer."""
    levels = {"DEBUG": 0, "INFO": 1, "ERROR": 2, "NONE": 3}
    try:
        n = levels[str(level).upper()]
    except KeyError:
        raise ValueError("verbosity %r is not DEBUG, INFO, ERROR or NONE" % (level,)) from None
    lib.rgrpc_log_set_verbosity(n)
