#!/usr/bin/env python3
"""Installs rgrpc from a CMake build tree and uses it as an application would.

    consumer_test.py --build-dir build-test [--keep]

In a temporary directory (removed afterwards unless --keep):

1. `cmake --install BUILD --prefix <tmp>/prefix`, and a distribution-style
   staged install (`DESTDIR=<tmp>/stage cmake --install BUILD --prefix /usr`,
   also per component): the layout, the links, rgrpc.pc's prefix, no
   build-tree path in any installed text file.
2. A copy of cbindings-tests/consumer/ (outside the source tree) built
   - with CMake, find_package(rgrpc 0.1 CONFIG REQUIRED) against the prefix:
     rgrpc::shared, rgrpc::static and rgrpc::rgrpc;
   - with plain cc and pkg-config: shared, `--static` (a fully static
     program, `cc -static`), and librgrpc.a by path with Libs.private (static
     librgrpc, shared libc);
   - with CMake, add_subdirectory(<checkout>) (how it worked before install
     existed; the build tree's cargo target directory, so cargo has nothing
     to do).
3. Every program's dynamic dependencies (ldd): only system libraries, plus
   librgrpc.so.<soversion> from the prefix for the shared ones, referenced
   by soname and with the version node.
4. Every program makes a unary and a server-streaming call to a real grpcio
   interop server.
"""
import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import with_server  # noqa: E402
from check_abi import cargo_version, soversion  # noqa: E402

SYSTEM_DIRS = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/")


def run(cmd, **kw):
    print("+", " ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def out(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True,
                          text=True, **kw).stdout


def cache_value(build, name):
    with open(os.path.join(build, "CMakeCache.txt")) as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split("=", 1)[1].strip()
    sys.exit(f"consumer_test.py: {name} not in {build}/CMakeCache.txt")


class Failures:
    def __init__(self):
        self.items = []

    def check(self, ok, what):
        print(("ok      " if ok else "FAILED  ") + what, flush=True)
        if not ok:
            self.items.append(what)


def check_layout(f, root, prefix, version, libdir="lib", component=None):
    """Files of an install under root (a DESTDIR or the prefix itself)."""
    sov = soversion(version)
    lib = os.path.join(root, libdir)
    real, so = f"librgrpc.so.{version}", f"librgrpc.so.{sov}"
    where = f"{root} ({component or 'all components'})"
    f.check(os.path.isfile(os.path.join(lib, real)) and not os.path.islink(os.path.join(lib, real)),
            f"{where}: {libdir}/{real} is a file")
    f.check(os.readlink(os.path.join(lib, so)) == real if os.path.islink(os.path.join(lib, so)) else False,
            f"{where}: {libdir}/{so} -> {real}")
    dev = [os.path.join(libdir, "librgrpc.so"), os.path.join(libdir, "librgrpc.a"),
           "include/rgrpc.h", os.path.join(libdir, "pkgconfig/rgrpc.pc"),
           os.path.join(libdir, "cmake/rgrpc/rgrpcConfig.cmake"),
           os.path.join(libdir, "cmake/rgrpc/rgrpcConfigVersion.cmake"),
           os.path.join(libdir, "cmake/rgrpc/rgrpcTargets.cmake")]
    if component == "runtime":
        f.check(not any(os.path.lexists(os.path.join(root, p)) for p in dev),
                f"{where}: only the shared library and its soname link")
        return
    for p in dev:
        f.check(os.path.lexists(os.path.join(root, p)), f"{where}: {p}")
    f.check(os.path.islink(os.path.join(lib, "librgrpc.so"))
            and os.readlink(os.path.join(lib, "librgrpc.so")) == so,
            f"{where}: {libdir}/librgrpc.so -> {so}")
    pc = open(os.path.join(lib, "pkgconfig/rgrpc.pc")).read()
    f.check(f"prefix={prefix}\n" in pc and f"Version: {version}\n" in pc,
            f"{where}: rgrpc.pc has prefix={prefix} and Version: {version}")
    f.check("Libs.private: -lpthread" in pc, f"{where}: rgrpc.pc has Libs.private")


