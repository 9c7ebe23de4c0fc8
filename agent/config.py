"""The agent's configuration: a YAML file, overridden by ``PCG_*`` environment variables.

Every key of :class:`AgentConfig` can be set in the file under its own name, or in the
environment as ``PCG_<NAME>`` (upper case), e.g. ``PCG_HUB_URL``. Lists (``allowlist``)
are comma-separated in the environment. Proxies come from ``https_proxy``/``http_proxy``/
``no_proxy`` here, else from the usual environment variables (curl's rules).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from agent.exceptions import ConfigError
from protocol.aio.backoff import BackoffPolicy
from protocol.aio.proxy import ProxySettings
from protocol.aio.splice import check_socket_buffer
from protocol.connection import check_growth_budget, check_seconds
from protocol.frames import Settings

ENV_PREFIX = "PCG_"
SECRET_KEYS = frozenset({"token", "maas_api_key", "pairing_code"})


@dataclass(frozen=True, slots=True)
class AgentConfig:
    gateway_name: str
    hub_url: str
    #: a fixed bearer token (tests, hand-run hubs); a registered gateway uses its credential
    token: str = field(default="", repr=False)
    #: registration (PROTOCOL of the Palette simulator's README): used only while no credential
    #: is stored in state_dir; the code is single use, the install id joins a 3-node install
    pairing_code: str | None = field(default=None, repr=False)
    install_id: str | None = None
    #: where the gateway's machines come from (MAAS names), reported at registration
    domain: str = "maas"
    zone: str = "default"
    resource_pool: str = "default"
    node_count: int = 1
    #: how tenant and gateway machines are deployed
    maas_distro_series: str = "jammy"
    maas_poll_interval: float = 5.0
    maas_deploy_timeout: float = 1800.0
    maas_release_timeout: float = 600.0
    #: streams the hub may have open on one session, and waiting to be accepted
    max_streams: int = 4096
    max_pending_opens: int = 1024
    #: bytes of receive-window growth all streams of a session may share (PROTOCOL.md §6.5);
    #: 0 turns window tuning off
    window_growth_budget: int = 256 * 1024 * 1024
    #: kernel send and receive buffer of each relayed socket; 0: the kernel autotunes
    #: (protocol/aio/splice.py says why the default is fixed)
    relay_socket_buffer: int = 256 * 1024
    ca_bundle: str | None = None
    maas_api_endpoint: str | None = None
    maas_api_key: str | None = field(default=None, repr=False)
    #: destinations the relay may connect to (host:port); default: the MAAS API endpoint
    allowlist: tuple[str, ...] = ()
    https_proxy: str | None = None
    http_proxy: str | None = None
    no_proxy: str | None = None
    ping_interval: float = 10.0
    ping_timeout: float = 10.0
    write_timeout: float = 20.0
    open_timeout: float = 10.0
    connect_timeout: float = 10.0
    backoff_base: float = 0.5
    backoff_cap: float = 10.0
    backoff_reset_after: float = 30.0
    drain_timeout: float = 20.0
    state_dir: str | None = None
    use_uvloop: bool = True
    log_level: str = "INFO"
    log_format: str = "text"

    def __post_init__(self) -> None:
        if not self.gateway_name or not self.gateway_name.strip():
            raise ConfigError("gateway_name is empty: set it to the gateway's name")
        parts = urlsplit(self.hub_url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ConfigError(
                f"hub_url={self.hub_url!r} must look like wss://palette.example.com/v1/tunnel"
            )
        try:
            check_seconds(self, "ping_interval", "ping_timeout", "write_timeout", "open_timeout",
                          "connect_timeout", "drain_timeout")  # fmt: skip
            check_growth_budget(self.window_growth_budget)
            check_socket_buffer(self.relay_socket_buffer, "relay_socket_buffer")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.ping_interval + self.ping_timeout > 60:
            raise ConfigError(
                f"ping_interval + ping_timeout = {self.ping_interval + self.ping_timeout}s; "
                "a dead hub must be noticed within 60 s: lower them"
            )
        try:
            BackoffPolicy(self.backoff_base, self.backoff_cap, self.backoff_reset_after)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        try:
            Settings(max_streams=self.max_streams, max_pending_opens=self.max_pending_opens)
        except ValueError as exc:
            raise ConfigError(f"{exc}; fix max_streams / max_pending_opens") from None
        if self.node_count not in (1, 3):
            raise ConfigError(f"node_count={self.node_count} must be 1 (no HA) or 3 (HA)")
        if self.pairing_code and not (self.install_id and self.state_dir):
            raise ConfigError(
                "registering with pairing_code needs install_id (shared by the nodes of one "
                "install) and state_dir (where the gateway credential is kept)"
            )
        if not self.token and not self.pairing_code and not self.state_dir:
            raise ConfigError(
                "the agent has no way to authenticate: set pairing_code (and install_id) to "
                "register, state_dir to use a stored credential, or token"
            )
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format={self.log_format!r} must be 'text' or 'json'")
        if self.ca_bundle is not None and not Path(self.ca_bundle).is_file():
            raise ConfigError(f"ca_bundle={self.ca_bundle!r} is not a file: give a PEM CA file")

    @property
    def tunnel_settings(self) -> Settings:
        """What this agent accepts from the hub, announced in its HELLO."""
        return Settings(max_streams=self.max_streams, max_pending_opens=self.max_pending_opens)

    @property
    def backoff(self) -> BackoffPolicy:
        return BackoffPolicy(self.backoff_base, self.backoff_cap, self.backoff_reset_after)

    @property
    def dead_peer_bound(self) -> float:
        """At most this long passes between a hub going silent and the agent noticing."""
        return min(self.ping_interval + self.ping_timeout, self.write_timeout + 1.0)

    @property
    def proxies(self) -> ProxySettings:
        own = ProxySettings(self.https_proxy, self.http_proxy, self.no_proxy)
        return own.merged_over(ProxySettings.from_env())

    @property
    def relay_allowlist(self) -> tuple[str, ...]:
        if self.allowlist:
            return self.allowlist
        if self.maas_api_endpoint:
            parts = urlsplit(self.maas_api_endpoint)
            if parts.hostname:
                default = 443 if parts.scheme == "https" else 80
                host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
                return (f"{host}:{parts.port or default}",)
        return ()

    def secrets(self) -> tuple[str, ...]:
        return tuple(v for v in (self.token, self.maas_api_key, self.pairing_code) if v)


_FIELDS = {f.name: f for f in dataclasses.fields(AgentConfig)}


def _coerce(name: str, value: Any) -> Any:
    kind = _FIELDS[name].type
    shown = "***" if name in SECRET_KEYS else repr(value)
    try:
        if kind == "float":
            return float(value)
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind == "tuple[str, ...]":
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip() for i in items if str(i).strip())
        return None if value is None else str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={shown} is not a valid {kind}") from None


def load(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None
) -> AgentConfig:
    """Read ``path`` (may be None), then apply ``PCG_*`` variables over it."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read the agent config {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"the agent config {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"the agent config {path} must be a YAML map of settings")
        unknown = sorted(set(loaded) - set(_FIELDS))
        if unknown:
            raise ConfigError(
                f"unknown settings in {path}: {', '.join(unknown)}; known: {', '.join(_FIELDS)}"
            )
        values.update(loaded)
    for name in _FIELDS:
        env_value = env.get(ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = env_value
    missing = [n for n in ("gateway_name", "hub_url") if not values.get(n)]
    if missing:
        raise ConfigError(
            "missing settings: " + ", ".join(f"{n} (or {ENV_PREFIX}{n.upper()})" for n in missing)
        )
    return AgentConfig(**{k: _coerce(k, v) for k, v in values.items()})
