"""The core never does I/O and never reads a clock; imports flow one way (STYLE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PROTOCOL = Path(__file__).resolve().parents[2] / "protocol"
CORE = ["codes", "connection", "events", "exceptions", "frames", "rpc", "state", "windows"]
FORBIDDEN_IN_CORE = {
    "asyncio", "socket", "ssl", "select", "selectors", "threading", "time", "datetime",
    "subprocess", "os", "random", "secrets", "uvloop", "websockets", "aiohttp",
}  # fmt: skip


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_core_modules_exist() -> None:
    for name in CORE:
        assert (PROTOCOL / f"{name}.py").is_file(), name


def test_core_imports_no_io_and_no_clock() -> None:
    for name in [*CORE, "__init__"]:
        for module in imported_modules(PROTOCOL / f"{name}.py"):
            top = module.split(".")[0]
            assert top not in FORBIDDEN_IN_CORE, f"protocol/{name}.py imports {module}"


def test_core_imports_only_the_core_from_protocol() -> None:
    allowed = {"protocol", *(f"protocol.{name}" for name in CORE)}
    for name in CORE:
        for module in imported_modules(PROTOCOL / f"{name}.py"):
            if module.startswith("protocol"):
                assert module in allowed, f"protocol/{name}.py imports {module}"


def test_protocol_never_imports_agent_or_installer() -> None:
    for path in PROTOCOL.rglob("*.py"):
        for module in imported_modules(path):
            assert module.split(".")[0] not in {"agent", "installer"}, f"{path} imports {module}"


def test_the_package_root_imports_only_the_build_selector() -> None:
    """protocol/__init__ reads files on import for one reason: protocol.native picks the
    compiled or the pure-Python build before any core module loads (protocol/NATIVE.md). No
    core module imports it."""
    assert imported_modules(PROTOCOL / "__init__.py") - {"__future__"} == {"protocol.native"}
    for name in CORE:
        assert "protocol.native" not in imported_modules(PROTOCOL / f"{name}.py"), name
