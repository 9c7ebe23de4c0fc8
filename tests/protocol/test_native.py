"""protocol.native: the compiled build runs only while it matches its sources."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import protocol
from protocol import native

REPO = Path(__file__).resolve().parents[2]
#: this interpreter's own suffix for extension modules (".cpython-311-x86_64-linux-gnu.so")
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def fake_build(tmp_path: Path) -> Path:
    """A package ``protocol`` with one compiled module, its shared library and a manifest."""
    root = tmp_path / "protocol"
    (root / "aio").mkdir(parents=True)
    (root / "frames.py").write_text("X = 1\n")
    (root / "aio" / "session.py").write_text("Y = 2\n")
    (root / f"frames{SUFFIX}").write_bytes(b"")
    (root / f"_compiled__mypyc{SUFFIX}").write_bytes(b"")
    sources = {
        f"protocol/{name}": hashlib.sha256((root / name).read_bytes()).hexdigest()
        for name in ("frames.py", "aio/session.py")
    }
    manifest = {"modules": ["protocol.frames", "protocol._compiled__mypyc"], "sources": sources}
    (root / native.MANIFEST).write_text(json.dumps(manifest))
    return root


def test_a_build_that_matches_its_sources_runs_compiled(tmp_path: Path) -> None:
    root = fake_build(tmp_path)
    assert native.compiled_modules(root) == {"protocol.frames", "protocol._compiled__mypyc"}
    status, finder = native.select(root, {})
    assert status.compiled and finder is None
    assert str(status) == "compiled with mypyc"


def test_a_changed_source_runs_pure_python_and_names_the_file(tmp_path: Path) -> None:
    root = fake_build(tmp_path)
    # not compiled itself, but beside the ones that are
    (root / "aio" / "session.py").write_text("Y = 3\n")
    status, finder = native.select(root, {})
    assert not status.compiled
    assert "protocol/aio/session.py changed since the compiled build" in status.reason
    assert "make native" in status.reason and status.warn
    assert not native.select(root, {native.ENV: "0"})[0].warn  # pure Python was asked for
    assert finder is not None and finder.names == {"protocol.frames", "protocol._compiled__mypyc"}


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda root: (root / native.MANIFEST).unlink(), "no native-build.json"),
        (lambda root: (root / native.MANIFEST).write_text("{"), "native-build.json is unreadable"),
        (lambda root: (root / f"windows{SUFFIX}").write_bytes(b""), "do not match"),
        (lambda root: (root / "frames.py").unlink(), "protocol/frames.py changed"),
        (
            lambda root: (root / native.MANIFEST).write_text('{"modules": [], "sources": []}'),
            "native-build.json is not a build manifest",
        ),
    ],
    ids=["no-manifest", "bad-manifest", "extra-module", "source-gone", "wrong-shape"],
)
def test_a_build_that_cannot_be_trusted_runs_pure_python(tmp_path: Path, damage, expected) -> None:
    root = fake_build(tmp_path)
    damage(root)
    status, finder = native.select(root, {})
    assert not status.compiled and finder is not None
    assert expected in status.reason


def test_the_environment_turns_a_good_build_off(tmp_path: Path) -> None:
    status, finder = native.select(fake_build(tmp_path), {native.ENV: "0"})
    assert not status.compiled and finder is not None
    assert status.reason == "pure Python (PCG_NATIVE=0)" and not status.warn


@pytest.mark.parametrize("value", ["0", "false", "OFF", " no "])
def test_the_ways_to_say_off(tmp_path: Path, value: str) -> None:
    status, finder = native.select(fake_build(tmp_path), {native.ENV: value})
    assert not status.compiled and finder is not None


def test_a_value_that_is_neither_says_so_and_runs_compiled(tmp_path: Path) -> None:
    status, finder = native.select(fake_build(tmp_path), {native.ENV: "fast"})
    assert status.compiled and finder is None
    assert status.reason == "compiled with mypyc (PCG_NATIVE='fast' is not 0 or 1: taken as 1)"
    assert status.warn


def test_no_build_is_pure_python_with_nothing_to_hide(tmp_path: Path) -> None:
    root = fake_build(tmp_path)
    for path in root.rglob(f"*{SUFFIX}"):
        path.unlink()
    status, finder = native.select(root, {})
    assert not status.compiled and finder is None
    assert status.reason == "pure Python (no compiled build)"


def test_the_source_finder_loads_the_py_file(tmp_path: Path) -> None:
    root = fake_build(tmp_path)
    finder = native.SourceFinder(root, frozenset({"protocol.frames", "protocol._compiled__mypyc"}))
    spec = finder.find_spec("protocol.frames", None)
    assert spec is not None and spec.origin == str(root / "frames.py")
    assert finder.find_spec("protocol.rpc", None) is None  # not its business
    assert finder.find_spec("protocol._compiled__mypyc", None) is None  # no source to load


def test_another_pythons_build_is_not_this_ones(tmp_path: Path) -> None:
    root = fake_build(tmp_path)
    (root / "aio" / "session.cpython-399-x86_64-linux-gnu.so").write_bytes(b"")
    assert native.compiled_modules(root) == {"protocol.frames", "protocol._compiled__mypyc"}
    assert native.select(root, {})[0].compiled


def test_a_package_that_is_not_a_directory_has_no_build(tmp_path: Path) -> None:
    """Imported from a zip, the package's path is no directory: pure Python, no error."""
    assert native.compiled_modules(tmp_path / "app.zip" / "protocol") == frozenset()


