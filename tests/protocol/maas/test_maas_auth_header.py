"""The Authorization header the client sends is the one MAAS checks (MAAS API 2.0, api/auth.py):
OAuth 1.0a PLAINTEXT, empty consumer secret so oauth_signature is %26<token_secret>, an integer
timestamp and a nonce never used before."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from protocol.maas import ApiKey, MaasClient
from protocol.maas.auth import authorization_header
from protocol.simulator.maas.oauth import OAuthRejected, OAuthVerifier, parse_header

KEY = ApiKey.parse("AbCdEfGhIjKlMnOpQr:StUvWxYz0123456789:s3cr3tS3CR3Ts3cr3tS3CR3Ts3cr3tXY")


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[str]]]:
    """A stand-in MAAS on 127.0.0.1 that records the Authorization headers it receives."""
    seen: list[str] = []

    async def zones(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response([{"id": 1, "name": "default", "description": ""}])

    app = web.Application()
    app.router.add_get("/MAAS/api/2.0/zones/", zones)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/MAAS", seen
    finally:
        await runner.cleanup()


async def test_header_sent_on_the_wire_is_plaintext_with_fresh_nonces(
    recorder: tuple[str, list[str]],
) -> None:
    url, seen = recorder
    async with MaasClient(url, KEY, trust_env=False) as maas:
        for _ in range(3):
            assert [zone.name for zone in await maas.list_zones()] == ["default"]
    assert len(seen) == 3
    now = int(time.time())
    nonces = set()
    for header in seen:
        assert header.startswith("OAuth ")
        assert f'oauth_signature="%26{KEY.token_secret}"' in header
        params = parse_header(header)
        assert params is not None
        assert params["oauth_signature_method"] == "PLAINTEXT"
        assert params["oauth_consumer_key"] == KEY.consumer_key
        assert params["oauth_token"] == KEY.token_key
        assert params["oauth_signature"] == "&" + KEY.token_secret
        assert params["oauth_version"] == "1.0"
        assert params["oauth_timestamp"].isdigit()
        assert abs(int(params["oauth_timestamp"]) - now) <= 5
        nonces.add(params["oauth_nonce"])
    assert len(nonces) == 3, "every request must carry a new nonce"


def test_maas_side_check_accepts_each_header_once() -> None:
    verifier = OAuthVerifier([KEY])
    url = "http://127.0.0.1:5240/MAAS/api/2.0/machines/?op=allocate"
    headers = [authorization_header(KEY, "POST", url) for _ in range(5)]
    for header in headers:
        assert verifier.verify(header, time.time()) == KEY
    with pytest.raises(OAuthRejected, match="Nonce already used"):
        verifier.verify(headers[0], time.time())


def test_signature_does_not_depend_on_url_or_method() -> None:
    a = parse_header(authorization_header(KEY, "GET", "http://127.0.0.1/MAAS/api/2.0/zones/"))
    b = parse_header(authorization_header(KEY, "POST", "http://127.0.0.1/MAAS/api/2.0/x/?op=y"))
    assert a is not None and b is not None
    assert a["oauth_signature"] == b["oauth_signature"] == "&" + KEY.token_secret
    assert a["oauth_nonce"] != b["oauth_nonce"]
