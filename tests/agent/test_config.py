"""The agent's config: YAML, PCG_* overrides, clear errors that never show a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import load
from agent.exceptions import ConfigError

BASE = "gateway_name: gw1\nhub_url: wss://palette.example.com/v1/tunnel\ntoken: t0ken-value\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


def test_file_then_environment(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "ping_interval: 5\nallowlist: [10.0.0.1:5240]\n")
    config = load(path, {"PCG_PING_INTERVAL": "7.5", "PCG_USE_UVLOOP": "false"})
    assert config.ping_interval == 7.5 and config.use_uvloop is False
    assert config.allowlist == ("10.0.0.1:5240",)
    assert config.dead_peer_bound <= 30


def test_environment_alone_is_enough() -> None:
    env = {
        "PCG_GATEWAY_NAME": "gw2",
        "PCG_HUB_URL": "wss://h/v1/tunnel",
        "PCG_TOKEN": "abcdef",
        "PCG_ALLOWLIST": "10.0.0.1:5240, maas.lan:5240",
    }
    config = load(None, env)
    assert config.gateway_name == "gw2" and config.allowlist == ("10.0.0.1:5240", "maas.lan:5240")


def test_default_allowlist_is_the_maas_endpoint(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "maas_api_endpoint: http://10.11.12.13:5240/MAAS\n")
    assert load(path, {}).relay_allowlist == ("10.11.12.13:5240",)
    path = write(tmp_path, BASE + "maas_api_endpoint: https://maas.lan/MAAS\n")
    assert load(path, {}).relay_allowlist == ("maas.lan:443",)
    assert load(write(tmp_path, BASE), {}).relay_allowlist == ()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("hub_url: http://x/\n", "must look like wss://"),
        ("ping_interval: -1\n", "ping_interval=-1.0 must be a positive"),
        ("ping_interval: 50\nping_timeout: 20\n", "noticed within 60 s"),
        ("backoff_base: 5\nbackoff_cap: 1\n", "base=5.0 cap=1.0"),
        ("bogus: 1\n", "unknown settings in"),
        ("ping_timeout: soon\n", "ping_timeout='soon' is not a valid float"),
        ("log_format: xml\n", "log_format='xml'"),
        ("ca_bundle: /nonexistent/ca.pem\n", "is not a file"),
        ("relay_socket_buffer: 100\n", "relay_socket_buffer=100 must be 0 (the kernel"),
        ("window_growth_budget: -1\n", "window_growth_budget=-1 must be 0 (no window tuning"),
    ],
)
def test_bad_values_are_named_with_what_to_do(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load(write(tmp_path, BASE + extra), {})


def test_errors_never_show_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, "token: [not, a, string\n"), {})
    assert "not valid YAML" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load(None, {"PCG_TOKEN": "super-secret-token"})
    assert "gateway_name" in str(info.value) and "super-secret-token" not in str(info.value)
    config = load(write(tmp_path, BASE + "maas_api_key: a:b:c-secret\n"), {})
    assert "t0ken-value" not in repr(config) and "c-secret" not in repr(config)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the agent config"):
        load(tmp_path / "nope.yaml", {})
