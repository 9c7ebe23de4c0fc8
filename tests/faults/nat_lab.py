"""TCP peers (tests/faults/tcptool.py) started inside the NAT topology's hosts."""

from __future__ import annotations

import queue
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

from protocol.simulator.nat import Host, NatTopology

TCPTOOL = Path(__file__).with_name("tcptool.py")


def unique_prefix() -> str:
    """8 characters: a name nobody else uses, so parallel runs never collide."""
    return "t" + secrets.token_hex(3) + "x"


class Peer:
    """A tcptool process inside a host, its stdout lines read by a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, prefix: str, timeout: float = 3.0) -> str:
        """The next line starting with ``prefix``; fails listing what came instead."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no {prefix!r} line within {timeout:g}s; got {self.lines}")

    def drain(self, wait: float = 0.0) -> list[str]:
        """Lines that arrived (within ``wait`` seconds), without blocking longer."""
        deadline = time.monotonic() + wait
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return self.lines
            if line is None:
                return self.lines
            self.lines.append(line)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=5)


class TcpLab:
    """Starts tcptool servers and clients inside a topology's hosts."""

    def __init__(self, topology: NatTopology) -> None:
        self.topology = topology
        self._peers: list[Peer] = []

    def _argv(self, *args: object) -> list[str]:
        return [sys.executable, str(TCPTOOL), *(str(arg) for arg in args)]

    def _start(self, host: Host, argv: list[str]) -> Peer:
        process = self.topology.popen(
            host,
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        peer = Peer(process)
        self._peers.append(peer)
        return peer

    def serve(self, host: Host, port: int, *, lifetime: float = 50.0) -> Peer:
        address = self.topology.address(host)
        peer = self._start(host, self._argv("serve", address, port, "--lifetime", lifetime))
        peer.expect("LISTENING")
        return peer

    def session(self, host: Host, address: str, port: int, *, timeout: float = 1.0) -> Peer:
        peer = self._start(host, self._argv("session", address, port, "--timeout", timeout))
        peer.expect("CONNECTED", timeout=timeout + 2)
        return peer

    def connect(
        self,
        host: Host,
        address: str,
        port: int,
        *,
        timeout: float = 1.0,
        proxy: str | None = None,
        auth: str | None = None,
    ) -> str:
        """One round trip from ``host``; returns tcptool's "OK ..." or "FAIL ..." line."""
        args: list[object] = ["connect", address, port, "--timeout", timeout]
        if proxy is not None:
            args += ["--proxy", proxy]
        if auth is not None:
            args += ["--auth", auth]
        result = self.topology.run(host, self._argv(*args), timeout=timeout * 3 + 5)
        return (result.stdout.strip().splitlines() or [f"FAIL no output: {result.stderr}"])[-1]

    def close(self) -> None:
        for peer in self._peers:
            peer.close()
