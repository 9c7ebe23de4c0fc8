"""Run inside a test's own network namespace: ask the hub to relay to refused destinations
and report, as one JSON line, what the caller got and what the listeners saw.

Usage: python -m tests.support.relay_probe WORKDIR
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from pathlib import Path

from tests.support.net import ConnectError, fetch_via_connect
from tests.support.origin import Origin
from tests.support.processes import AgentProcess, HubProcess

REFUSED = [("127.0.0.1", 22), ("169.254.169.254", 80)]


async def main(workdir: Path) -> dict[str, object]:
    accepted = {f"{h}:{p}": 0 for h, p in REFUSED}

    def listener(key: str):  # noqa: ANN202
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted[key] += 1
            writer.close()

        return on_connect

    servers = [await asyncio.start_server(listener(f"{h}:{p}"), h, p) for h, p in REFUSED]
    origin = Origin()
    await origin.start()
    token = "tok-" + secrets.token_urlsafe(16)
    hub = HubProcess(workdir, {"gw-ns": token})
    hub.start()
    agent = AgentProcess(
        workdir,
        {
            "gateway_name": "gw-ns",
            "hub_url": hub.tunnel_url,
            "token": token,
            "allowlist": [f"127.0.0.1:{origin.port}"],
        },
    )
    agent.start()
    report: dict[str, object] = {}
    try:
        await agent.wait_log("tunnel up")
        for host, port in REFUSED:
            try:
                await fetch_via_connect(hub.connect_addr, "gw-ns", host, port, "GET", "/")
                report[f"{host}:{port}"] = "relayed"
            except ConnectError as exc:
                report[f"{host}:{port}"] = f"{exc.status} {exc.text}"
        allowed = await fetch_via_connect(
            hub.connect_addr, "gw-ns", "127.0.0.1", origin.port, "GET", "/small"
        )
        report["allowed"] = allowed.body.decode()
        await asyncio.sleep(0.2)
    finally:
        agent.kill()
        hub.stop()
        await origin.stop()
        for server in servers:
            server.close()
    report["accepted"] = accepted
    report["agent_log"] = agent.log
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
