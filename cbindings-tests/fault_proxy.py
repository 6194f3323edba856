#!/usr/bin/env python3
"""A loopback TCP proxy that injects faults into gRPC connections (cleartext
HTTP/2), for the fault storm test (test_fault_storm.c, issue 18).

    fault_proxy.py --backend HOST:PORT [--backend HOST:PORT ...]
                   --profile NAME [--profile NAME ...]
                   [--seed N] [--counts FILE]

For every profile and every backend it listens on the backend's own host
(backend 127.0.0.2:P is proxied on 127.0.0.2 too), port 0, and prints one
line per listener, then READY, to stdout:

    LISTENING <profile> <backend index, 0-based> <host>:<port>
    READY

Each accepted connection is forwarded to its backend. A schedule per
connection, drawn from one random generator (seed from --seed, else
$RGRPC_FAULT_SEED, else random; printed to stderr either way), waits a
while, injects a fault, waits, injects another, ... until a fault ends the
connection. The fault kinds:

  reset   close both sockets with SO_LINGER 0: the client (and the server)
          get a TCP RST; what the proxy had not yet written is lost.
  stall   stop forwarding one direction (to the client or to the server)
          for a while; nothing is lost, it comes late.
  delay   for a while, hold every chunk of one direction a few ms.
  cut     forward only a prefix of the next chunk of one direction (a
          frame cut short), then close both sides (FIN).
  goaway  insert an HTTP/2 GOAWAY (stream 0, NO_ERROR, last-stream-id =
          the highest stream the client has opened so far) into the
          server-to-client bytes at a frame boundary; from then on frames
          of streams above last-stream-id are dropped on their way to the
          server (as if the server had refused them, which is what the
          GOAWAY tells the client); then the connection is closed (FIN).

The proxy follows both byte streams frame by frame (9-byte HTTP/2 frame
headers; the client starts with the 24-byte connection preface, the server
with none) to know the stream ids, where frames begin and which responses
are partly delivered.

Profiles (one kind, or all of them):

  delay, stall, reset, cut, goaway
          that kind alone, every 0.15-0.6 s on each connection. goaway
          drains, as a server shutting down gracefully: a PING follows the
          GOAWAY, and the connection is closed once the client has
          acknowledged it (so it has read the GOAWAY; the ACK is not
          forwarded) and every stream up to last-stream-id has ended
          (5 s at most: counted as drain_timeout).
  storm   every kind, every 0.08-0.4 s on each connection, wherever the
          streams are; goaway closes 20-300 ms later whatever is in flight.
  safe    every kind, every 0.15-0.6 s, but a fault that loses data (reset,
          cut, the close after goaway) strikes only when no response is
          partly delivered to the client: no stream has had its response
          headers forwarded without its end, no frame is half forwarded and
          nothing forwarded is still unsent (proxy buffer and kernel send
          queue empty), so no call has been committed by a response it
          cannot finish; a cut toward the client cuts inside a frame that
          starts at such a point. goaway drains as above. Stalls are
          shorter (at most 1 s).

In each profile the kinds come in a shuffled cycle (every kind once per
round), so that a short run sees every kind. Between faults, connections
work normally, so most calls succeed.

Counts of what was injected (and of connections, of faults given up:
a safe-mode fault when the connection never became quiet in 3 s, a cut
when no bytes came in 3 s) are written to
--counts FILE after every change (atomically: a temporary file renamed),
one "<profile> <what> <count>" line each, and printed to stderr when the
proxy stops (SIGTERM or SIGINT; exit status 0).

Plain Python 3 standard library.
"""
import argparse
import asyncio
import fcntl
import os
import random
import signal
import socket
import struct
import sys
import termios
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, PING, GOAWAY, CONTINUATION = 0x0, 0x1, 0x3, 0x6, 0x7, 0x9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
TO_CLIENT, TO_SERVER = "to_client", "to_server"
KINDS = ("reset", "stall", "delay", "cut", "goaway")


