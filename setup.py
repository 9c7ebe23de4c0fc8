"""Build hook: compile the tunnel's data path with mypyc when ``PCG_NATIVE=1``.

Everything else about the package is in pyproject.toml. Without ``PCG_NATIVE=1`` (the default)
the package is pure Python. With it, the modules in :data:`NATIVE_MODULES` are compiled to C
extensions from the same typed source, and a manifest of the sources they were built from is
written next to them; :mod:`protocol.native` loads the compiled modules only while every source
still matches it (docs/native.md says why and how).
"""

from __future__ import annotations

import hashlib
import json
import os
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


def manifest() -> dict[str, object]:
    files = sorted({p for pattern in MANIFEST_SOURCES for p in ROOT.glob(pattern)})
    return {
        "modules": [
            *(m.removesuffix(".py").replace("/", ".") for m in NATIVE_MODULES),
            f"{GROUP}__mypyc",
        ],
        "sources": {
            p.relative_to(ROOT).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files
        },
    }


class BuildNative(build_ext):
    """build_ext that also writes the manifest where the compiled modules go."""

    def run(self) -> None:
        super().run()
        if not self.extensions:
            return
        text = json.dumps(manifest(), indent=1, sort_keys=True) + "\n"
        targets = [ROOT / MANIFEST] if self.inplace else [Path(self.build_lib) / MANIFEST]
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)


def native_extensions() -> list[object]:
    if os.environ.get("PCG_NATIVE", "0") != "1":
        return []
    from mypyc.build import mypycify

    # mypy's own settings for the build: the package's strict ones are for `make typecheck`
    config = Path(tempfile.mkdtemp(prefix="pcg-native-")) / "mypy.ini"
    config.write_text("[mypy]\npython_version = 3.11\nignore_missing_imports = True\n")
    return list(
        mypycify(
            ["--config-file", str(config), *NATIVE_MODULES],
            opt_level="3",
            group_name=GROUP,
            target_dir="build/native",  # the generated C
        )
    )


setup(ext_modules=native_extensions(), cmdclass={"build_ext": BuildNative})
