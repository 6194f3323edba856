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


class Server(object):
    """A running interop server process: on a free port (port=0), a given
    TCP port, or a unix socket (uds). restart() stops it gracefully and
    starts it again on the same port."""

    def __init__(self, extra=(), uds=None, port=0):
        self.extra = list(extra)
        self.uds = uds
        self._start(port)

    def _start(self, port):
        cmd = [sys.executable, INTEROP_SERVER]
        if self.uds:
            cmd += ["--uds", self.uds]
        else:
            cmd += ["--port", str(port)]
        cmd += self.extra
        # No preexec_fn: Python code between fork and exec is unsafe once
        # grpcio's threads run in this process (restart() starts servers
        # while calls are made); the server arranges to die with this
        # process itself (RGRPC_TEST_PARENT_PID).
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True,
                                     env=dict(os.environ, RGRPC_TEST_PARENT_PID=str(os.getpid())))
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "LISTENING":
            self.proc.kill()
            err = self.proc.stderr.read()
            self.proc.wait()
            raise RuntimeError("interop server did not start: %r %s" % (line, err))
        self.port = int(line[1])
        self.target = ("unix:" + self.uds) if self.uds else "127.0.0.1:%d" % self.port

    def stop(self):
        """SIGTERM: the server stops gracefully (GOAWAY, then in-flight calls
        get its grace period of 0.2 s) and exits; killed after 5 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self, timeout=10.0):
        """stop(), then start again on the same port (or socket path),
        retrying the bind for up to `timeout` seconds."""
        self.stop()
        end = time.monotonic() + timeout
        while True:
            try:
                self._start(0 if self.uds else self.port)
                return
            except RuntimeError:
                if time.monotonic() >= end:
                    raise
                time.sleep(0.1)


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
