"""OpenSSH reverse forwarding (``ssh -R``) on 127.0.0.1 for ``bench/compare.py``.

The "public side" is ``sshd`` (Debian openssh-server) run in the foreground with a config, host
key and authorized key made for the run in a temporary directory; the "agent side" is
``ssh -N -R 127.0.0.1:<fwd>:127.0.0.1:<origin>`` (Debian openssh-client) with a throwaway
client key: the same direction of trust as our agent, which dials out. A caller connects to
127.0.0.1:<fwd>; sshd forwards the connection back through the SSH connection to the origin.

Both run through :func:`_tunnel_support.spawn`, so :func:`_tunnel_support.stop_all_children`
stops them too (also on Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from _tunnel_support import HOST, cpu_seconds, free_port, spawn, stop_process

#: where Debian puts the binaries (``/usr/sbin`` is not on every PATH)
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin"])
#: sshd's privilege separation directory (Debian's build)
PRIVSEP_DIR = Path("/run/sshd")
KEX_LINE = re.compile(
    r"kex: server->client cipher: (?P<cipher>\S+) MAC: (?P<mac>\S+) compression: (?P<comp>\S+)"
)


@dataclass(frozen=True)
class OpenSsh:
    sshd: str
    ssh: str
    ssh_keygen: str


def find_openssh() -> OpenSsh | str:
    """The OpenSSH binaries, or why they cannot be used (a sentence for a skip or an error)."""
    found = {name: shutil.which(name, path=SEARCH_PATH) for name in ("sshd", "ssh", "ssh-keygen")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        return (
            f"OpenSSH not found: {', '.join(missing)} missing (install the Debian packages "
            "openssh-server and openssh-client)"
        )
    if not PRIVSEP_DIR.is_dir():
        try:
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True)
        except OSError as exc:
            return f"sshd needs its privilege separation directory {PRIVSEP_DIR}: {exc}"
    sshd, ssh, keygen = (str(found[n]) for n in ("sshd", "ssh", "ssh-keygen"))
    return OpenSsh(sshd=os.path.abspath(sshd), ssh=ssh, ssh_keygen=keygen)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants, from /proc (empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                ppid = int(stat.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used by ``pid`` and its live descendants."""
    return sum(cpu_seconds(p) or 0.0 for p in process_tree(pid))


@dataclass
class SshReverseForward:
    """sshd on 127.0.0.1 plus ``ssh -N -R`` forwarding 127.0.0.1:``forward_port`` (at sshd)
    to 127.0.0.1:``origin_port`` (at the ssh client)."""

    openssh: OpenSsh
    workdir: Path
    origin_port: int
    sshd_port: int = 0
    forward_port: int = 0
    sshd: subprocess.Popen[bytes] | None = None
    client: subprocess.Popen[bytes] | None = None
    #: what the connection negotiated and what the client is configured with
    info: dict[str, str] = field(default_factory=dict)

    def _client_args(self, log: Path) -> list[str]:
        return [
            self.openssh.ssh, "-F", "none", "-N", "-E", str(log),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
            "-i", str(self.workdir / "client_key"), "-p", str(self.sshd_port),
        ]  # fmt: skip

    def _keygen(self, name: str) -> None:
        path = self.workdir / name
        subprocess.run(
            [self.openssh.ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", "pcg-bench",
             "-f", str(path)],
            check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, timeout=30,
        )  # fmt: skip

    async def start(self, timeout: float = 30.0) -> None:
        user = pwd.getpwuid(os.getuid()).pw_name  # sshd checks the account, not $USER
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._keygen("host_key")
        self._keygen("client_key")
        authorized = self.workdir / "authorized_keys"
        authorized.write_bytes((self.workdir / "client_key.pub").read_bytes())
        self.sshd_port = free_port()
        config = self.workdir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {HOST}",
                    f"Port {self.sshd_port}",
                    f"HostKey {self.workdir / 'host_key'}",
                    f"AuthorizedKeysFile {authorized}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "AllowTcpForwarding yes",
                    "GatewayPorts no",
                    "StrictModes no",
                    "UsePAM no",
                    f"PidFile {self.workdir / 'sshd.pid'}",
                    f"AllowUsers {user}",
                    "",
                ]
            )
        )
        sshd_log = self.workdir / "sshd.log"
        with open(sshd_log, "ab") as log:
            self.sshd = spawn([self.openssh.sshd, "-D", "-e", "-f", str(config)], stderr=log)
        await _wait_for_text(sshd_log, "Server listening on", self.sshd, timeout, "sshd")

        # A probe connection with -v: the cipher both ends chose (the same defaults as the
        # forwarding connection below, which runs without debug logging), and a clear error
        # when authentication fails.
        probe_log = self.workdir / "ssh-probe.log"
        probe = spawn([*self._client_args(probe_log), "-v", f"{user}@{HOST}"])
        try:
            await _wait_for_text(probe_log, "Authenticated to", probe, timeout, "ssh (probe)")
        finally:
            stop_process(probe)
        match = KEX_LINE.search(_text(probe_log))
        if match:
            self.info.update(cipher=match["cipher"], mac=match["mac"], compression=match["comp"])
        self.info.update(_client_defaults(self.openssh.ssh))
        self.info["version"] = _version(self.openssh.ssh)

        self.forward_port = free_port()
        client_log = self.workdir / "ssh.log"
        forward = f"{HOST}:{self.forward_port}:{HOST}:{self.origin_port}"
        self.client = spawn([*self._client_args(client_log), "-R", forward, f"{user}@{HOST}"])
        deadline = time.monotonic() + timeout
        while not await _accepts(self.forward_port):
            if self.client.poll() is not None:
                raise RuntimeError(f"ssh -R exited ({self.client.returncode}){_tail(client_log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"ssh -R: no forward within {timeout}s{_tail(client_log)}")
            await asyncio.sleep(0.05)

    def cpu_seconds(self) -> float:
        """CPU seconds of the ssh client and of sshd with its per-connection processes."""
        procs = [p for p in (self.sshd, self.client) if p is not None]
        return sum(tree_cpu_seconds(p.pid) for p in procs)

    def stop(self) -> None:
        leftovers = process_tree(self.sshd.pid)[1:] if self.sshd is not None else []
        stop_process(self.client)  # the connection's sshd process exits with it
        stop_process(self.sshd)
        for pid in leftovers:  # sshd's own children, should one outlive its connection
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    if b"sshd" in cmdline.read():
                        os.kill(pid, signal.SIGTERM)


def _client_defaults(ssh: str) -> dict[str, str]:
    """The client's configured cipher preference and compression (``ssh -G``)."""
    try:
        out = subprocess.run(
            [ssh, "-F", "none", "-G", HOST], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    values = dict(line.partition(" ")[::2] for line in out.splitlines())
    return {
        "ciphers_offered": values.get("ciphers", "?"),
        "compression_configured": values.get("compression", "?"),
    }


def _version(ssh: str) -> str:
    try:
        done = subprocess.run([ssh, "-V"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (done.stderr or done.stdout).strip().split(",")[0]


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 2)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _wait_for_text(
    log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while text not in _text(log):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}){_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: no {text!r} within {timeout}s{_tail(log)}")
        await asyncio.sleep(0.05)


def _text(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


def _tail(log: Path) -> str:
    text = _text(log)
    return ":\n" + text[-3000:] if text else ""
