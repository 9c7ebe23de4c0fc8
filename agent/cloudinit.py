"""The cloud-init user_data that turns a MAAS machine into a gateway node.

It writes the agent's config to ``/etc/pcg/agent.yaml`` (mode 0600), installs the agent and
starts it as a systemd service. What it carries is exactly what the agent needs to register and
serve: the hub URL, the pairing code and install id, the MAAS endpoint and API key, proxies.
Never the Palette password.

The MAAS simulator's ``--boot-agents`` reads the config back out of the ``write_files`` entry at
AGENT_CONFIG_PATH to boot a simulated machine's agent (it keeps its own copy of that path, since
``protocol`` never imports ``agent``).
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
Restart=on-failure
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