# --- the real build, in this checkout (make native) ----------------------------------------

PACKAGE = Path(protocol.__file__).resolve().parent
BUILT = native.compiled_modules(PACKAGE)
needs_build = pytest.mark.skipif(
    not BUILT or native.stale_reason(PACKAGE, BUILT) is not None,
    reason="no up-to-date compiled build in this checkout: `make native` makes one",
)


PROBE = """
import importlib.machinery, sys
import protocol, protocol.aio.session as s, protocol.connection
suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
loaded = [n for n, m in sys.modules.items() if n.startswith("protocol")]
compiled = [n for n in loaded if (getattr(sys.modules[n], "__file__", "") or "").endswith(suffixes)]
# all or none: every protocol module that has a compiled build is loaded from it, or none is
assert compiled == [] or {"protocol.connection", "protocol._compiled__mypyc"} <= set(compiled)
print(protocol.NATIVE.compiled, s.__file__, len(compiled))
"""


def probe(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = PROBE
    clean = {k: v for k, v in os.environ.items() if k not in (native.ENV, "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(cwd), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_build
def test_the_checkout_loads_its_compiled_modules_or_its_sources_on_request() -> None:
    compiled = probe(REPO, {})
    assert compiled.returncode == 0, compiled.stderr
    flag, path, count = compiled.stdout.split()
    assert flag == "True" and path.endswith(SUFFIX) and int(count) >= 8
    pure = probe(REPO, {native.ENV: "0"})
    assert pure.returncode == 0, pure.stderr
    assert pure.stdout.split() == ["False", str(REPO / "protocol" / "aio" / "session.py"), "0"]
    assert "RuntimeWarning" not in pure.stderr  # asked for, not a surprise


@needs_build
def test_an_edited_checkout_runs_its_sources_and_warns(tmp_path: Path) -> None:
    copy = tmp_path / "checkout"
    shutil.copytree(
        REPO / "protocol", copy / "protocol", ignore=shutil.ignore_patterns("__pycache__")
    )
    with open(copy / "protocol" / "connection.py", "a") as f:
        f.write("\n# edited after the build\n")
    run = probe(copy, {})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", str(copy / "protocol" / "aio" / "session.py"), "0"]
    assert "protocol/connection.py changed since the compiled build" in run.stderr
    assert "RuntimeWarning" in run.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) to build a wheel with")
@pytest.mark.skipif(
    not Path(sysconfig.get_paths()["include"], "Python.h").exists(),
    reason="no Python.h for this Python (python3-dev) to build a wheel with",
)
def test_a_wheel_built_with_pcg_native_installs_and_runs_compiled(tmp_path: Path) -> None:
    """What Dockerfile.agent does: PCG_NATIVE=1 pip wheel from the sources it copies."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "*.so", native.MANIFEST)
    for package in ("protocol", "agent", "installer"):
        shutil.copytree(REPO / package, source / package, ignore=skip)
    wheels = tmp_path / "wheels"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
        env={**env, native.ENV: "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("*.whl")
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), wheel],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    assert not list(site.glob("*.so")), "only the package's own files: nothing at the top level"
    manifest = json.loads((site / "protocol" / native.MANIFEST).read_text())
    assert "protocol.aio.session" in manifest["modules"]
    run = probe(site, {})
    assert run.returncode == 0, run.stderr
    flag, path, _ = run.stdout.split()
    assert [flag, path] == ["True", str(site / "protocol" / "aio" / f"session{SUFFIX}")]
