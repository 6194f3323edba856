"""The package version and the soname of the librgrpc it was written for.

Both derive from the workspace version in the repository's Cargo.toml, the
one place the version is written. Run from a checkout, this file reads
Cargo.toml; in a built package (wheel, ``pip install``) setup.py has replaced
it by the two constants.
"""

import os
import re


def version_from_cargo_toml(path):
    """``[workspace.package] version`` of the Cargo.toml at ``path``, or None."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"^\[workspace\.package\]\n(?:[^\[\n][^\n]*\n|\n)*?version = \"([^\"]+)\"",
                  text, re.M)
    return m.group(1) if m else None


def soname(version):
    """librgrpc's soname for a version: ``librgrpc.so.0.<minor>`` while 0.x
    (a minor release may break the ABI), ``librgrpc.so.<major>`` from 1.0."""
    major, minor = version.split(".")[:2]
    return "librgrpc.so.0.%s" % minor if major == "0" else "librgrpc.so.%s" % major


_CARGO_TOML = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "Cargo.toml")

VERSION = version_from_cargo_toml(_CARGO_TOML) or "0.0.0+unknown"
SONAME = soname(VERSION)
