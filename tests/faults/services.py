"""Subprocesses of the fault suite and the soak: a log file each, log waits, /proc figures.

A :class:`Service` is started by a launcher: :class:`subprocess.Popen` for loopback, or
``functools.partial(topology.popen, host)`` to run it inside a host of the NAT topology
(``ip netns exec`` execs in place, so the pid is the command's own pid either way).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the checkout (tests/faults/ -> tests/ -> root): ``python -m tests.faults...`` runs from here
REPO_ROOT = Path(__file__).resolve().parents[2]
#: pcg-agent and pcg-sim next to the interpreter running the tests
BIN = Path(sys.executable).parent

Launcher = Callable[..., "subprocess.Popen[Any]"]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without proxy variables (a test's agent uses only the proxy it is given)."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(extra or {})
    return env


@dataclass(frozen=True, slots=True)
class ProcessFigures:
    fds: int
    rss_kib: int
    #: what the descriptors are: "socket", "pipe", "anon_inode:[eventpoll]", a file path...
    fd_kinds: tuple[tuple[str, int], ...] = ()


def _fd_kind(target: str) -> str:
    return target.partition(":")[0] if target.startswith(("socket:", "pipe:")) else target


def process_figures(pid: int) -> ProcessFigures:
    """Open file descriptors (and what they are) and resident memory of ``pid``, from /proc."""
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            kind = _fd_kind(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            continue  # closed while listing
        kinds[kind] = kinds.get(kind, 0) + 1
    fds = sum(kinds.values())
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return ProcessFigures(fds, rss, tuple(sorted(kinds.items())))


class Service:
    """One subprocess, its stdout and stderr appended to ``log_path``."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        launch: Launcher = subprocess.Popen,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.launch = launch
        self.env = clean_env(env)
        self.proc: subprocess.Popen[Any] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = self.launch(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=REPO_ROOT,
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return int(self.proc.pid)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def count(self, regex: str) -> int:
        return len(re.findall(regex, self.log))

    def wait_log(self, regex: str, *, timeout: float, count: int = 1) -> float:
        """Block until ``regex`` matched ``count`` times in the log; the monotonic time then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(regex) >= count:
                return time.monotonic()
            if not self.alive:
                raise AssertionError(
                    f"{self.argv[:3]} exited ({self.proc and self.proc.returncode}) before "
                    f"{regex!r} x{count}:\n{self.log[-3000:]}"
                )
            time.sleep(0.02)
        raise AssertionError(
            f"no {regex!r} x{count} within {timeout:g}s in {self.log_path.name}:\n"
            f"{self.log[-3000:]}"
        )

    def figures(self) -> ProcessFigures:
        return process_figures(self.pid)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
