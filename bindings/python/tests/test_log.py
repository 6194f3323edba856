"""librgrpc's log lines in Python's logging: GRPC_TRACE / GRPC_VERBOSITY
read as grpcio reads them, lines under the ``rgrpc.<tracer>`` loggers,
nothing when nothing is on, rgrpc.set_trace / set_verbosity at run time."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

import rgrpc as grpc
from conftest import PKG_ROOT


def _run(env_extra, target, code):
    env = dict(os.environ, PYTHONPATH=PKG_ROOT, **env_extra)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code), target],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out


SCRIPT = """
    import json, logging, sys
    records = []
    class H(logging.Handler):
        def emit(self, r):
            records.append((r.name, r.levelname, r.getMessage()))
    logging.getLogger("rgrpc").addHandler(H())
    logging.getLogger("rgrpc").setLevel(logging.DEBUG)
    import rgrpc
    ch = rgrpc.insecure_channel(sys.argv[1])
    rgrpc.channel_ready_future(ch).result(timeout=10)
    ch.unary_unary("/grpc.testing.TestService/EmptyCall")(b"", timeout=10)
    ch.close()
    print(json.dumps(records))
"""


def test_grpc_trace_lines_reach_logging(target):
    out = _run({"GRPC_TRACE": "connectivity_state,call"}, target, SCRIPT)
    records = json.loads(out.stdout)
    names = {r[0] for r in records}
    assert names == {"rgrpc.connectivity_state", "rgrpc.call"}, records
    assert any("is READY" in r[2] for r in records if r[0] == "rgrpc.connectivity_state")
    assert any("EmptyCall ended: OK" in r[2] for r in records if r[0] == "rgrpc.call")
    assert out.stderr == ""  # into logging, not stderr


def test_nothing_on_nothing_logged(target):
    env = {k: "" for k in ("GRPC_TRACE", "GRPC_VERBOSITY")}
    out = _run(env, target, SCRIPT)
    assert json.loads(out.stdout) == []


def test_verbosity_info_logs_state_changes(target):
    out = _run({"GRPC_VERBOSITY": "INFO"}, target, SCRIPT)
    records = json.loads(out.stdout)
    assert records and all(r[1] in ("INFO", "ERROR") for r in records), records
    assert any(r[0] == "rgrpc.connectivity_state" for r in records)


def test_set_trace_at_run_time(target, caplog):
    caplog.set_level(logging.DEBUG, logger="rgrpc")
    grpc.set_trace("none,call")
    try:
        with grpc.insecure_channel(target) as ch:
            ch.unary_unary("/grpc.testing.TestService/EmptyCall")(b"", timeout=10)
    finally:
        grpc.set_trace("none")
    lines = [r for r in caplog.records if r.name == "rgrpc.call"]
    assert any("EmptyCall ended: OK" in r.getMessage() for r in lines), caplog.records
    with pytest.raises(ValueError) as e:
        grpc.set_trace("call,nonsense")
    assert "nonsense" in str(e.value)
    with pytest.raises(ValueError):
        grpc.set_verbosity("LOUD")
    grpc.set_verbosity("NONE")
