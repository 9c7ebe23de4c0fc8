"""Thin wrappers over ``ip``, ``iptables``, ``tc``, ``conntrack`` and namespace processes.

Every command goes through :func:`run`, which raises :class:`CommandFailed` with the command
line and its stderr. Nothing here knows the topology: it takes namespace and interface names.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from protocol.simulator.nat.exceptions import CommandFailed, NetnsUnavailable

NETNS_DIR = Path("/run/netns")

#: the tool each command comes from, for the "what to do" part of a missing-tool error
PACKAGES: dict[str, str] = {
    "ip": "iproute2",
    "tc": "iproute2",
    "iptables": "iptables",
    "iptables-restore": "iptables",
    "conntrack": "conntrack",
    "tinyproxy": "tinyproxy",
}


def tool(name: str) -> str:
    """Absolute path of a system tool; looks in the sbin directories a non-login PATH lacks."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        package = PACKAGES.get(name, name)
        raise NetnsUnavailable(
            f"{name!r} was not found on PATH or in /usr/sbin; install it "
            f"(Debian: apt-get install {package})"
        )
    return found


def run(
    argv: Sequence[str],
    *,
    namespace: str | None = None,
    check: bool = True,
    input: str | None = None,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """Run a command (inside ``namespace`` when given); raise CommandFailed when it fails."""
    full = [tool(argv[0]), *argv[1:]]
    if namespace is not None:
        full = exec_argv(namespace, full)
    try:
        result = subprocess.run(
            full, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(full, -1, f"timed out after {timeout:g}s") from exc
    if check and result.returncode != 0:
        raise CommandFailed(full, result.returncode, result.stderr)
    return result


def iptables_restore(namespace: str, rules: str, *, replace_all: bool = False) -> None:
    """Load ``iptables-restore`` input inside ``namespace``, atomically per table. Without
    ``replace_all`` only the chains the input names are touched (``--noflush``). ``-w``: a
    legacy iptables shares one lock file with the host's firewall tools."""
    argv = ["iptables-restore", "-w", "5"] + ([] if replace_all else ["--noflush"])
    run(argv, namespace=namespace, input=rules)


def exec_argv(namespace: str, argv: Sequence[str]) -> list[str]:
    """The command line that runs ``argv`` inside ``namespace``."""
    return [tool("ip"), "netns", "exec", namespace, *argv]


def check_support() -> None:
    """Raise NetnsUnavailable saying what is missing unless we can build namespaces."""
    if os.geteuid() != 0:
        raise NetnsUnavailable(
            f"the NAT simulator needs root (running as uid {os.geteuid()}): it creates network "
            "namespaces, veth pairs and iptables rules; run it with sudo, as root in a VM, or "
            "in a container started with --privileged"
        )
    if not Path("/proc/self/ns/net").exists():
        raise NetnsUnavailable(
            "this kernel has no network namespaces (/proc/self/ns/net is missing); "
            "use a kernel built with CONFIG_NET_NS=y"
        )
    for name in ("ip", "iptables", "iptables-restore", "tc"):
        tool(name)


def list_namespaces() -> set[str]:
    """Names of the namespaces ``ip netns`` knows (files under /run/netns)."""
    try:
        return {entry.name for entry in NETNS_DIR.iterdir()}
    except FileNotFoundError:
        return set()


def add_namespace(name: str) -> None:
    try:
        run(["ip", "netns", "add", name])
    except CommandFailed as exc:
        raise NetnsUnavailable(
            f"could not create network namespace {name!r}: {exc.stderr or exc}; the kernel "
            "needs CONFIG_NET_NS, and a container needs CAP_SYS_ADMIN (--privileged)"
        ) from exc


def delete_namespace(name: str) -> None:
    run(["ip", "netns", "delete", name], check=False)


def namespace_pids(name: str) -> list[int]:
    result = run(["ip", "netns", "pids", name], check=False)
    return [int(token) for token in result.stdout.split() if token.isdigit()]


def cmdline(pid: int) -> list[str]:
    """A process's argv, or [] when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def terminate(pids: Iterable[int], *, grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL what is still alive after ``grace`` seconds."""
    pending = [pid for pid in pids if is_alive(pid)]
    for pid in pending:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        time.sleep(0.02)
        pending = [pid for pid in pending if is_alive(pid)]
    for pid in pending:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, signum: signal.Signals) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def read_sysctl(namespace: str, key: str) -> str | None:
    """A sysctl as seen inside ``namespace`` (dotted key), or None when it does not exist."""
    path = "/proc/sys/" + key.replace(".", "/")
    result = run(["cat", path], namespace=namespace, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def write_sysctl(namespace: str, key: str, value: str, *, missing_ok: bool = False) -> None:
    """Set a sysctl inside ``namespace``. /proc/sys/net follows the opener's namespace, so a
    ``tee`` started inside it writes that namespace's copy."""
    path = "/proc/sys/" + key.replace(".", "/")
    if missing_ok and read_sysctl(namespace, key) is None:
        return
    run(["tee", path], namespace=namespace, input=f"{value}\n")


def tcp_listening(namespace: str, port: int, address: str | None = None) -> bool:
    """True when a TCP socket in ``namespace`` listens on ``port`` (and ``address``)."""
    table = run(["cat", "/proc/net/tcp"], namespace=namespace).stdout
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A":  # 0A = TCP_LISTEN
            continue
        local_hex, _, port_hex = fields[1].partition(":")
        if int(port_hex, 16) != port:
            continue
        if address is None:
            return True
        # /proc/net/tcp prints the address as a host-order (little-endian) u32
        local = ".".join(str(b) for b in reversed(bytes.fromhex(local_hex)))
        if local in (address, "0.0.0.0"):
            return True
    return False


def wait_tcp_listening(
    namespace: str, port: int, address: str | None = None, *, timeout: float = 5.0
) -> None:
    deadline = time.monotonic() + timeout
    while not tcp_listening(namespace, port, address):
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"nothing listens on {address or '*'}:{port} in namespace {namespace!r} "
                f"after {timeout:g}s"
            )
        time.sleep(0.05)
