"""tinyproxy on the proxy host: its config (pure) and its process (started inside the namespace).

tinyproxy runs in the foreground (``-d``) as a child of ``ip netns exec``, in its own session so
it outlives the ``pcg-sim`` command that started it. It is found again by its command line among
the proxy namespace's processes, so a new :class:`TinyProxy` object can stop or restart it.
"""

from __future__ import annotations

import base64
import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

from protocol.simulator.nat import netns
from protocol.simulator.nat.topology import Host, NatPlan, ProxySettings


def render_config(
    settings: ProxySettings,
    listen: ipaddress.IPv4Address,
    allow: ipaddress.IPv4Network,
    state_dir: Path,
) -> str:
    """tinyproxy.conf. No ConnectPort line, so CONNECT may reach any port."""
    lines = [
        f"Port {settings.port}",
        f"Listen {listen}",
        "Timeout 600",
        f'LogFile "{state_dir / "tinyproxy.log"}"',
        # Connect level logs every request line, e.g. "Request (file descriptor 5): CONNECT ..."
        "LogLevel Connect",
        f'PidFile "{state_dir / "tinyproxy.pid"}"',
        "MaxClients 100",
        f"Allow {allow}",
        "DisableViaHeader Yes",
    ]
    if settings.user is not None:
        lines.append(f"BasicAuth {settings.user} {settings.password}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class ProxyStatus:
    pid: int | None
    address: str
    port: int
    log_path: str
    authenticated: bool


class TinyProxy:
    """The proxy host's tinyproxy: write its config, start, stop, restart, read its log."""

    def __init__(self, plan: NatPlan, settings: ProxySettings, state_dir: Path) -> None:
        self._plan = plan
        self._settings = settings
        self._state_dir = state_dir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def namespace(self) -> str:
        return self._plan.namespace(Host.PROXY)

    @property
    def address(self) -> str:
        return str(self._plan.address(Host.PROXY))

    @property
    def port(self) -> int:
        return self._settings.port

    @property
    def url(self) -> str:
        """``http://[user:password@]address:port`` for the agent's proxy setting."""
        auth = ""
        if self._settings.user is not None:
            auth = f"{self._settings.user}:{self._settings.password}@"
        return f"http://{auth}{self.address}:{self.port}"

    @property
    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` header value, or None without BasicAuth."""
        if self._settings.user is None or self._settings.password is None:
            return None
        token = f"{self._settings.user}:{self._settings.password}".encode()
        return "Basic " + base64.b64encode(token).decode()

    @property
    def config_path(self) -> Path:
        return self._state_dir / "tinyproxy.conf"

    @property
    def log_path(self) -> Path:
        return self._state_dir / "tinyproxy.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def pids(self) -> list[int]:
        """tinyproxy processes running in the proxy namespace (whoever started them)."""
        if self.namespace not in netns.list_namespaces():
            return []
        return [
            pid
            for pid in netns.namespace_pids(self.namespace)
            if (argv := netns.cmdline(pid)) and Path(argv[0]).name == "tinyproxy"
        ]

    def write_config(self) -> None:
        self._state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        config = render_config(
            self._settings,
            self._plan.address(Host.PROXY),
            self._plan.private_segment,
            self._state_dir,
        )
        self.config_path.write_text(config)

    def start(self, *, timeout: float = 5.0) -> None:
        """Start tinyproxy with the config on disk (written first if there is none)."""
        if not self.config_path.exists():
            self.write_config()
        argv = netns.exec_argv(
            self.namespace, [netns.tool("tinyproxy"), "-d", "-c", str(self.config_path)]
        )
        with (self._state_dir / "tinyproxy.stderr").open("ab") as stderr:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        try:
            netns.wait_tcp_listening(self.namespace, self.port, self.address, timeout=timeout)
        except TimeoutError as exc:
            self.stop()
            raise TimeoutError(f"tinyproxy did not start: {exc}; see {self.log_path}") from exc

    def stop(self) -> None:
        netns.terminate(self.pids())
        if self._process is not None:
            self._process.wait(timeout=5)
            self._process = None

    def restart(self, *, timeout: float = 5.0) -> None:
        """Stop and start again with the same config; the log file is appended to."""
        self.stop()
        self.start(timeout=timeout)

    def status(self) -> ProxyStatus:
        pids = self.pids()
        return ProxyStatus(
            pid=pids[0] if pids else None,
            address=self.address,
            port=self.port,
            log_path=str(self.log_path),
            authenticated=self._settings.user is not None,
        )
