"""Run by scripts/test.sh in a fresh venv where only the rgrpc wheel is
installed, with no Rust toolchain on PATH and no RGRPC_* variables: the
bundled librgrpc is the one loaded, and it makes real calls.

    wheel_smoke.py TARGET
"""
import os
import shutil
import sys
import sysconfig

target = sys.argv[1]
for tool in ("cargo", "rustc"):
    assert shutil.which(tool) is None, f"{tool} is on PATH: this test wants a machine without Rust"
assert not any(k.startswith(("RGRPC_", "CARGO")) for k in os.environ), sorted(os.environ)

import rgrpc  # noqa: E402

site = os.path.realpath(sysconfig.get_paths()["platlib"])
lib = os.path.realpath(rgrpc.library_path)
assert lib.startswith(os.path.join(site, "rgrpc", "_native") + os.sep), (lib, site)
assert rgrpc.library_version.startswith(f"rgrpc/{rgrpc.__version__} "), (
    rgrpc.library_version, rgrpc.__version__)

with rgrpc.insecure_channel(target) as channel:
    # Bytes in, bytes out (no serializers). SimpleRequest{response_size: 42}.
    unary = channel.unary_unary("/grpc.testing.TestService/UnaryCall")
    reply = unary(b"\x10\x2a", timeout=10)
    assert len(reply) >= 42, reply
    # StreamingOutputCallRequest with three ResponseParameters{size: 1, 2, 3}.
    stream = channel.unary_stream("/grpc.testing.TestService/StreamingOutputCall")
    replies = list(stream(bytes([0x12, 2, 0x08, 1, 0x12, 2, 0x08, 2, 0x12, 2, 0x08, 3]), timeout=10))
    assert len(replies) == 3, replies

# rgrpc.aio is in the wheel and works on the bundled library.
import asyncio  # noqa: E402

from rgrpc import aio  # noqa: E402


async def aio_calls():
    async with aio.insecure_channel(target) as channel:
        reply = await channel.unary_unary("/grpc.testing.TestService/UnaryCall")(
            b"\x10\x2a", timeout=10)
        assert len(reply) >= 42, reply
        call = channel.unary_stream("/grpc.testing.TestService/StreamingOutputCall")(
            bytes([0x12, 2, 0x08, 1, 0x12, 2, 0x08, 2]), timeout=10)
        assert len([r async for r in call]) == 2


asyncio.run(aio_calls())

print(f"wheel OK: {rgrpc.library_version} from {lib}; unary and server streaming, also aio")
