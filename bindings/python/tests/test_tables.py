"""The few constants the binding keeps on the Python side agree with
librgrpc's own tables, so that drift fails here: ``_lib.Result`` and the
grpcio enums ``StatusCode`` and ``ChannelConnectivity`` against the
library's name functions (``rgrpc_result_name``, ``rgrpc_status_code_name``,
``rgrpc_connectivity_state_name``); ``Compression`` and the send flags,
which have no name function, against ``include/rgrpc.h``."""

from __future__ import annotations

import os
import re

import pytest

import rgrpc as grpc
from rgrpc import _lib

from conftest import REPO

HEADER = os.path.join(REPO, "include", "rgrpc.h")


def _status_code_name(n):
    return _lib.lib.rgrpc_status_code_name(n).decode()


def _connectivity_state_name(n):
    return _lib.lib.rgrpc_connectivity_state_name(n).decode()


def _header_constants(prefix):
    """``PREFIX_NAME = value`` enum entries and ``#define PREFIX_NAME value``
    of the header, as {NAME: value}."""
    text = open(HEADER).read()
    found = {}
    pattern = r"^\s*(?:#define\s+)?%s(\w+)(?:\s*=\s*|\s+)(-?\d+),?\s*$" % re.escape(prefix)
    for m in re.finditer(pattern, text, re.M):
        assert m.group(1) not in found, m.group(0)
        found[m.group(1)] = int(m.group(2))
    assert found, "no %s* constants in %s" % (prefix, HEADER)
    return found


# --- rgrpc_result ------------------------------------------------------------------

_RESULTS = sorted((k, v) for k, v in vars(_lib.Result).items() if k.isupper())


@pytest.mark.parametrize("name,value", _RESULTS, ids=[k for k, _ in _RESULTS])
def test_result_constant_is_the_librarys(name, value):
    assert _lib.result_name(value) == "RGRPC_RESULT_" + name


def test_result_constants_agree_with_header():
    header = _header_constants("RGRPC_RESULT_")
    assert {k: header.get(k) for k, _ in _RESULTS} == dict(_RESULTS)


def test_result_name_of_unknown_code():
    assert _lib.result_name(6999) == "UNKNOWN"


# --- status codes ------------------------------------------------------------------


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_status_code_is_the_librarys(code):
    number, text = code.value
    assert _status_code_name(number) == code.name
    assert text == code.name.lower().replace("_", " ")  # grpcio's second element


def test_every_library_status_code_has_a_status_code():
    named = [n for n in range(256) if _status_code_name(n) != "UNKNOWN_CODE"]
    assert named == sorted(c.value[0] for c in grpc.StatusCode)


# --- connectivity states -----------------------------------------------------------


@pytest.mark.parametrize("state", list(grpc.ChannelConnectivity), ids=lambda s: s.name)
def test_connectivity_state_is_the_librarys(state):
    number, text = state.value
    assert _connectivity_state_name(number) == state.name
    assert text == state.name.lower().replace("_", " ")


def test_every_library_connectivity_state_has_a_channel_connectivity():
    named = [n for n in range(256) if _connectivity_state_name(n) != "UNKNOWN"]
    assert named == sorted(s.value[0] for s in grpc.ChannelConnectivity)


# --- no name function: against the header -----------------------------------------


def test_compression_numbers_are_the_librarys():
    header = _header_constants("RGRPC_COMPRESSION_")
    ours = {"NONE": grpc.Compression.NoCompression, "DEFLATE": grpc.Compression.Deflate,
            "GZIP": grpc.Compression.Gzip}
    assert header == {k: int(v) for k, v in ours.items()}


def test_send_flags_are_the_librarys():
    assert _header_constants("RGRPC_SEND_")["LAST"] == _lib.SEND_LAST
