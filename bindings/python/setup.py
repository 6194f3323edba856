"""Build hook: bundle librgrpc into the package.

``pip install ./bindings/python`` (or building a wheel) puts a copy of
librgrpc.so into ``rgrpc/_native/``, taken from, in order:

1. ``RGRPC_LIBRARY`` (full path of a built librgrpc) when set at build time;
2. a repository checkout around this directory: ``cargo build --release -p
   rgrpc --lib`` is run at the repository root (``$CARGO`` or ``cargo``;
   ``$CARGO_TARGET_DIR`` respected) and ``target/release/librgrpc.so`` copied.

``RGRPC_PY_NO_BUNDLE=1`` skips both. If neither source works the package is
built without a bundled library (a pure-Python wheel) and a warning is
printed; at import time rgrpc then looks for librgrpc as README.md describes.
A wheel with a bundled library is tagged ``py3-none-<platform>``: it works on
every Python 3.8+ of that platform (ctypes only, no extension module).
"""

import os
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel
except ImportError:  # setuptools < 70.1
    try:
        from wheel.bdist_wheel import bdist_wheel as _bdist_wheel
    except ImportError:
        _bdist_wheel = None

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

if sys.platform == "darwin":
    LIBNAME = "librgrpc.dylib"
elif sys.platform == "win32":
    LIBNAME = "rgrpc.dll"
else:
    LIBNAME = "librgrpc.so"


def _log(msg):
    sys.stderr.write("rgrpc setup: %s\n" % msg)


def _is_checkout():
    return os.path.isfile(os.path.join(REPO, "Cargo.toml")) and os.path.isfile(
        os.path.join(REPO, "include", "rgrpc.h"))


def find_or_build_library():
    """Path of the librgrpc to bundle, or None."""
    if os.environ.get("RGRPC_PY_NO_BUNDLE"):
        return None
    env = os.environ.get("RGRPC_LIBRARY")
    if env:
        if not os.path.isfile(env):
            raise SystemExit("RGRPC_LIBRARY=%r: no such file" % env)
        return env
    if not _is_checkout():
        _log("not in an rgrpc checkout and RGRPC_LIBRARY is not set: "
             "building without a bundled librgrpc")
        return None
    cargo = os.environ.get("CARGO") or shutil.which("cargo")
    target_dir = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    built = os.path.join(target_dir, "release", LIBNAME)
    if cargo:
        _log("running cargo build --release -p rgrpc --lib in %s" % REPO)
        try:
            subprocess.check_call([cargo, "build", "--release", "-p", "rgrpc", "--lib"],
                                  cwd=REPO, stdout=sys.stderr)
        except (OSError, subprocess.CalledProcessError) as e:
            _log("cargo build failed (%s)" % e)
    else:
        _log("cargo not found")
    if os.path.isfile(built):
        return built
    _log("no %s: building without a bundled librgrpc" % built)
    return None


_LIBRARY = None
_SEARCHED = False


def library():
    global _LIBRARY, _SEARCHED
    if not _SEARCHED:
        _SEARCHED = True
        _LIBRARY = find_or_build_library()
    return _LIBRARY


class build_py(_build_py):
    def run(self):
        _build_py.run(self)
        lib = library()
        if lib and not self.dry_run:
            dest_dir = os.path.join(self.build_lib, "rgrpc", "_native")
            os.makedirs(dest_dir, exist_ok=True)
            dest = os.path.join(dest_dir, LIBNAME)
            shutil.copyfile(lib, dest)
            os.chmod(dest, 0o755)
            _log("bundled %s" % lib)


cmdclass = {"build_py": build_py}

if _bdist_wheel is not None:

    class bdist_wheel(_bdist_wheel):
        def finalize_options(self):
            _bdist_wheel.finalize_options(self)
            self.root_is_pure = library() is None

        def get_tag(self):
            python, abi, plat = _bdist_wheel.get_tag(self)
            if library() is not None:
                return "py3", "none", plat
            return python, abi, plat

    cmdclass["bdist_wheel"] = bdist_wheel

setup(cmdclass=cmdclass)
