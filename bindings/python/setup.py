"""Build hook: the version from Cargo.toml, and librgrpc bundled into the package.

The version is the workspace version in the repository's Cargo.toml (the one
place it is written; rgrpc/_version.py reads it), or, building from an sdist,
the one recorded in its PKG-INFO. Built packages get rgrpc/_version.py with
the version and the soname as constants.

``pip install ./bindings/python`` (or building a wheel) puts a copy of
librgrpc.so into ``rgrpc/_native/``, taken from, in order:

1. ``RGRPC_LIBRARY`` (full path of a built librgrpc) when set at build time;
2. a repository checkout around this directory: ``cargo build --release -p
   rgrpc --lib`` is run at the repository root (``$CARGO`` or ``cargo``;
   ``$CARGO_TARGET_DIR`` respected), and on Linux the shared library is
   linked from ``target/release/librgrpc.a`` by cmake/rgrpc_link_shared.cmake
   (the version node and exports of the installed library; needs ``cmake``
   and a C compiler, else cargo's ``target/release/librgrpc.so`` is taken).

``RGRPC_PY_NO_BUNDLE=1`` skips both. If neither source works the package is
built without a bundled library (a pure-Python wheel) and a warning is
printed; at import time rgrpc then looks for librgrpc as README.md describes.
A wheel with a bundled library is tagged ``py3-none-<platform>``: it works on
every Python 3.8+ of that platform (ctypes only, no extension module);
``auditwheel repair`` retags it manylinux (librgrpc needs only libc, libm,
libgcc_s).
"""

import atexit
import os
import runpy
import shutil
import subprocess
import sys
import tempfile

from setuptools import setup
from setuptools.dist import Distribution as _Distribution
from setuptools.command.build_py import build_py as _build_py
from setuptools.command.sdist import sdist as _sdist

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


_VERSION_PY = runpy.run_path(os.path.join(HERE, "rgrpc", "_version.py"))


def package_version():
    """Cargo.toml's workspace version in a checkout, else the sdist's."""
    v = _VERSION_PY["version_from_cargo_toml"](os.path.join(REPO, "Cargo.toml"))
    if v:
        return v
    try:
        with open(os.path.join(HERE, "PKG-INFO")) as f:
            for line in f:
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    raise SystemExit("rgrpc setup: no version (neither ../../Cargo.toml nor PKG-INFO)")


VERSION = package_version()
SONAME = _VERSION_PY["soname"](VERSION)


def write_version_py(package_dir):
    """rgrpc/_version.py of a built package: the two constants."""
    path = os.path.join(package_dir, "_version.py")
    if os.path.exists(path):
        os.remove(path)  # may be a hard link to the source file
    with open(path, "w") as f:
        f.write('"""Written by setup.py from Cargo.toml\'s workspace version."""\n\n'
                "VERSION = %r\nSONAME = %r\n" % (VERSION, SONAME))


def link_shared(target_dir):
    """On Linux, librgrpc.so linked from the static library with the version
    node (cmake/rgrpc_link_shared.cmake); None when that cannot be done."""
    static = os.path.join(target_dir, "release", "librgrpc.a")
    cmake = shutil.which("cmake")
    if not sys.platform.startswith("linux") or not cmake or not os.path.isfile(static):
        return None
    out_dir = tempfile.mkdtemp(prefix="rgrpc-wheel-")
    atexit.register(shutil.rmtree, out_dir, True)
    out = os.path.join(out_dir, "librgrpc.so." + VERSION)
    sov = SONAME[len("librgrpc.so."):]
    try:
        subprocess.check_call([
            cmake, "-DRGRPC_HEADER=" + os.path.join(REPO, "include", "rgrpc.h"),
            "-DRGRPC_STATIC_LIB=" + static, "-DRGRPC_OUTPUT=" + out,
            "-DRGRPC_SONAME=" + SONAME, "-DRGRPC_VERSION_NODE=RGRPC_" + sov,
            "-DRGRPC_STRIP=ON", "-P", os.path.join(REPO, "cmake", "rgrpc_link_shared.cmake"),
        ], stdout=sys.stderr)
    except (OSError, subprocess.CalledProcessError) as e:
        _log("linking the shared library failed (%s): taking cargo's" % e)
        return None
    return out


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
    if cargo:
        linked = link_shared(target_dir)
        if linked:
            return linked
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
        if not self.dry_run:
            write_version_py(os.path.join(self.build_lib, "rgrpc"))
        lib = library()
        if lib and not self.dry_run:
            dest_dir = os.path.join(self.build_lib, "rgrpc", "_native")
            os.makedirs(dest_dir, exist_ok=True)
            dest = os.path.join(dest_dir, LIBNAME)
            shutil.copyfile(lib, dest)
            os.chmod(dest, 0o755)
            _log("bundled %s" % lib)


class sdist(_sdist):
    def make_release_tree(self, base_dir, files):
        _sdist.make_release_tree(self, base_dir, files)
        write_version_py(os.path.join(base_dir, "rgrpc"))


class Distribution(_Distribution):
    def has_ext_modules(self):
        # A bundled librgrpc makes the package platform-specific: its files go
        # to platlib (the wheel's root), as auditwheel requires of binaries.
        return library() is not None


cmdclass = {"build_py": build_py, "sdist": sdist}

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

setup(version=VERSION, cmdclass=cmdclass, distclass=Distribution)