def check_no_build_paths(f, root, build):
    build = os.path.realpath(build)
    bad = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or name.endswith((".a", ".so")) or ".so." in name:
                continue
            text = open(path, errors="replace").read()
            if ROOT in text or build in text:
                bad.append(path)
    f.check(not bad, f"{root}: no source or build-tree path in installed text files {bad or ''}")


def check_ldd(f, name, exe, prefix_lib, shared, sov):
    proc = subprocess.run(["ldd", exe], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"})
    text = proc.stdout + proc.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        f.check(not shared, f"{name}: static program (ldd: {text.strip()})")
        return
    rgrpc_lines = [line for line in text.splitlines() if "librgrpc" in line]
    others = []
    for line in text.splitlines():
        line = line.strip()
        if not line or "librgrpc" in line or line.startswith("linux-vdso"):
            continue
        path = line.split("=>")[-1].split("(")[0].strip()
        if not path.startswith(SYSTEM_DIRS):
            others.append(line)
    f.check(not others, f"{name}: ldd shows only system libraries besides librgrpc {others or ''}")
    if shared:
        want = os.path.join(prefix_lib, f"librgrpc.so.{sov}")
        f.check(len(rgrpc_lines) == 1 and f"librgrpc.so.{sov} => {want} " in rgrpc_lines[0] + " ",
                f"{name}: librgrpc.so.{sov} resolved from the prefix ({rgrpc_lines})")
        needed = out(["readelf", "-d", exe])
        f.check(f"[librgrpc.so.{sov}]" in needed, f"{name}: NEEDED librgrpc.so.{sov} (the soname)")
        versions = out(["readelf", "-V", exe])
        f.check(f"Name: RGRPC_{sov}" in versions, f"{name}: references the version node RGRPC_{sov}")
    else:
        f.check(not rgrpc_lines, f"{name}: librgrpc linked in statically")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True, help="a configured and built CMake build tree of rgrpc")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    build = os.path.abspath(a.build_dir)
    version = cargo_version()
    sov = soversion(version)
    cmake = shutil.which("cmake")
    cc = os.environ.get("CC", "cc")
    tmp = tempfile.mkdtemp(prefix="rgrpc-consumer-")
    f = Failures()
    try:
        # 1. Installs.
        prefix = os.path.join(tmp, "prefix")
        run([cmake, "--install", build, "--prefix", prefix], stdout=subprocess.DEVNULL)
        check_layout(f, prefix, prefix, version)
        check_no_build_paths(f, prefix, build)
        stage = os.path.join(tmp, "stage")
        run([cmake, "--install", build, "--prefix", "/usr"], stdout=subprocess.DEVNULL,
            env=dict(os.environ, DESTDIR=stage))
        check_layout(f, os.path.join(stage, "usr"), "/usr", version)
        check_no_build_paths(f, stage, build)
        for comp in ("runtime", "development"):
            d = os.path.join(tmp, "stage-" + comp)
            run([cmake, "--install", build, "--prefix", "/usr", "--component", comp],
                stdout=subprocess.DEVNULL, env=dict(os.environ, DESTDIR=d))
            if comp == "runtime":
                check_layout(f, os.path.join(d, "usr"), "/usr", version, component=comp)
            else:
                f.check(not os.path.exists(os.path.join(d, "usr/lib", f"librgrpc.so.{version}")),
                        f"{d}: development has no {f'librgrpc.so.{version}'}")

        # 2. Builds outside the source tree.
        src = os.path.join(tmp, "src")
        shutil.copytree(os.path.join(HERE, "consumer"), src)
        bin_dir = os.path.join(tmp, "bin")
        os.makedirs(bin_dir)
        programs = {}  # name -> (path, shared)

        cm = os.path.join(tmp, "build-find-package")
        run([cmake, "-S", src, "-B", cm, f"-DCMAKE_PREFIX_PATH={prefix}"], stdout=subprocess.DEVNULL)
        run([cmake, "--build", cm], stdout=subprocess.DEVNULL)
        for name, shared in (("consumer_shared", True), ("consumer_static", False),
                             ("consumer_default", False)):
            programs["find_package " + name] = (os.path.join(cm, name), shared)

        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
        env.pop("PKG_CONFIG_LIBDIR", None)
        pc = shutil.which("pkg-config") or shutil.which("pkgconf")
        f.check(out([pc, "--modversion", "rgrpc"], env=env).strip() == version,
                f"pkg-config --modversion rgrpc is {version}")
        f.check(subprocess.run([pc, f"--atleast-version={version}", "rgrpc"], env=env).returncode == 0,
                f"pkg-config --atleast-version={version} rgrpc")
        c_file = os.path.join(src, "consumer.c")
        flags = shlex.split(out([pc, "--cflags", "--libs", "rgrpc"], env=env))
        libdir = out([pc, "--variable=libdir", "rgrpc"], env=env).strip()
        exe = os.path.join(bin_dir, "pkgconfig_shared")
        run([cc, c_file, *flags, f"-Wl,-rpath,{libdir}", "-o", exe])
        programs["pkg-config shared"] = (exe, True)
        flags = shlex.split(out([pc, "--cflags", "--libs", "--static", "rgrpc"], env=env))
        exe = os.path.join(bin_dir, "pkgconfig_static")
        # glibc warns that getaddrinfo in a static program needs its own
        # version's NSS modules at run time: true, and expected here.
        run([cc, "-static", c_file, *flags, "-o", exe], stderr=subprocess.DEVNULL)
        programs["pkg-config --static"] = (exe, False)
        # Static librgrpc, shared libc (what rgrpc::static does): the archive
        # by name, then Libs.private.
        private = [x for x in shlex.split(out([pc, "--libs-only-l", "--static", "rgrpc"], env=env))
                   if x != "-lrgrpc"]
        exe = os.path.join(bin_dir, "cc_archive")
        run([cc, c_file, *shlex.split(out([pc, "--cflags", "rgrpc"], env=env)),
             os.path.join(libdir, "librgrpc.a"), *private, "-Wl,--gc-sections", "-o", exe])
        programs["cc librgrpc.a + Libs.private"] = (exe, False)

        sub = os.path.join(tmp, "build-add-subdirectory")
        run([cmake, "-S", src, "-B", sub, f"-DRGRPC_SOURCE_DIR={ROOT}",
             f"-DCMAKE_BUILD_TYPE={cache_value(build, 'CMAKE_BUILD_TYPE')}",
             f"-DRGRPC_CARGO_TARGET_DIR={cache_value(build, 'RGRPC_CARGO_TARGET_DIR')}"],
            stdout=subprocess.DEVNULL)
        run([cmake, "--build", sub, "--target", "consumer_static", "consumer_shared"],
            stdout=subprocess.DEVNULL)
        programs["add_subdirectory consumer_static"] = (os.path.join(sub, "consumer_static"), False)

        # 3. Dependencies.
        prefix_lib = os.path.join(prefix, "lib")
        for label, (exe, shared) in programs.items():
            check_ldd(f, label, exe, prefix_lib, shared, sov)

        # 4. Real calls to a real server.
        proc, port = with_server.start_server("grpcio", None, [])
        try:
            clean = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "RGRPC_LIBRARY")}
            for label, (exe, _) in programs.items():
                r = subprocess.run([exe, f"127.0.0.1:{port}"], env=clean, capture_output=True,
                                   text=True, timeout=120)
                f.check(r.returncode == 0, f"{label}: {(r.stdout + r.stderr).strip()}")
        finally:
            with_server.stop(proc)
    finally:
        if a.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if f.items:
        print(f"\n{len(f.items)} check(s) failed")
        sys.exit(1)
    print("\nall consumer checks passed")


if __name__ == "__main__":
    main()
