"""The cloud-init user_data that turns a MAAS machine into a gateway node.

It writes the agent's config to ``/etc/pcg/agent.yaml`` (mode 0600), installs the agent and
starts it as a systemd service. What it carries is exactly what the agent needs to register and
serve: the hub URL, the pairing code and install id, the MAAS endpoint and API key, proxies.
Never the Palette password.

:func:`agent_config_from_user_data` reads the config back out: the MAAS simulator uses it to
boot simulated machines, and tests use it to check what was sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

AGENT_CONFIG_PATH = "/etc/pcg/agent.yaml"
STATE_DIR = "/var/lib/pcg-agent"
UNIT = """[Unit]
Description=Private cloud gateway agent
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/opt/pcg/venv/bin/pcg-agent --config /etc/pcg/agent.yaml
Restart=always
RestartSec=2
User=pcg
StateDirectory=pcg-agent
KillSignal=SIGTERM
TimeoutStopSec=60

[Install]
WantedBy=multi-user.target
"""


def render_gateway_user_data(
    agent_config: Mapping[str, Any], *, package: str = "pcg-maas", index_url: str | None = None
) -> str:
    """The ``#cloud-config`` document for one gateway node."""
    config = {k: v for k, v in agent_config.items() if v is not None}
    config.setdefault("state_dir", STATE_DIR)
    pip = ["/opt/pcg/venv/bin/pip", "install", "--quiet", package]
    if index_url:
        pip[3:3] = ["--index-url", index_url]
    proxy_env = {
        key.upper(): str(config[key])
        for key in ("https_proxy", "http_proxy", "no_proxy")
        if config.get(key)
    }
    document: dict[str, Any] = {
        "users": ["default", {"name": "pcg", "system": True, "shell": "/usr/sbin/nologin"}],
        "packages": ["python3-venv"],
        "write_files": [
            {
                "path": AGENT_CONFIG_PATH,
                "permissions": "0600",
                "owner": "pcg:pcg",
                "defer": True,
                "content": yaml.safe_dump(config, sort_keys=True),
            },
            {"path": "/etc/systemd/system/pcg-agent.service", "content": UNIT},
        ],
        "runcmd": [
            ["python3", "-m", "venv", "/opt/pcg/venv"],
            ["env", *(f"{k}={v}" for k, v in proxy_env.items()), *pip],
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", "pcg-agent.service"],
        ],
    }
    return "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False)


def agent_config_from_user_data(user_data: str) -> dict[str, Any] | None:
    """The agent config inside a gateway node's user_data, or None for other user_data."""
    if not user_data.startswith("#cloud-config"):
        return None
    try:
        document = yaml.safe_load(user_data)
    except yaml.YAMLError:
        return None
    if not isinstance(document, dict):
        return None
    for entry in document.get("write_files") or []:
        if isinstance(entry, dict) and entry.get("path") == AGENT_CONFIG_PATH:
            config = yaml.safe_load(entry.get("content") or "")
            return config if isinstance(config, dict) else None
    return None
