"""The simulator checks OAuth PLAINTEXT like MAAS: unknown key, wrong signature, reused nonce and
an expired timestamp each get a 401 with MAAS's text."""

from __future__ import annotations

import time

import aiohttp
import pytest

from protocol.maas import ApiKey
from protocol.maas.auth import authorization_header
from protocol.simulator.maas import MaasSimulator
from protocol.simulator.maas.oauth import OAuthRejected, OAuthVerifier, parse_header

KEY = ApiKey.parse("AbCdEfGhIjKlMnOpQr:StUvWxYz0123456789:s3cr3tS3CR3Ts3cr3tS3CR3Ts3cr3tXY")


def _header(**params: str) -> str:
    base = {
        "oauth_consumer_key": KEY.consumer_key,
        "oauth_token": KEY.token_key,
        "oauth_signature_method": "PLAINTEXT",
        "oauth_signature": "%26" + KEY.token_secret,
        "oauth_timestamp": str(int(time.time())),
        "oauth_nonce": "n0nce",
        "oauth_version": "1.0",
    }
    base.update(params)
    return "OAuth " + ", ".join(f'{name}="{value}"' for name, value in base.items())


async def _get(
    http: aiohttp.ClientSession, sim: MaasSimulator, header: str | None
) -> tuple[int, str, aiohttp.typedefs.LooseHeaders]:
    headers = {} if header is None else {"Authorization": header}
    async with http.get(sim.url + "/api/2.0/machines/", headers=headers) as response:
        return response.status, await response.text(), response.headers


async def test_valid_signature_is_accepted(
    maas_sim: MaasSimulator, http: aiohttp.ClientSession
) -> None:
    url = maas_sim.url + "/api/2.0/machines/"
    status, body, _ = await _get(http, maas_sim, authorization_header(maas_sim.api_key, "GET", url))
    assert status == 200 and body.startswith("[")


async def test_unknown_key_gets_401(maas_sim: MaasSimulator, http: aiohttp.ClientSession) -> None:
    status, body, headers = await _get(
        http, maas_sim, authorization_header(KEY, "GET", "http://x/")
    )
    assert status == 401
    assert body == "Authorization Error: Invalid API key."
    assert headers["WWW-Authenticate"] == 'OAuth realm="OAuth"'


async def test_wrong_signature_gets_401(
    maas_sim: MaasSimulator, http: aiohttp.ClientSession
) -> None:
    real = maas_sim.api_key
    forged = ApiKey(real.consumer_key, real.token_key, "f" * 32)
    status, body, _ = await _get(http, maas_sim, authorization_header(forged, "GET", "http://x/"))
    assert status == 401
    assert body == "Authorization Error: 'Invalid signature.'"
    assert real.token_secret not in body


async def test_reused_nonce_gets_401(maas_sim: MaasSimulator, http: aiohttp.ClientSession) -> None:
    header = authorization_header(maas_sim.api_key, "GET", maas_sim.url)
    first, _, _ = await _get(http, maas_sim, header)
    again, body, _ = await _get(http, maas_sim, header)
    assert (first, again) == (200, 401)
    nonce = (parse_header(header) or {})["oauth_nonce"]
    assert body == f"Authorization Error: 'Nonce already used: {nonce}'"


async def test_unsigned_request_is_challenged(
    maas_sim: MaasSimulator, http: aiohttp.ClientSession
) -> None:
    status, body, headers = await _get(http, maas_sim, None)
    assert (status, body) == (401, "Forbidden")
    assert "OAuth" in headers["WWW-Authenticate"]
    async with http.get(maas_sim.url + "/api/2.0/version/") as response:
        assert response.status == 200, "version/ is anonymous"


def test_verifier_checks_in_maas_order() -> None:
    verifier = OAuthVerifier([KEY])
    now = time.time()
    assert verifier.verify(None, now) is None
    assert verifier.verify("Basic dXNlcjpwYXNz", now) is None
    assert verifier.verify('OAuth oauth_consumer_key="x"', now) is None, "incomplete: anonymous"
    cases = {
        "unknown-key": _header(oauth_consumer_key="nobody"),
        "bad-token": _header(oauth_token="nobody", oauth_nonce="1"),
        "expired": _header(oauth_timestamp=str(int(now) - 301), oauth_nonce="2"),
        "bad-timestamp": _header(oauth_timestamp="12.5", oauth_nonce="3"),
        "method": _header(oauth_signature_method="HMAC-SHA1", oauth_nonce="4"),
        "bad-signature": _header(oauth_signature="%26wrong", oauth_nonce="5"),
        "version": _header(oauth_version="2.0", oauth_nonce="6"),
    }
    for reason, header in cases.items():
        with pytest.raises(OAuthRejected) as caught:
            verifier.verify(header, now)
        assert caught.value.reason == reason
        assert str(caught.value).startswith("Authorization Error: ")
    # a badly signed request still burns its nonce (MAAS records it before the signature check)
    with pytest.raises(OAuthRejected, match="Nonce already used: 5"):
        verifier.verify(_header(oauth_nonce="5"), now)
    assert verifier.verify(_header(oauth_nonce="7", realm="OAuth"), now) == KEY


def test_old_nonces_are_forgotten() -> None:
    verifier = OAuthVerifier([KEY])
    then = time.time() - 1000
    verifier.nonces.check_and_add(KEY.consumer_key, KEY.token_key, "old", int(then))
    verifier.verify(_header(oauth_nonce="fresh"), time.time())
    assert (KEY.consumer_key, KEY.token_key, "old") not in verifier.nonces.seen
