"""Which build of the tunnel's data path runs: compiled with mypyc, or pure Python.

``setup.py`` compiles the modules of the per-message path to C extensions when built with
``PCG_NATIVE=1`` (``make native`` does it in a checkout), and writes ``native-build.json``
beside them: the compiled modules, and a SHA-256 of every source of :mod:`protocol` and
:mod:`protocol.aio` they were compiled from. Python imports an extension module before the
``.py`` file of the same name, so a checkout whose sources changed after the build would run
the old code. On import of :mod:`protocol`, :func:`select` therefore lets the compiled modules
load only while every source still matches the manifest and ``PCG_NATIVE`` is not ``0``;
otherwise all of them load from their ``.py`` files (all or none: compiled modules call each
other's classes directly). A stale build says so once, as a ``RuntimeWarning``.
:data:`STATUS` tells which build runs and why; NATIVE.md has the rest.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

#: the environment variable: "0" runs pure Python even where a fresh compiled build is present
ENV = "PCG_NATIVE"
_OFF = frozenset({"0", "false", "no", "off"})
_ON = frozenset({"", "1", "true", "yes", "on"})
MANIFEST = "native-build.json"
#: where the compiled modules live: the package root and its asyncio binding
_PACKAGE_DIRS = ("", "aio")


@dataclass(frozen=True, slots=True)
class NativeStatus:
    compiled: bool
    #: why: for a pure-Python run, what to do to get the compiled one
    reason: str
    #: whether the user should hear of it: a stale build, or a PCG_NATIVE value it could not read
    warn: bool = False

    def __str__(self) -> str:
        return self.reason


class SourceFinder(importlib.abc.MetaPathFinder):
    """Loads ``names`` from their ``.py`` files under ``root`` even where an extension module
    of the same name sits beside them."""

    def __init__(self, root: Path, names: frozenset[str]) -> None:
        self.root = root
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        source = self.root.parent.joinpath(*fullname.split(".")).with_suffix(".py")
        if not source.is_file():  # the compiled build's shared library: no source, not needed
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def compiled_modules(root: Path) -> frozenset[str]:
    """The modules of the package at ``root`` that have an extension module for this Python
    (a package imported from a zip has none: it is not a directory)."""
    suffixes = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)
    found: set[str] = set()
    for sub in _PACKAGE_DIRS:
        folder = root / sub
        if not folder.is_dir():
            continue
        prefix = ".".join(p for p in (root.name, sub) if p)
        for path in folder.iterdir():
            suffix = next((s for s in suffixes if path.name.endswith(s)), None)
            stem = path.name.removesuffix(suffix) if suffix is not None else ""
            if stem and "." not in stem:  # not another Python's (x.cpython-312-....so)
                found.add(f"{prefix}.{stem}")
    return frozenset(found)


def stale_reason(root: Path, compiled: frozenset[str]) -> str | None:
    """Why the compiled build at ``root`` must not run, or None if it matches its sources."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        modules = manifest["modules"]
        sources = manifest["sources"]
    except FileNotFoundError:
        return f"compiled modules but no {MANIFEST}: rebuild with `make native` or remove them"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{MANIFEST} is unreadable ({exc!r}): rebuild with `make native`"
    if not (
        isinstance(modules, list)
        and all(isinstance(m, str) for m in modules)
        and isinstance(sources, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in sources.items())
    ):
        return f"{MANIFEST} is not a build manifest: rebuild with `make native`"
    if frozenset(modules) != compiled:
        return f"the compiled modules do not match {MANIFEST}: rebuild with `make native`"
    for name, digest in sources.items():
        source = root.parent / name
        try:
            current = hashlib.sha256(source.read_bytes()).hexdigest()
        except OSError:
            current = None
        if current != digest:
            return f"{name} changed since the compiled build: rebuild with `make native`"
    return None


def select(root: Path, environ: Mapping[str, str]) -> tuple[NativeStatus, SourceFinder | None]:
    """The build to run for the package at ``root``, and the finder that makes it pure Python
    (None when the compiled modules may load, or there are none)."""
    compiled = compiled_modules(root)
    if not compiled:
        return NativeStatus(False, "pure Python (no compiled build)"), None
    problem = stale_reason(root, compiled)
    wanted = environ.get(ENV, "1").strip().lower()
    if problem is None and wanted not in _OFF:
        if wanted in _ON:
            return NativeStatus(True, "compiled with mypyc"), None
        note = f"{ENV}={environ[ENV]!r} is not 0 or 1: taken as 1"
        return NativeStatus(True, f"compiled with mypyc ({note})", warn=True), None
    finder = SourceFinder(root, compiled)
    if problem is None:
        return NativeStatus(False, f"pure Python ({ENV}={environ[ENV]})"), finder
    # a stale build is news, unless pure Python is what was asked for
    return NativeStatus(False, f"pure Python: {problem}", warn=wanted not in _OFF), finder


def _install() -> NativeStatus:
    status, finder = select(Path(__file__).resolve().parent, os.environ)
    if finder is not None:
        sys.meta_path.insert(0, finder)
    if status.warn:
        warnings.warn(f"protocol: running {status}", RuntimeWarning, stacklevel=2)
    return status


#: the build this process runs
STATUS = _install()
