"""Every ctypes prototype in rgrpc/_lib.py matches include/rgrpc.h (a wrong
prototype is a crash, not an error): parameter count, and for each
parameter and the return value whether it is a pointer, a bool, or an
integer of the right width. Every function is in the header and in the
library (none is optional), and a library without one is refused."""

from __future__ import annotations

import ctypes
import os
import re

import pytest

from rgrpc import _lib

from conftest import REPO

HEADER = os.path.join(REPO, "include", "rgrpc.h")

_INT_WIDTH = {"int": 4, "uint32_t": 4, "int32_t": 4, "uint64_t": 8, "int64_t": 8, "size_t": 8,
              "rgrpc_result": 4, "rgrpc_status_code": 4, "rgrpc_compression": 4,
              "rgrpc_connectivity_state": 4}


def _declarations():
    text = open(HEADER).read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    decls = {}
    for m in re.finditer(r"([A-Za-z_][\w\s\*]*?)\b(rgrpc_\w+)\s*\(([^;{}]*?)\)\s*;", text):
        ret, name, params = m.group(1).strip(), m.group(2), m.group(3).strip()
        if ret.startswith("typedef"):
            continue
        plist = [] if params in ("", "void") else [p.strip() for p in params.split(",")]
        decls[name] = (ret, plist)
    return decls


def _kind_of_c(decl):
    if "*" in decl or "_cb " in decl + " " or re.search(r"_cb\b", decl):
        return "ptr"
    words = decl.replace("const", "").split()
    for w in words:
        if w == "bool":
            return "bool"
        if w in _INT_WIDTH:
            return "int%d" % _INT_WIDTH[w]
    return "?" + decl


def _kind_of_ctypes(t):
    if t is None:
        return "void"
    if t in (ctypes.c_void_p, ctypes.c_char_p) or isinstance(t, type) and (
            issubclass(t, ctypes._Pointer) or issubclass(t, ctypes._CFuncPtr)):
        return "ptr"
    if t is ctypes.c_bool:
        return "bool"
    return "int%d" % ctypes.sizeof(t)


@pytest.mark.parametrize("name,proto", sorted(_lib._PROTOTYPES.items()),
                         ids=lambda x: x if isinstance(x, str) else "")
def test_prototype_matches_header(name, proto):
    decls = _declarations()
    assert name in decls, "%s is not declared in include/rgrpc.h" % name
    ret, params = decls[name]
    restype, argtypes = proto
    assert len(params) == len(argtypes), (name, params)
    for decl, t in zip(params, argtypes):
        assert _kind_of_c(decl) == _kind_of_ctypes(t), (name, decl, t)
    if ret.replace("const", "").strip() == "void":
        assert restype is None, name
    else:
        assert _kind_of_c(ret) == _kind_of_ctypes(restype), (name, ret, restype)


def test_loaded_library_has_every_function():
    missing = [name for name in _lib._PROTOTYPES if not hasattr(_lib.lib, name)]
    assert not missing


def test_library_without_a_function_is_refused():
    class Lacking(object):
        pass

    lacking = Lacking()
    for name in _lib._PROTOTYPES:
        if name != "rgrpc_channel_subscribe":
            setattr(lacking, name, ctypes.CFUNCTYPE(None)())
    with pytest.raises(ImportError, match="too old.*missing rgrpc_channel_subscribe"):
        _lib._declare(lacking)
