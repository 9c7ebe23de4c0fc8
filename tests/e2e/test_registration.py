"""Pairing, registration and health of a gateway: the Palette simulator in-process, the agents
as real `pcg-agent` subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.processes import AgentProcess

from .palette import ADMIN, MAAS_KEY, PaletteClient, registering_agent_config


async def test_pair_register_running_and_cloud_account(
    palette: PaletteClient, spawn: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    code = (await palette.get("/v1/overlords/pairing/code?cloudType=maas"))["pairingCode"]
    state = tmp_path / "state"
    config = registering_agent_config(
        palette.sim, "maas-pcg-1", code, state,
        maas_url="http://10.11.12.13:5240/MAAS", maas_key=MAAS_KEY,
    )  # fmt: skip
    agent = spawn(config)
    overlord = await palette.wait_overlord("maas-pcg-1", "Running")
    assert overlord["status"]["health"]["agentVersion"] == "0.1.0"
    assert overlord["status"]["health"]["lastHeartBeatTimestamp"]
    assert overlord["metadata"]["annotations"]["installId"] == config["install_id"]
    accounts = (await palette.get("/v1/cloudaccounts/maas"))["items"]
    (account,) = accounts
    assert account["metadata"]["annotations"]["overlordUid"] == overlord["metadata"]["uid"]
    assert account["spec"]["apiEndpoint"] == "http://10.11.12.13:5240/MAAS"
    assert account["spec"]["apiKey"] == "****"
    # the credential is on disk, mode 0600, and the admin password is nowhere in the state dir
    credential = state / "credential.json"
    assert stat.S_IMODE(os.stat(credential).st_mode) == 0o600
    assert json.loads(credential.read_text())["uid"] == overlord["metadata"]["uid"]
    assert ADMIN.password not in "".join(p.read_text() for p in state.iterdir() if p.is_file())
    assert code not in agent.log
    # the code was consumed: a second validation says so
    status, body = await palette.request("POST", "/v1/overlords/pairing/validate",
                                         {"pairingCode": code})  # fmt: skip
    assert status == 409 and body["code"] == "PairingCodeUsed"


@pytest.mark.parametrize("case", ["wrong", "reused", "expired"])
async def test_bad_pairing_codes_are_refused_and_leave_no_gateway(
    palette: PaletteClient, spawn: Callable[..., AgentProcess], tmp_path: Path, case: str
) -> None:
    code = (await palette.get("/v1/overlords/pairing/code?cloudType=maas"))["pairingCode"]
    before = 0
    if case == "reused":
        spawn(registering_agent_config(palette.sim, "first", code, tmp_path / "s1"))
        await palette.wait_overlord("first", "Running")
        before = 1
    elif case == "expired":
        palette.sim.clock.advance(24 * 3600 + 120)
    elif case == "wrong":
        code = "ZZZZZZ" if code != "ZZZZZZ" else "YYYYYY"
    agent = spawn(registering_agent_config(palette.sim, "second", code, tmp_path / "s2"))
    expected = {
        "wrong": "PairingCodeInvalid",
        "reused": "PairingCodeUsed",
        "expired": "PairingCodeExpired",
    }[case]
    await agent.wait_log(expected)
    line = next(x for x in agent.log.splitlines() if expected in x)
    assert "level=error" in line
    if case == "expired":
        assert "expired 2 minutes ago" in line
    overlords = await palette.overlords()
    assert len(overlords) == before
    assert all(o["metadata"]["name"] != "second" for o in overlords)
    assert not (tmp_path / "s2" / "credential.json").exists()


async def test_three_nodes_of_one_install_are_one_gateway(
    palette: PaletteClient, spawn: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    code = (await palette.get("/v1/overlords/pairing/code?cloudType=maas"))["pairingCode"]
    install = secrets.token_hex(16)
    for node in range(3):
        spawn(registering_agent_config(palette.sim, "ha-gw", code, tmp_path / f"n{node}",
                                       install_id=install, node_count=3))  # fmt: skip
    overlord = await palette.wait_overlord("ha-gw", "Running")
    for _ in range(100):
        overlord = (await palette.overlords())[0]
        if overlord["status"]["sessions"] == 3:
            break
        await asyncio.sleep(0.05)
    assert overlord["status"]["sessions"] == 3
    assert len(await palette.overlords()) == 1
    assert len((await palette.get("/v1/cloudaccounts/maas"))["items"]) == 1
    uids = {
        json.loads((tmp_path / f"n{n}" / "credential.json").read_text())["uid"] for n in range(3)
    }
    assert uids == {overlord["metadata"]["uid"]}


async def test_agent_killed_goes_unhealthy_and_returns_with_the_same_uid(
    palette: PaletteClient, spawn: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    code = (await palette.get("/v1/overlords/pairing/code?cloudType=maas"))["pairingCode"]
    config = registering_agent_config(palette.sim, "gw-k", code, tmp_path / "state")
    agent = spawn(config, workdir=tmp_path / "a")
    running = await palette.wait_overlord("gw-k", "Running")
    agent.kill()  # SIGKILL: no GOAWAY, no goodbye
    await palette.wait_overlord("gw-k", "Unhealthy", timeout=10)
    # the same node restarts: it has a credential, so it needs no pairing code
    restarted = spawn(
        {k: v for k, v in config.items() if k != "pairing_code"}, workdir=tmp_path / "b"
    )
    back = await palette.wait_overlord("gw-k", "Running")
    assert back["metadata"]["uid"] == running["metadata"]["uid"]
    assert len(await palette.overlords()) == 1
    assert "registered" not in restarted.log


async def test_sso_only_user_is_refused_with_the_explanation(palette: PaletteClient) -> None:
    status, body = await palette.request(
        "POST", "/v1/auth/authenticate", {"emailId": "sso@example.com", "password": "x"}, auth=False
    )
    assert status == 403 and body["code"] == "SsoUserNotAllowed"
    assert "local (non-SSO) tenant admin" in body["message"]
    status, body = await palette.request(
        "POST", "/v1/auth/authenticate", {"emailId": ADMIN.email, "password": "nope"}, auth=False
    )
    assert status == 401 and body["code"] == "InvalidCredentials"


async def test_deleting_an_idle_gateway_stops_its_agent(
    palette: PaletteClient, spawn: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    code = (await palette.get("/v1/overlords/pairing/code?cloudType=maas"))["pairingCode"]
    agent = spawn(registering_agent_config(palette.sim, "gw-d", code, tmp_path / "state"))
    overlord = await palette.wait_overlord("gw-d", "Running")
    status, _ = await palette.request("DELETE", f"/v1/overlords/{overlord['metadata']['uid']}")
    assert status == 204
    assert await palette.overlords() == []
    assert agent.proc is not None
    for _ in range(200):
        if agent.proc.poll() is not None:
            break
        await asyncio.sleep(0.05)
    assert agent.proc.returncode == 0, agent.log[-2000:]
    assert "decommissioning" in agent.log
    assert (tmp_path / "state" / "decommissioned").exists()
    assert not (tmp_path / "state" / "credential.json").exists()
