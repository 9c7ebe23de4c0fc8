"""Build hook: compile the tunnel's data path with mypyc when ``PCG_NATIVE=1``.

Everything else about the package is in pyproject.toml. Without ``PCG_NATIVE=1`` (the default)
the package is pure Python. With it, the modules in :data:`NATIVE_MODULES` are compiled to C
extensions from the same typed source, and a manifest of the sources they were built from is
written next to them; :mod:`protocol.native` loads the compiled modules only while every source
still matches it (protocol/NATIVE.md says why and how).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent

#: the per-message path of both tunnel ends: the sans-I/O core and the asyncio layer that
#: drives it for a websocket channel and a relayed socket
NATIVE_MODULES = (
    "protocol/codes.py",
    "protocol/state.py",
    "protocol/events.py",
    "protocol/frames.py",
    "protocol/windows.py",
    "protocol/connection.py",
    "protocol/aio/wsframes.py",
    "protocol/aio/channel.py",
    "protocol/aio/stream.py",
    "protocol/aio/splice.py",
    "protocol/aio/session.py",
)
#: the compiled code may bind constants of any module beside it: all of them are in the manifest
MANIFEST_SOURCES = ("protocol/*.py", "protocol/aio/*.py")
MANIFEST = "protocol/native-build.json"
#: the shared library all compiled modules load: inside the package, so it imports from wherever
#: the package does (a top-level one is not found from an editable install's entry points)
GROUP = "protocol._compiled"


def manifest() -> str:
    """The manifest's text: the compiled modules and a hash of every source beside them."""
    files = sorted(p for pattern in MANIFEST_SOURCES for p in ROOT.glob(pattern))
    content = {
        "modules": [
            *(m.removesuffix(".py").replace("/", ".") for m in NATIVE_MODULES),
            f"{GROUP}__mypyc",
        ],
        "sources": {
            p.relative_to(ROOT).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files
        },
    }
    return json.dumps(content, indent=1, sort_keys=True) + "\n"


#: the manifest of the sources being compiled, taken before the compiler reads them: a source
#: edited during the build then fails the check at run time (pure Python) instead of passing it
_BUILT_FROM: str | None = None


class BuildNative(build_ext):
    """build_ext that also writes the manifest where the compiled modules go."""

    def run(self) -> None:
        super().run()
        if not self.extensions or _BUILT_FROM is None:
            return
        target = ROOT / MANIFEST if self.inplace else Path(self.build_lib) / MANIFEST
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_BUILT_FROM)


def wants_native() -> bool:
    value = os.environ.get("PCG_NATIVE", "0").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise SystemExit(f"PCG_NATIVE={value!r}: set 1 to compile the data path with mypyc, or 0")


def native_extensions() -> list[object]:
    global _BUILT_FROM
    # only a build compiles: pip also runs this file for the metadata, which needs no C
    if not wants_native() or {"egg_info", "dist_info"} & set(sys.argv[1:]):
        return []
    from mypyc.build import mypycify

    _BUILT_FROM = manifest()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    with tempfile.TemporaryDirectory(prefix="pcg-native-") as tmp:
        # mypy's own settings for the build: the package's strict ones are `make typecheck`'s
        config = Path(tmp) / "mypy.ini"
        config.write_text(f"[mypy]\npython_version = {version}\nignore_missing_imports = True\n")
        return list(
            mypycify(
                ["--config-file", str(config), *NATIVE_MODULES],
                opt_level="3",
                group_name=GROUP,
                target_dir="build/native",  # the generated C
            )
        )


setup(ext_modules=native_extensions(), cmdclass={"build_ext": BuildNative})
