#!/usr/bin/env python3
"""The ABI check: fails on an incompatible change to the C ABI unless the
soname changed with it (the policy is in abi/README.md).

    check_abi.py --library LIB [--header include/rgrpc.h]
    check_abi.py --update        (at a release: record the baseline)

The baseline is abi/librgrpc.so.<soversion>.abi: libabigail's description
(abidw) of the ABI of the last release with that soname. It is made from
the header, not from the Rust library: a C++ stub library with one empty
definition per declared function, compiled with debug information and linked
with the same soname and version script as librgrpc. Its DWARF holds exactly
what a C/C++ program compiled against rgrpc.h depends on (every function's
parameter and return types, enumerator values, typedefs; the integer macros
are added as an enum), where the Rust library's own DWARF describes the Rust
types behind the opaque handles, which may change freely. Then:

1. abidiff baseline stub: removed functions, changed signatures, changed
   enumerator values or versions fail; added functions and harmless changes
   (such as a new enumerator) pass (--no-added-syms).
2. The real library LIB: its soname is librgrpc.so.<soversion> (from
   Cargo.toml), every rgrpc_ function it exports carries the version node
   RGRPC_<soversion>, and every function of the baseline is among them.
   (cbindings-tests/check_symbols.py checks that it exports nothing else.)

With no baseline for the current soname but one for an older soname, the
soname was bumped: incompatible changes are allowed, the check reports the
difference to the newest older baseline and passes. `--update` writes the
baseline for the current soname (at a release).
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ABI_DIR = os.path.join(ROOT, "abi")
sys.path.insert(0, HERE)
from check_symbols import declared_functions  # noqa: E402

DECL = re.compile(r"^([A-Za-z_][\w \*]*?[ \*])(rgrpc_\w+)\(([^;]*?)\);", re.M | re.S)
# Object-like integer macros (flags such as RGRPC_SEND_LAST) are ABI too, but
# DWARF has no macros: the stub turns them into the enumerators of an enum
# that a stub-only function takes, so libabigail compares their values. The
# version macros change with every release and are left out.
MACRO = re.compile(r"^#define (RGRPC_[A-Z0-9_]+)[ \t]+[^\s\"]", re.M)
MACRO_SKIP = ("RGRPC_H", "RGRPC_VERSION_")
STUB_ONLY = "rgrpc_abi_macros"


def cargo_version():
    text = open(os.path.join(ROOT, "Cargo.toml")).read()
    m = re.search(r"^\[workspace\.package\]\n(?:[^\[\n][^\n]*\n|\n)*?version = \"([^\"]+)\"",
                  text, re.M)
    if not m:
        sys.exit("check_abi.py: no [workspace.package] version in Cargo.toml")
    return m.group(1)


def soversion(version):
    major, minor = version.split(".")[:2]
    return f"0.{minor}" if major == "0" else major


def stub_source(header_text):
    """C++ source defining every function the header declares, doing nothing."""
    out = ['#include "rgrpc.h"', ""]
    names = set()
    for ret, name, params in DECL.findall(header_text):
        names.add(name)
        body = "{}" if ret.strip() == "void" else "{ return {}; }"
        out.append(f'extern "C" {ret}{name}({params}) {body}')
    missing = declared_functions(header_text) - names
    if missing:
        sys.exit(f"check_abi.py: could not parse the declarations of {sorted(missing)}")
    macros = [m for m in MACRO.findall(header_text) if not m.startswith(MACRO_SKIP)]
    out.append("enum rgrpc_abi_macro {")
    out += [f"  RGRPC_ABI_{m} = ({m})," for m in macros]
    out.append("};")
    out.append(f'extern "C" void {STUB_ONLY}(enum rgrpc_abi_macro) {{}}')
    names.add(STUB_ONLY)
    return "\n".join(out) + "\n", sorted(names)


def build_stub(header, soname, node, workdir):
    text = open(header).read()
    src, names = stub_source(text)
    cpp = os.path.join(workdir, "abi_stub.cpp")
    with open(cpp, "w") as f:
        f.write(src)
    vmap = os.path.join(workdir, "abi_stub.map")
    with open(vmap, "w") as f:
        f.write(f"{node} {{\n  global:\n" + "".join(f"    {n};\n" for n in names)
                + "  local:\n    *;\n};\n")
    lib = os.path.join(workdir, soname)
    cxx = os.environ.get("CXX", "c++")
    # Compiled in workdir by a relative name: the baseline names no temporary path.
    subprocess.run([cxx, "-std=c++11", "-g", "-O0", "-fPIC", "-shared", "-w",
                    "-I", os.path.dirname(os.path.abspath(header)), os.path.basename(cpp),
                    "-o", lib, f"-Wl,-soname,{soname}", f"-Wl,--version-script={vmap}"],
                   check=True, cwd=workdir)
    return lib


def abidw(lib, out):
    subprocess.run(["abidw", "--no-corpus-path", "--no-comp-dir-path", "--no-show-locs",
                    "--type-id-style", "hash", "--out-file", out, lib], check=True)


def real_library_checks(lib, soname, node, baseline_names):
    ok = True
    dyn = subprocess.run(["readelf", "-d", "-W", lib], capture_output=True, text=True,
                         check=True).stdout
    if f"Library soname: [{soname}]" not in dyn:
        print(f"FAILED  {lib}: soname is not {soname}")
        ok = False
    syms = subprocess.run(["readelf", "--dyn-syms", "-W", lib], capture_output=True, text=True,
                          check=True).stdout
    exported = {}
    for line in syms.splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[6] != "UND" and parts[7].startswith("rgrpc_"):
            name, _, version = parts[7].partition("@")
            exported[name] = version.lstrip("@")
    wrong = sorted(n for n, v in exported.items() if v != node)
    if wrong:
        print(f"FAILED  {lib}: exported without the version node {node}: {wrong}")
        ok = False
    gone = sorted(set(baseline_names) - set(exported))
    if gone:
        print(f"FAILED  {lib}: functions of the baseline not exported: {gone}")
        ok = False
    if ok:
        print(f"ok      {lib}: soname {soname}, {len(exported)} functions, all in {node}, "
              f"the baseline's {len(baseline_names)} among them")
    return ok


def baseline_functions(path):
    text = open(path).read()
    return sorted(set(re.findall(r"<elf-symbol name='(rgrpc_\w+)'", text)) - {STUB_ONLY})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", help="the built librgrpc.so (not needed with --update)")
    ap.add_argument("--header", default=os.path.join(ROOT, "include", "rgrpc.h"))
    ap.add_argument("--update", action="store_true",
                    help="write the baseline for the current soname (at a release)")
    a = ap.parse_args()
    if not a.update and not a.library:
        ap.error("--library is required")
    for tool in ("abidw", "abidiff", "readelf"):
        if not shutil.which(tool):
            sys.exit(f"check_abi.py: {tool} not found (Debian: apt-get install abigail-tools binutils)")

    version = cargo_version()
    sov = soversion(version)
    soname, node = f"librgrpc.so.{sov}", f"RGRPC_{sov}"
    baseline = os.path.join(ABI_DIR, f"{soname}.abi")
    work = tempfile.mkdtemp(prefix="rgrpc-abi-")
    try:
        stub = build_stub(a.header, soname, node, work)
        current = os.path.join(work, f"{soname}.abi")
        abidw(stub, current)
        if a.update:
            os.makedirs(ABI_DIR, exist_ok=True)
            shutil.copyfile(current, baseline)
            print(f"wrote {os.path.relpath(baseline, ROOT)} (rgrpc {version})")
            return
        ok = True
        if os.path.exists(baseline):
            r = subprocess.run(["abidiff", "--no-added-syms", baseline, current],
                               capture_output=True, text=True)
            if r.returncode == 0:
                print(f"ok      header ABI compatible with {os.path.relpath(baseline, ROOT)}")
            else:
                print(r.stdout + r.stderr)
                print(f"FAILED  incompatible change to the ABI of {soname} (abidiff exit "
                      f"{r.returncode}): restore it, or bump the minor version in Cargo.toml "
                      "(a new soname) if the break is intended (abi/README.md)")
                ok = False
            ok = real_library_checks(a.library, soname, node, baseline_functions(baseline)) and ok
        else:
            older = sorted(glob.glob(os.path.join(ABI_DIR, "librgrpc.so.*.abi")), key=os.path.getmtime)
            if not older:
                sys.exit(f"check_abi.py: no baseline in {ABI_DIR} (make one with --update)")
            prev = older[-1]
            print(f"note    no baseline for {soname}: the soname changed since "
                  f"{os.path.basename(prev)[:-4]}, so incompatible changes are allowed. "
                  f"Changes against it, for the release notes:")
            # The header now, under the old soname and node: only real changes show.
            prev_sov = os.path.basename(prev)[len("librgrpc.so."):-len(".abi")]
            os.makedirs(os.path.join(work, "prev"))
            same_names = os.path.join(work, "prev", "current.abi")
            abidw(build_stub(a.header, f"librgrpc.so.{prev_sov}", f"RGRPC_{prev_sov}",
                             os.path.join(work, "prev")), same_names)
            r = subprocess.run(["abidiff", prev, same_names], capture_output=True, text=True)
            print(r.stdout + r.stderr)
            print(f"note    at the release of {version}, record the baseline: "
                  "cbindings-tests/check_abi.py --update")
            ok = real_library_checks(a.library, soname, node, []) and ok
        sys.exit(0 if ok else 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
