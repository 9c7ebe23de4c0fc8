"""Real subprocesses for tests: the hub (`pcg-sim hub`), the agent (`pcg-agent`), tinyproxy.

Waits are async (they poll with asyncio.sleep) so that servers running in the test's own
event loop keep serving while a test waits on a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support.net import free_port

BIN = Path(sys.executable).parent


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(extra or {})
    return env


class HubProcess:
    """`pcg-sim hub` on loopback, restartable on the same ports."""

    def __init__(
        self,
        workdir: Path,
        tokens: dict[str, str],
        *,
        tls: tuple[Path, Path] | None = None,
        ping_interval: float = 2.0,
        ping_timeout: float = 2.0,
        port: int | None = None,
        connect_port: int | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir
        self.extra_args = extra_args
        self.port = port or free_port()
        self.connect_port = connect_port or free_port()
        self.tokens_file = workdir / "hub-tokens.yaml"
        self.tokens_file.write_text(yaml.safe_dump(tokens))
        self.tls = tls
        self.ping = (ping_interval, ping_timeout)
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] = {}
        self.log_path = workdir / f"hub-{self.port}.log"
        self.starts = 0

    @property
    def tunnel_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/v1/tunnel"

    @property
    def api_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/v1"

    @property
    def connect_addr(self) -> tuple[str, int]:
        return ("127.0.0.1", self.connect_port)

    def start(self, timeout: float = 15.0) -> None:
        args = [
            str(BIN / "pcg-sim"), "hub", "--host", "127.0.0.1",
            "--port", str(self.port), "--connect-port", str(self.connect_port),
            "--tokens-file", str(self.tokens_file), "--debug-endpoints",
            "--ping-interval", str(self.ping[0]), "--ping-timeout", str(self.ping[1]),
        ]  # fmt: skip
        args += list(self.extra_args)
        if self.tls:
            args += ["--cert", str(self.tls[0]), "--key", str(self.tls[1])]
        else:
            args.append("--insecure-ws")
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=_env()
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline()
                if line:
                    self.ready = json.loads(line)
                    return
            if self.proc.poll() is not None:
                break
        raise RuntimeError(f"hub did not start: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


class AgentProcess:
    """`pcg-agent -c agent.yaml`, with its log kept for assertions."""

    def __init__(self, workdir: Path, config: dict[str, Any], env: dict[str, str] | None = None):
        self.workdir = workdir
        self.config_path = workdir / f"agent-{config['gateway_name']}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"agent-{config['gateway_name']}.log"
        self.env = _env(env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [str(BIN / "pcg-agent"), "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def count(self, regex: str) -> int:
        return len(re.findall(regex, self.log))

    async def wait_log(self, regex: str, timeout: float = 10.0, count: int = 1) -> float:
        """Wait until ``regex`` has matched ``count`` times; returns the monotonic time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(regex) >= count:
                return time.monotonic()
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}:\n{self.log[-3000:]}")
            await asyncio.sleep(0.02)
        raise AssertionError(
            f"no {regex!r} x{count} in the agent log within {timeout}s:\n{self.log[-3000:]}"
        )

    async def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.terminate()
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("agent did not exit after SIGTERM")
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Tinyproxy:
    """A real tinyproxy on a free loopback port, configured by the test."""

    def __init__(self, workdir: Path, auth: tuple[str, str] | None = None) -> None:
        exe = shutil.which("tinyproxy") or (
            "/usr/bin/tinyproxy" if os.path.exists("/usr/bin/tinyproxy") else None
        )
        if exe is None:
            raise FileNotFoundError("tinyproxy is not installed (apt-get install -y tinyproxy)")
        self.exe = exe
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / f"tinyproxy-{self.port}.log"
        self.conf = workdir / f"tinyproxy-{self.port}.conf"
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Allow 127.0.0.1",
            f'LogFile "{self.log_path}"',
            "LogLevel Connect",
            "MaxClients 2000",
            "Timeout 600",
        ]
        if auth:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "-d", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        import socket

        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("tinyproxy did not start listening")

    @property
    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def connects_to(self, port: int) -> int:
        return len(re.findall(rf"Request \(file descriptor \d+\): CONNECT [^ ]+:{port} ", self.log))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
