"""Finding and loading librgrpc, and the ctypes prototypes of its C API.

The contract of every function is the doc comment in ``include/rgrpc.h``.
Opaque handles are passed as ``c_void_p`` (plain ints on the Python side).

Every function declared here is required: a library without one of them is
refused at import, with the list of what it lacks. (There is no older
librgrpc to fall back for: every one of them was in the C API before this
binding was added, and the binding relies on fixes to
``rgrpc_call_unary_async`` that came with it.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from ctypes import (
    CFUNCTYPE,
    POINTER,
    c_bool,
    c_char_p,
    c_int,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)

__all__ = ["lib", "library_path", "Result"]

_HERE = os.path.dirname(os.path.abspath(__file__))

if sys.platform == "darwin":
    _NAMES = ("librgrpc.dylib",)
elif sys.platform == "win32":
    _NAMES = ("rgrpc.dll", "librgrpc.dll")
else:
    from ._version import SONAME  # the ABI this binding was written for, first

    _NAMES = (SONAME, "librgrpc.so")


class Result:
    """The ``rgrpc_result`` codes the binding names. The header's enum is the
    table: ``result_name`` / ``result_str`` give the library's name and
    message of any code; tests/test_tables.py checks each constant here
    against ``rgrpc_result_name``."""

    OK = 0
    INVALID_METHOD = 7005
    UNKNOWN_OPTION = 7007
    UNSUPPORTED = 7009
    CHANNEL_CLOSED = 7010
    CALL_ENDED = 7011
    END_OF_STREAM = 7012
    BUSY = 7014
    TIMEOUT = 7015
    RPC_FAILED = 7016
    NOT_FOUND = 7017
    CANCELLED = 7021
    SEND_CLOSED = 7013
    SHUTDOWN = 7022
    QUEUE_EMPTY = 7023
    QUEUE_SHUTDOWN = 7024


# rgrpc_call_send flags (checked against the header's #defines).
SEND_LAST = 1

# Callback types (rgrpc_call_done_cb, rgrpc_message_cb, rgrpc_unary_done_cb,
# rgrpc_connectivity_cb).
DONE_CB = CFUNCTYPE(None, c_void_p, c_void_p)
MESSAGE_CB = CFUNCTYPE(None, c_void_p, c_void_p, c_size_t)
UNARY_DONE_CB = CFUNCTYPE(None, c_void_p, c_void_p, c_void_p, c_size_t)
CONNECTIVITY_CB = CFUNCTYPE(None, c_void_p, c_uint32)
LOG_CB = CFUNCTYPE(None, c_void_p, c_uint32, c_char_p, c_char_p)

_vp = c_void_p
_pvp = POINTER(c_void_p)


class Completion(ctypes.Structure):
    """``rgrpc_completion`` (include/rgrpc.h), in its order: written by
    ``rgrpc_completion_queue_next``; ``message`` and ``status`` are then
    owned by the reader."""

    _fields_ = [
        ("tag", c_void_p),
        ("op", c_uint32),
        ("result", c_uint32),
        ("message", c_void_p),
        ("status", c_void_p),
        ("state", c_uint32),
    ]


# rgrpc_op values (the operation a completion is for).
class Op:
    START = 1
    SEND = 2
    CLOSE_SEND = 3
    RECV = 4
    INITIAL_METADATA = 5
    FINISH = 6
    UNARY = 7
    STATE_CHANGE = 8
    READY = 9


# name: (restype, argtypes), for every function the binding calls. Each must
# match include/rgrpc.h exactly (a wrong prototype is a crash, not an error);
# tests/test_prototypes.py checks them against the header.
_PROTOTYPES = {
    "rgrpc_version": (c_char_p, []),
    "rgrpc_result_name": (c_char_p, [c_uint32]),
    "rgrpc_result_str": (c_char_p, [c_uint32]),
    "rgrpc_status_code_name": (c_char_p, [c_uint32]),
    "rgrpc_now_ms": (c_int64, []),
    "rgrpc_runtime_set_worker_threads": (c_uint32, [c_size_t]),
    # buffers
    "rgrpc_buffer_data": (_vp, [_vp]),
    "rgrpc_buffer_len": (c_size_t, [_vp]),
    "rgrpc_buffer_free": (None, [_vp]),
    # errors
    "rgrpc_error_result": (c_uint32, [_vp]),
    "rgrpc_error_message": (c_char_p, [_vp]),
    "rgrpc_error_free": (None, [_vp]),
    # metadata
    "rgrpc_metadata_len": (c_size_t, [_vp]),
    "rgrpc_metadata_get": (c_uint32, [_vp, c_size_t, POINTER(c_char_p), _pvp, POINTER(c_size_t)]),
    # status
    "rgrpc_status_get_code": (c_uint32, [_vp]),
    "rgrpc_status_details": (c_char_p, [_vp]),
    "rgrpc_status_trailing_metadata": (_vp, [_vp]),
    "rgrpc_status_free": (None, [_vp]),
    # channel options
    "rgrpc_channel_options_new": (_vp, []),
    "rgrpc_channel_options_set_int": (c_uint32, [_vp, c_char_p, c_int64]),
    "rgrpc_channel_options_set_string": (c_uint32, [_vp, c_char_p, c_char_p]),
    "rgrpc_channel_options_last_error": (c_char_p, [_vp]),
    "rgrpc_channel_options_free": (None, [_vp]),
    # credentials and channels
    "rgrpc_channel_credentials_insecure": (_vp, []),
    "rgrpc_channel_credentials_free": (None, [_vp]),
    "rgrpc_channel_new": (c_uint32, [c_char_p, _vp, _vp, _pvp, _pvp]),
    "rgrpc_channel_close": (c_uint32, [_vp]),
    "rgrpc_channel_free": (None, [_vp]),
    "rgrpc_channel_authority": (c_uint32, [_vp, c_char_p, c_size_t, POINTER(c_size_t)]),
    "rgrpc_channel_snapshot": (c_uint32, [_vp, _pvp]),
    "rgrpc_shutdown": (c_uint32, []),
    "rgrpc_log_set_callback": (c_uint32, [LOG_CB, _vp, _vp]),
    "rgrpc_log_set_trace": (c_uint32, [c_char_p, _pvp]),
    "rgrpc_log_set_verbosity": (c_uint32, [c_uint32]),
    "rgrpc_channel_last_error": (c_char_p, [_vp]),
    # call options
    "rgrpc_call_options_new": (_vp, []),
    "rgrpc_call_options_set_timeout_ms": (c_uint32, [_vp, c_int64]),
    "rgrpc_call_options_set_deadline_ms": (c_uint32, [_vp, c_int64]),
    "rgrpc_call_options_add_metadata": (c_uint32, [_vp, c_char_p, c_char_p, c_size_t]),
    "rgrpc_call_options_set_wait_for_ready": (c_uint32, [_vp, c_bool]),
    "rgrpc_call_options_last_error": (c_char_p, [_vp]),
    "rgrpc_call_options_free": (None, [_vp]),
    # calls
    "rgrpc_call_start": (c_uint32, [_vp, c_char_p, _vp, _pvp]),
    "rgrpc_call_send": (c_uint32, [_vp, c_char_p, c_size_t, c_uint32]),
    "rgrpc_call_close_send": (c_uint32, [_vp]),
    "rgrpc_call_recv": (c_uint32, [_vp, _pvp]),
    "rgrpc_call_finish": (c_uint32, [_vp, _pvp]),
    "rgrpc_call_initial_metadata": (c_uint32, [_vp, _pvp]),
    "rgrpc_call_is_active": (c_bool, [_vp]),
    "rgrpc_call_time_remaining_ms": (c_int64, [_vp]),
    "rgrpc_call_cancel": (c_uint32, [_vp]),
    "rgrpc_call_get_stats": (c_uint32, [_vp, _vp, c_size_t]),
    "rgrpc_call_wait": (c_uint32, [_vp, c_int64]),
    "rgrpc_call_on_done": (c_uint32, [_vp, DONE_CB, _vp]),
    "rgrpc_call_on_message": (c_uint32, [_vp, MESSAGE_CB, _vp]),
    "rgrpc_call_last_error": (c_char_p, [_vp]),
    "rgrpc_call_free": (None, [_vp]),
    "rgrpc_call_unary_async": (c_uint32, [_vp, c_char_p, _vp, c_char_p, c_size_t, UNARY_DONE_CB, _vp, _pvp]),
    # compression
    "rgrpc_call_options_set_compression": (c_uint32, [_vp, c_uint32]),
    "rgrpc_channel_options_set_default_compression": (c_uint32, [_vp, c_uint32]),
    "rgrpc_call_response_encoding": (c_char_p, [_vp]),
    # TLS / local channel credentials
    # rgrpc_channel_credentials_tls(root, len, cert_chain, len, private_key, len,
    #                               &creds, &err)
    "rgrpc_channel_credentials_tls": (
        c_uint32,
        [c_char_p, c_size_t, c_char_p, c_size_t, c_char_p, c_size_t, _pvp, _pvp],
    ),
    "rgrpc_channel_credentials_local": (_vp, []),
    # connectivity
    "rgrpc_channel_get_state": (c_uint32, [_vp, c_bool]),
    "rgrpc_connectivity_state_name": (c_char_p, [c_uint32]),
    # rgrpc_channel_subscribe(channel, cb, user_data, try_to_connect, &subscription)
    "rgrpc_channel_subscribe": (c_uint32, [_vp, CONNECTIVITY_CB, _vp, c_bool, POINTER(c_uint64)]),
    "rgrpc_channel_unsubscribe": (c_uint32, [_vp, c_uint64]),
    # completion queue (rgrpc.aio)
    "rgrpc_completion_queue_new": (c_uint32, [_pvp, _pvp]),
    "rgrpc_completion_queue_fd": (c_int, [_vp]),
    "rgrpc_completion_queue_next": (c_uint32, [_vp, POINTER(Completion)]),
    "rgrpc_completion_queue_shutdown": (c_uint32, [_vp]),
    "rgrpc_completion_queue_free": (None, [_vp]),
    # rgrpc_call_start_cq(channel, method, opts, cq, tag, &call)
    "rgrpc_call_start_cq": (c_uint32, [_vp, c_char_p, _vp, _vp, _vp, _pvp]),
    # rgrpc_call_send_cq(call, data, len, flags, cq, tag)
    "rgrpc_call_send_cq": (c_uint32, [_vp, c_char_p, c_size_t, c_uint32, _vp, _vp]),
    "rgrpc_call_close_send_cq": (c_uint32, [_vp, _vp, _vp]),
    "rgrpc_call_recv_cq": (c_uint32, [_vp, _vp, _vp]),
    "rgrpc_call_initial_metadata_cq": (c_uint32, [_vp, _vp, _vp]),
    "rgrpc_call_finish_cq": (c_uint32, [_vp, _vp, _vp]),
    # rgrpc_call_unary_cq(channel, method, opts, request, len, cq, tag, &call)
    "rgrpc_call_unary_cq": (c_uint32, [_vp, c_char_p, _vp, c_char_p, c_size_t, _vp, _vp, _pvp]),
    # rgrpc_channel_watch_state_cq(channel, last_observed, timeout_ms, cq, tag)
    "rgrpc_channel_watch_state_cq": (c_uint32, [_vp, c_uint32, c_int64, _vp, _vp]),
    # rgrpc_channel_ready_future_cq(channel, cq, tag, &future)
    "rgrpc_channel_ready_future_cq": (c_uint32, [_vp, _vp, _vp, _pvp]),
    "rgrpc_ready_future_free": (None, [_vp]),
}


def _candidates():
    """Where to look, in order (see README.md, "How the library is found")."""
    env = os.environ.get("RGRPC_LIBRARY")
    if env:
        yield env, True  # explicit: failures are fatal
        return
    for name in _NAMES:
        yield os.path.join(_HERE, "_native", name), False
    found = ctypes.util.find_library("rgrpc")
    if found:
        yield found, False
    for name in _NAMES:
        yield name, False  # the dynamic loader's own search (LD_LIBRARY_PATH, ...)
    for d in ("/usr/local/lib", "/usr/local/lib64", "/usr/lib", "/usr/lib64",
              "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"):
        for name in _NAMES:
            yield os.path.join(d, name), False
    # A checkout: bindings/python/rgrpc -> repository root.
    root = os.path.dirname(os.path.dirname(os.path.dirname(_HERE)))
    target_dirs = []
    if os.environ.get("CARGO_TARGET_DIR"):
        target_dirs.append(os.environ["CARGO_TARGET_DIR"])
    target_dirs.append(os.path.join(root, "target"))
    if os.path.exists(os.path.join(root, "include", "rgrpc.h")) or os.environ.get("CARGO_TARGET_DIR"):
        for t in target_dirs:
            for profile in ("release", "debug"):
                for name in _NAMES:
                    yield os.path.join(t, profile, name), False


def _looks_loadable(path: str) -> bool:
    return not os.path.isabs(path) or os.path.exists(path)


def _load():
    errors = []
    for path, explicit in _candidates():
        if not _looks_loadable(path):
            if explicit:
                raise ImportError(f"RGRPC_LIBRARY={path!r}: no such file")
            continue
        try:
            handle = ctypes.CDLL(path)
        except OSError as e:
            if explicit:
                raise ImportError(f"RGRPC_LIBRARY={path!r} could not be loaded: {e}") from None
            errors.append(f"{path}: {e}")
            continue
        if not hasattr(handle, "rgrpc_version"):
            if explicit:
                raise ImportError(f"RGRPC_LIBRARY={path!r} is not librgrpc (no rgrpc_version)")
            continue
        return handle, path
    detail = ("; tried: " + "; ".join(errors[-4:])) if errors else ""
    raise ImportError(
        "rgrpc: librgrpc was not found. Set RGRPC_LIBRARY to the full path of "
        "librgrpc.so, install the package from a checkout (pip install "
        "./bindings/python builds and bundles it), or run `cargo build --release` "
        "in the repository" + detail
    )


def _declare(handle):
    missing = [name for name in _PROTOTYPES if not hasattr(handle, name)]
    if missing:
        raise ImportError(
            "rgrpc: the librgrpc found at %s is too old for this binding (missing %s)"
            % (library_path, ", ".join(missing))
        )
    for name, (restype, argtypes) in _PROTOTYPES.items():
        f = getattr(handle, name)
        f.restype = restype
        f.argtypes = argtypes


lib, library_path = _load()
_declare(lib)

# NULL function pointers, for optional callback arguments.
NULL_UNARY_DONE_CB = UNARY_DONE_CB()


def result_name(rc: int) -> str:
    return lib.rgrpc_result_name(rc).decode()


def result_str(rc: int) -> str:
    return lib.rgrpc_result_str(rc).decode()


def failure_code(rc: int):
    """The status of a call whose operation the library refused with
    ``rc``: CANCELLED after :func:`rgrpc.shutdown` (the library closed
    its channels, as ``close()`` cancels calls), else INTERNAL."""
    from ._api import StatusCode
    return StatusCode.CANCELLED if rc == Result.SHUTDOWN else StatusCode.INTERNAL


def _why(text, rc):
    text = (text or b"").decode("utf-8", "replace")
    return text or result_str(rc)


def call_error(call, rc: int) -> str:
    """Why the last function on ``call`` failed in this thread with ``rc``
    (``rgrpc_call_last_error``; the result's description if it left none).
    Read it right after the failure, on the failing thread, while the call
    is alive."""
    return _why(lib.rgrpc_call_last_error(call), rc)


def channel_error(channel, rc: int) -> str:
    """As :func:`call_error`, for a function on a channel
    (``rgrpc_channel_last_error``; also ``rgrpc_call_start`` and
    ``rgrpc_call_unary_async``)."""
    return _why(lib.rgrpc_channel_last_error(channel), rc)


def version() -> str:
    return lib.rgrpc_version().decode()
