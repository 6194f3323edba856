"""Fixtures: a real grpcio interop server (cbindings-tests/interop_server.py),
the generated interop stubs, and rgrpc channels to it.

rgrpc is imported from bindings/python when it is not installed, and finds
librgrpc as documented (RGRPC_LIBRARY, bundled copy, system, checkout's
target/release)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(PKG_ROOT))
CBT = os.path.join(REPO, "cbindings-tests")

try:
    import rgrpc  # noqa: F401  (an installed copy)
except ImportError:
    sys.path.insert(0, PKG_ROOT)
    import rgrpc  # noqa: F401

sys.path.insert(0, CBT)
import interop_protos  # noqa: E402

INTEROP_SERVER = os.path.join(CBT, "interop_server.py")


def _die_with_parent():
    """In the child before exec: get SIGTERM when the test process dies, so a
    crashed run leaves no server behind (Linux; elsewhere a no-op)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Server(object):
    """A running interop server process."""

    def __init__(self, extra=(), uds=None):
        cmd = [sys.executable, INTEROP_SERVER]
        if uds:
            cmd += ["--uds", uds]
        else:
            cmd += ["--port", "0"]
        cmd += list(extra)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True,
                                     preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "LISTENING":
            self.proc.kill()
            err = self.proc.stderr.read()
            raise RuntimeError("interop server did not start: %r %s" % (line, err))
        self.port = int(line[1])
        self.target = ("unix:" + uds) if uds else "127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def pb():
    return interop_protos.load()


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def target(server):
    return server.target


@pytest.fixture
def channel(target):
    ch = rgrpc.insecure_channel(target)
    yield ch
    ch.close()


@pytest.fixture
def stub(channel, pb):
    return pb.test_pb2_grpc.TestServiceStub(channel)


@pytest.fixture
def make_server():
    """Starts extra servers (e.g. one a test kills); stopped afterwards."""
    started = []

    def make(*args, **kwargs):
        s = Server(*args, **kwargs)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(pred, timeout=5.0, interval=0.01):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return pred()
