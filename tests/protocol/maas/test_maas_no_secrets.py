"""The API key never reaches a log line or an error message, whatever happens."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from protocol.maas import ApiKey, AuthError, MaasClient, MaasError, NodeStatus
from protocol.simulator.maas import MaasSimulator
from protocol.simulator.maas.testing import client_for, running_simulator

KEY = ApiKey.parse("Cons0merKeyAbCdEfG:T0kenKeyHiJkLmNoP:T0kenSecretQrStUvWxYz0123456789ab")
FAST = {"poll_interval": 0.02, "max_wait": 5.0}


def _assert_clean(texts: list[str], key: ApiKey) -> None:
    for text in texts:
        for part in key.parts():
            assert part not in text, f"a part of the API key leaked into: {text[:200]!r}"


def _log_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    texts = []
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    texts.append(caplog.text)
    return texts


async def test_full_run_at_debug_logs_no_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    async with running_simulator(api_key=KEY) as sim:
        sim.faults.unavailable(1, retry_after=0)
        sim.faults.drop_connections(1, match="GET /MAAS/api/2.0/zones/")
        async with client_for(sim) as maas:
            assert await maas.list_zones()
            machine = await maas.allocate(cpu_count=4, agent_name="pcg")
            await maas.deploy(machine.system_id, user_data="#cloud-config\n")
            await maas.wait_for_status(machine.system_id, NodeStatus.DEPLOYED, **FAST)
            await maas.release([machine.system_id])
            await maas.wait_for_status(machine.system_id, NodeStatus.READY, **FAST)
        wrong_secret = ApiKey(KEY.consumer_key, KEY.token_key, "W" * 32)
        wrong_token = ApiKey(KEY.consumer_key, "Z" * 18, KEY.token_secret)
        for bad in (wrong_secret, wrong_token):
            async with client_for(sim, api_key=bad) as maas:
                with pytest.raises(AuthError) as caught:
                    await maas.list_machines()
                errors.append(str(caught.value))
                errors.append(repr(caught.value))
                errors.append(repr(maas))
    assert any(r.name == "protocol.maas" and r.levelno == logging.DEBUG for r in caplog.records)
    assert any(r.name.startswith("protocol.simulator.maas") for r in caplog.records)
    _assert_clean(_log_texts(caplog) + errors, KEY)
    _assert_clean(errors[:2], wrong_secret)


@pytest.fixture
async def leaky_maas() -> AsyncIterator[str]:
    """A MAAS that answers like the real one does on a bad signature: piston3 puts the expected
    PLAINTEXT signature, i.e. the token secret, in the 401 body."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            status=401,
            text="Authorization Error: 'Invalid signature. Expected signature base string: "
            f"&{KEY.token_secret}' (token {KEY.token_key})",
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/MAAS"
    finally:
        await runner.cleanup()


async def test_secret_echoed_by_maas_is_redacted(
    leaky_maas: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with MaasClient(leaky_maas, KEY, trust_env=False) as maas:
        with pytest.raises(AuthError) as caught:
            await maas.list_zones()
    error = caught.value
    assert "<redacted>" in str(error) and "<redacted>" in error.body
    _assert_clean([str(error), error.body, repr(error)] + _log_texts(caplog), KEY)


async def test_simulator_rejections_do_not_echo_the_secret(maas_sim: MaasSimulator) -> None:
    key = maas_sim.api_key
    wrong = ApiKey(key.consumer_key, key.token_key, "Q" * 32)
    async with client_for(maas_sim, api_key=wrong) as maas:
        with pytest.raises(MaasError) as caught:
            await maas.list_zones()
    assert isinstance(caught.value, AuthError)
    assert caught.value.body == "Authorization Error: 'Invalid signature.'"
    _assert_clean([caught.value.body, str(caught.value)], key)