class Profile:
    def __init__(self, name, kinds, interval, stall=(0.3, 2.0), safe=False, drain=False):
        self.name = name
        self.kinds = kinds
        self.interval = interval  # seconds between faults on a connection (uniform)
        self.stall = stall  # stall length (uniform)
        self.safe = safe  # data-losing faults only when no response is partly delivered
        self.drain = drain  # after GOAWAY, close once the streams it kept have ended
        self.cycle = []

    def next_kind(self, rng):
        if not self.cycle:
            self.cycle = list(self.kinds)
            rng.shuffle(self.cycle)
        return self.cycle.pop()


def make_profile(name):
    if name in KINDS:
        return Profile(name, (name,), (0.15, 0.6), drain=True)
    if name == "storm":
        return Profile(name, KINDS, (0.08, 0.4))
    if name == "safe":
        return Profile(name, KINDS, (0.15, 0.6), stall=(0.2, 1.0), safe=True, drain=True)
    raise SystemExit(f"fault_proxy.py: unknown profile {name!r}")


class Counts:
    def __init__(self, path):
        self.path = path
        self.c = {}

    def add(self, profile, what, n=1):
        key = (profile, what)
        self.c[key] = self.c.get(key, 0) + n
        self.write()

    def lines(self):
        return [f"{p} {w} {n}" for (p, w), n in sorted(self.c.items())]

    def write(self):
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(self.lines()) + "\n")
        os.replace(tmp, self.path)


class Scanner:
    """Follows one direction's bytes frame by frame as they are forwarded.

    feed() returns the bytes to forward and the frames completed in them:
    (offset just after the frame in those bytes, type, flags, stream id).
    A partial frame header (< 9 bytes) is held back until it is whole, so
    that `drop` (type, flags, stream, payload) -> bool can leave out whole
    frames: it is asked when the header is whole (payload None), except
    for PING frames, which are held back whole and asked with their
    payload."""

    def __init__(self, preface_len):
        self.preface = preface_len
        self.head = b""
        self.left = 0  # payload bytes still to come of the current frame
        self.frame = None  # (type, flags, stream) of the current frame
        self.dropping = False
        self.held = None  # a PING frame being held back (header + payload so far)

    def mid_frame(self):
        """Part of a frame (or of the preface) has been forwarded, not all."""
        return self.preface > 0 or (self.left > 0 and self.held is None)

    def feed(self, data, drop=None):
        out = bytearray()
        frames = []
        i, n = 0, len(data)
        if self.preface:
            k = min(self.preface, n)
            out += data[:k]
            self.preface -= k
            i = k
        while i < n:
            if self.left > 0:
                k = min(self.left, n - i)
                if self.held is not None:
                    self.held += data[i:i + k]
                elif not self.dropping:
                    out += data[i:i + k]
                self.left -= k
                i += k
            else:
                k = min(9 - len(self.head), n - i)
                self.head += data[i:i + k]
                i += k
                if len(self.head) < 9:
                    break
                length = int.from_bytes(self.head[0:3], "big")
                ftype, flags = self.head[3], self.head[4]
                stream = int.from_bytes(self.head[5:9], "big") & 0x7FFFFFFF
                if ftype == PING:
                    self.held = bytearray(self.head)
                    self.dropping = False
                else:
                    self.dropping = bool(drop and drop(ftype, flags, stream, None))
                    if not self.dropping:
                        out += self.head
                self.head = b""
                self.frame = (ftype, flags, stream)
                self.left = length
            if self.left == 0 and self.frame is not None:
                if self.held is not None:
                    ftype, flags, stream = self.frame
                    self.dropping = bool(drop and drop(ftype, flags, stream, bytes(self.held[9:])))
                    if not self.dropping:
                        out += self.held
                    self.held = None
                if not self.dropping:
                    frames.append((len(out),) + self.frame)
                self.frame = None
                self.dropping = False
        return bytes(out), frames


def goaway_frame(last_stream):
    return struct.pack(">I", 8)[1:] + bytes([GOAWAY, 0]) + struct.pack(">III", 0, last_stream & 0x7FFFFFFF, 0)


def ping_frame(opaque):
    return struct.pack(">I", 8)[1:] + bytes([PING, 0]) + struct.pack(">I", 0) + opaque


