"""Reading what librgrpc hands back into Python values: metadata (as
grpcio's ``(key, value)`` tuples), statuses (``StatusCode``, details,
trailing metadata) and message buffers.

Every function here borrows what it is given, except :func:`take_buffer`,
which frees the buffer it read.
"""

from __future__ import annotations

import collections
from ctypes import byref, c_char_p, c_size_t, c_void_p, string_at

from ._api import STATUS_CODES_BY_NUMBER, StatusCode
from ._lib import Result, lib

_OK = Result.OK

_rgrpc_buffer_data = lib.rgrpc_buffer_data
_rgrpc_buffer_len = lib.rgrpc_buffer_len
_rgrpc_buffer_free = lib.rgrpc_buffer_free
_rgrpc_status_get_code = lib.rgrpc_status_get_code

Metadatum = collections.namedtuple("Metadatum", ("key", "value"))
EMPTY = ()


def read_metadata(md):
    """A C ``rgrpc_metadata *`` (borrowed) as a tuple of (key, value)."""
    if not md:
        return EMPTY
    n = lib.rgrpc_metadata_len(md)
    if not n:
        return EMPTY
    out = []
    k = c_char_p()
    v = c_void_p()
    vl = c_size_t()
    for i in range(n):
        if lib.rgrpc_metadata_get(md, i, byref(k), byref(v), byref(vl)) != _OK:
            break
        key = k.value.decode("ascii", "replace")
        raw = string_at(v.value, vl.value) if vl.value else b""
        if key.endswith("-bin"):
            out.append(Metadatum(key, raw))
        else:
            out.append(Metadatum(key, raw.decode("utf-8", "replace")))
    return tuple(out)


def status_info(st):
    """(StatusCode, details, trailing metadata) of a C status (borrowed)."""
    code = STATUS_CODES_BY_NUMBER.get(_rgrpc_status_get_code(st), StatusCode.UNKNOWN)
    raw = lib.rgrpc_status_details(st)
    details = raw.decode("utf-8", "replace") if raw else ""
    return code, details, read_metadata(lib.rgrpc_status_trailing_metadata(st))


def take_buffer(buf):
    """The bytes of a C ``rgrpc_buffer *``, which is freed."""
    n = _rgrpc_buffer_len(buf)
    data = string_at(_rgrpc_buffer_data(buf), n) if n else b""
    _rgrpc_buffer_free(buf)
    return data


def initial_metadata_of(p):
    """Initial metadata of a call that has ended (does not block then)."""
    md = c_void_p()
    if lib.rgrpc_call_initial_metadata(p, byref(md)) == _OK:
        return read_metadata(md.value)
    return EMPTY


def fetch_initial_metadata(h):
    """Initial metadata of the call a Handle owns (may block until the
    headers arrive); None when it has none to give. ``h`` is held, so the
    call stays alive, until the borrowed view has been copied."""
    md = c_void_p()
    if lib.rgrpc_call_initial_metadata(h.ptr, byref(md)) != _OK:
        return None
    return read_metadata(md.value)
