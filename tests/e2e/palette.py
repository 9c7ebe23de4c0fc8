"""Helpers for lifecycle tests: a Palette simulator in the test's loop, agents as subprocesses."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import aiohttp

from protocol.simulator.palette import PaletteSimulator, PaletteUser

ADMIN = PaletteUser("admin@example.com", "Adm1n-pass!")
MAAS_KEY = "consumerKey123456:tokenKey1234567890:" + "s" * 32


class PaletteClient:
    """Palette's REST API as a tenant admin would call it."""

    def __init__(self, sim: PaletteSimulator, http: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.http = http
        self.token = ""

    async def login(self, email: str = ADMIN.email, password: str = ADMIN.password) -> None:
        credentials = {"emailId": email, "password": password}
        status, body = await self.request("POST", "/v1/auth/authenticate", credentials, auth=False)
        assert status == 200, body
        self.token = body["Authorization"]

    async def request(
        self, method: str, path: str, body: Any = None, *, auth: bool = True
    ) -> tuple[int, Any]:
        headers = {"Authorization": self.token} if auth else {}
        async with self.http.request(
            method, self.sim.url + path, json=body, headers=headers
        ) as response:
            data = await response.json() if response.content_type == "application/json" else None
            return response.status, data

    async def get(self, path: str) -> Any:
        status, body = await self.request("GET", path)
        assert status == 200, (path, status, body)
        return body

    async def overlords(self) -> list[dict[str, Any]]:
        return list((await self.get("/v1/overlords"))["items"])

    async def wait_overlord(self, name: str, state: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            for overlord in await self.overlords():
                if overlord["metadata"]["name"] == name:
                    seen = overlord
                    if overlord["status"]["state"] == state:
                        return overlord
            await asyncio.sleep(0.05)
        raise AssertionError(f"overlord {name} not {state} within {timeout}s: {seen}")


def registering_agent_config(
    sim: PaletteSimulator,
    name: str,
    code: str,
    state_dir: Path,
    *,
    install_id: str | None = None,
    maas_url: str = "http://127.0.0.1:9/MAAS",
    maas_key: str = "",
    **extra: Any,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "gateway_name": name,
        "hub_url": sim.tunnel_url,
        "pairing_code": code,
        "install_id": install_id or secrets.token_hex(16),
        "state_dir": str(state_dir),
        "maas_api_endpoint": maas_url,
        "maas_api_key": maas_key,
        "ping_interval": 0.5,
        "ping_timeout": 1.0,
        "write_timeout": 3.0,
        "open_timeout": 3.0,
        "backoff_base": 0.2,
        "backoff_cap": 0.5,
        "drain_timeout": 5.0,
        "log_level": "DEBUG",
    }
    config.update(extra)
    return config