class Conn:
    def __init__(self, proxy, profile, cli_r, cli_w, srv_r, srv_w):
        self.proxy, self.profile, self.rng = proxy, profile, proxy.rng
        self.cli_r, self.cli_w, self.srv_r, self.srv_w = cli_r, cli_w, srv_r, srv_w
        self.closed = False
        self.tasks = []
        self.flowing = {TO_CLIENT: asyncio.Event(), TO_SERVER: asyncio.Event()}
        for e in self.flowing.values():
            e.set()
        self.delay_until = {TO_CLIENT: 0.0, TO_SERVER: 0.0}
        self.cut_pending = None  # direction of a pending cut
        self.cut_done = None  # future set when the pending cut happened
        self.goaway_pending = False
        self.goaway_last = None  # last-stream-id once a GOAWAY was sent
        self.ping_opaque = None  # the PING sent after a draining GOAWAY
        self.ping_acked = False  # ... and the client's ACK of it (not forwarded)
        self.to_client_idle = False
        self.c2s = Scanner(len(PREFACE))
        self.s2c = Scanner(0)
        self.max_client_stream = 0
        self.responding = set()  # streams whose response has begun, not ended
        self.open_streams = set()  # streams the client opened, not yet ended
        self.header_block = None  # (stream, end_stream) of a HEADERS awaiting CONTINUATION

    def count(self, what):
        self.proxy.counts.add(self.profile.name, what)

    # ---------------------------------------------------------------- state

    def end_stream(self, s):
        self.responding.discard(s)
        self.open_streams.discard(s)

    def apply_to_client(self, frames, responding=None):
        """Stream bookkeeping for server frames forwarded to the client.
        With `responding` given, only that set is updated (a dry run)."""
        dry = responding is not None
        resp = responding if dry else self.responding
        hb = self.header_block
        for _, ftype, flags, s in frames:
            if ftype == HEADERS and s:
                resp.add(s)
                if flags & END_HEADERS:
                    if flags & END_STREAM:
                        resp.discard(s)
                        if not dry:
                            self.end_stream(s)
                else:
                    hb = (s, bool(flags & END_STREAM))
            elif ftype == CONTINUATION and hb and flags & END_HEADERS:
                if hb[1]:
                    resp.discard(hb[0])
                    if not dry:
                        self.end_stream(hb[0])
                hb = None
            elif ftype == DATA and flags & END_STREAM or ftype == RST_STREAM:
                resp.discard(s)
                if not dry:
                    self.end_stream(s)
        if not dry:
            self.header_block = hb

    def apply_to_server(self, frames):
        for _, ftype, flags, s in frames:
            if ftype == HEADERS and s and s > self.max_client_stream:
                self.max_client_stream = s
                self.open_streams.add(s)
            elif ftype == RST_STREAM:
                self.end_stream(s)

    def unsent_to_client(self):
        n = self.cli_w.transport.get_write_buffer_size()
        sock = self.cli_w.get_extra_info("socket")
        if sock is not None:
            try:
                n += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
            except OSError:
                pass
        return n

    def quiet(self):
        """No response is partly delivered to the client."""
        return not self.responding and not self.s2c.mid_frame() and self.unsent_to_client() == 0

    async def wait_quiet(self, limit=3.0):
        """safe profile: waits until quiet(); False when it never was."""
        if not self.profile.safe:
            return True
        end = time.monotonic() + limit
        while not self.closed:
            if self.quiet():
                return True
            if time.monotonic() > end:
                self.count("given_up")
                return False
            await asyncio.sleep(0.002)
        return False

    # --------------------------------------------------------------- pumps

    async def gate(self, direction):
        await self.flowing[direction].wait()
        if time.monotonic() < self.delay_until[direction]:
            await asyncio.sleep(self.rng.uniform(0.002, 0.03))

    async def pump_to_server(self):
        while not self.closed:
            data = await self.cli_r.read(65536)
            if not data:
                break
            await self.gate(TO_SERVER)
            if self.closed:
                return
            out, frames = self.c2s.feed(data, self.drop_to_server)
            if self.cut_pending == TO_SERVER and out and (not self.profile.safe or self.quiet()):
                self.srv_w.write(out[:self.rng.randrange(len(out))])
                self.count("cut")
                self.count("cut_to_server")
                self.cut_pending = None
                self.cut_done.set_result(True)
                return self.close(graceful=True)
            self.srv_w.write(out)
            self.apply_to_server(frames)
            await self.srv_w.drain()
        self.close(graceful=True)

    def drop_to_server(self, ftype, flags, stream, payload):
        """Frames of streams the GOAWAY refused, and the ACK of our PING,
        do not reach the server."""
        if ftype == PING and flags & ACK and payload == self.ping_opaque:
            self.ping_acked = True
            return True
        return self.goaway_last is not None and stream > self.goaway_last

    async def pump_to_client(self):
        while not self.closed:
            self.to_client_idle = True
            data = await self.srv_r.read(65536)
            self.to_client_idle = False
            if not data:
                break
            await self.gate(TO_CLIENT)
            if self.closed:
                return
            at_boundary = not self.s2c.mid_frame()
            out, frames = self.s2c.feed(data)
            if self.cut_pending == TO_CLIENT and out:
                n = self.cut_point(out, frames, at_boundary)
                if n is not None:
                    self.cli_w.write(out[:n])
                    self.count("cut")
                    self.count("cut_to_client")
                    self.cut_pending = None
                    self.cut_done.set_result(True)
                    return self.close(graceful=True)
            if self.goaway_pending:
                b = 0 if at_boundary else (frames[0][0] if frames else None)
                if b is not None:  # (the frames' offsets are not used past here)
                    out = out[:b] + self.make_goaway() + out[b:]
            self.cli_w.write(out)
            self.apply_to_client(frames)
            await self.cli_w.drain()
        self.close(graceful=True)

    def cut_point(self, out, frames, at_boundary):
        """Where a cut toward the client ends the forwarded bytes."""
        if not self.profile.safe:
            return self.rng.randrange(len(out))
        # Points where a frame begins and no response is partly delivered
        # (in a dry run over this chunk's frames); the cut then keeps 1..8
        # bytes of that next frame, less than its header: it is not read.
        if self.unsent_to_client():
            return None
        resp = set(self.responding)
        points = []
        if at_boundary and not resp:
            points.append(0)
        for f in frames:
            self.apply_to_client([f], resp)
            if not resp and f[0] < len(out):
                points.append(f[0])
        if not points:
            return None
        p = self.rng.choice(points)
        return min(p + self.rng.randint(1, 8), len(out) - 1) if p < len(out) - 1 else p

    def make_goaway(self):
        """The GOAWAY to send, and when draining a PING after it: the
        client's ACK of the PING says it has read the GOAWAY."""
        self.goaway_pending = False
        self.goaway_last = self.max_client_stream
        self.count("goaway")
        self.tasks.append(asyncio.ensure_future(self.close_after_goaway()))
        frames = goaway_frame(self.goaway_last)
        if self.profile.drain:
            self.ping_opaque = self.rng.randbytes(8)
            frames += ping_frame(self.ping_opaque)
        return frames

    # -------------------------------------------------------------- faults

    async def schedule(self):
        p = self.profile
        while not self.closed:
            await asyncio.sleep(self.rng.uniform(*p.interval))
            if self.closed:
                return
            kind = p.next_kind(self.rng)
            if kind == "reset":
                if await self.wait_quiet():
                    self.count("reset")
                    self.close(graceful=False)
                    return
            elif kind == "stall":
                d = self.rng.choice((TO_CLIENT, TO_SERVER))
                self.count("stall")
                self.count("stall_" + d)
                self.flowing[d].clear()
                await asyncio.sleep(self.rng.uniform(*p.stall))
                self.flowing[d].set()
            elif kind == "delay":
                d = self.rng.choice((TO_CLIENT, TO_SERVER))
                self.count("delay")
                self.count("delay_" + d)
                self.delay_until[d] = time.monotonic() + self.rng.uniform(0.2, 1.0)
            elif kind == "cut":
                self.cut_pending = self.rng.choice((TO_CLIENT, TO_SERVER))
                self.cut_done = asyncio.get_running_loop().create_future()
                try:
                    await asyncio.wait_for(asyncio.shield(self.cut_done), 3.0)
                    return
                except asyncio.TimeoutError:
                    self.cut_pending = None
                    self.count("given_up")
            elif kind == "goaway":
                if self.to_client_idle and not self.s2c.mid_frame() and self.flowing[TO_CLIENT].is_set():
                    self.cli_w.write(self.make_goaway())
                else:
                    self.goaway_pending = True  # the pump inserts it at a frame boundary
                return

    async def close_after_goaway(self):
        if self.profile.drain:
            end = time.monotonic() + 5.0
            while not self.closed and time.monotonic() < end:
                if self.ping_acked and not any(s <= self.goaway_last for s in self.open_streams):
                    break
                await asyncio.sleep(0.005)
            else:
                if not self.closed:
                    self.count("drain_timeout")
        else:
            await asyncio.sleep(self.rng.uniform(0.02, 0.3))
        await self.wait_quiet()  # (never quiet: closes anyway, counted as given up)
        self.close(graceful=True)

    def close(self, graceful):
        if self.closed:
            return
        self.closed = True
        for w in (self.cli_w, self.srv_w):
            try:
                if graceful:
                    w.close()
                else:
                    sock = w.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    w.transport.abort()
            except (OSError, RuntimeError):
                pass
        for e in self.flowing.values():
            e.set()
        me = asyncio.current_task()
        for t in self.tasks:
            if t is not me:
                t.cancel()

    async def run(self):
        self.tasks = [asyncio.ensure_future(self.pump_to_server()),
                      asyncio.ensure_future(self.pump_to_client()),
                      asyncio.ensure_future(self.schedule())]
        pumps = self.tasks[:2]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for t in pumps:
            if t.done() and not t.cancelled() and t.exception() is not None:
                self.close(graceful=False)
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.close(graceful=True)


