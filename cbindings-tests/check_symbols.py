#!/usr/bin/env python3
"""Checks that the shared library exports exactly the functions the header
declares (no undeclared exports, no declared-but-missing functions), and
that the library's soname is set.

    check_symbols.py HEADER LIBRARY.so
"""
import re
import subprocess
import sys


def declared_functions(header_text):
    """Names of the functions the header declares (a declaration starts in
    column 0: `<type> [*]rgrpc_name(`; cmake/rgrpc_link_shared.cmake, which
    makes the version script, uses the same rule)."""
    return set(re.findall(r"^[A-Za-z_][\w\s\*]*?\b(rgrpc_\w+)\(", header_text, re.M))


def main():
    header, lib = sys.argv[1], sys.argv[2]
    declared = declared_functions(open(header).read())
    nm = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True, check=True)
    # nm shows versioned symbols as name@@VERSION (the version node is
    # check_abi.py's business).
    exported = {line.split()[-1].split("@")[0] for line in nm.stdout.splitlines()
                if line.split() and line.split()[-1].startswith("rgrpc_")}
    ok = True
    for name in sorted(exported - declared):
        print(f"exported but not in the header: {name}")
        ok = False
    for name in sorted(declared - exported):
        print(f"declared in the header but not exported: {name}")
        ok = False
    dyn = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True, check=True).stdout
    if "SONAME" not in dyn:
        print("no SONAME in", lib)
        ok = False
    print(f"{len(declared)} declared, {len(exported)} exported")
    sys.exit(0 if ok and declared else 1)


if __name__ == "__main__":
    main()