class Proxy:
    def __init__(self, rng, counts):
        self.rng = rng
        self.counts = counts
        self.conns = set()

    async def listen(self, profile, index, backend):
        host, port = backend.rsplit(":", 1)

        async def accept(cli_r, cli_w):
            try:
                srv_r, srv_w = await asyncio.open_connection(host, int(port))
            except OSError:
                cli_w.transport.abort()
                return
            for w in (cli_w, srv_w):
                w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.counts.add(profile.name, "connections")
            conn = Conn(self, profile, cli_r, cli_w, srv_r, srv_w)
            self.conns.add(conn)
            try:
                await conn.run()
            except (OSError, asyncio.CancelledError):
                conn.close(graceful=False)
            finally:
                self.conns.discard(conn)

        server = await asyncio.start_server(accept, host, 0)
        got = server.sockets[0].getsockname()
        print(f"LISTENING {profile.name} {index} {got[0]}:{got[1]}", flush=True)
        return server


async def main_async(args, rng, counts):
    proxy = Proxy(rng, counts)
    servers = []
    for name in args.profile:
        profile = make_profile(name)
        for i, b in enumerate(args.backend):
            servers.append(await proxy.listen(profile, i, b))
    counts.write()
    print("READY", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for s in servers:
        s.close()
    for c in list(proxy.conns):
        c.close(graceful=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", action="append", required=True, help="HOST:PORT of a server")
    ap.add_argument("--profile", action="append", required=True,
                    help="storm, safe, or one kind: " + ", ".join(KINDS))
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--counts", default=None, help="file for the counts of injected faults")
    args = ap.parse_args()
    seed = args.seed
    if seed is None and os.environ.get("RGRPC_FAULT_SEED"):
        seed = int(os.environ["RGRPC_FAULT_SEED"])
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 32)
    print(f"fault_proxy: seed {seed} (repeat with --seed {seed} or RGRPC_FAULT_SEED={seed})",
          file=sys.stderr, flush=True)
    counts = Counts(args.counts)
    asyncio.run(main_async(args, random.Random(seed), counts))
    print("fault_proxy: injected (profile, what, count): " + "; ".join(counts.lines()),
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
