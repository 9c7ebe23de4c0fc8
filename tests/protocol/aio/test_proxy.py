"""Proxy selection follows curl: NO_PROXY suffixes, CIDR, ports, '*', lower case first."""

from __future__ import annotations

import pytest

from protocol.aio.proxy import ProxySettings, bypasses, redact_url


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "expected"),
    [
        ("maas.example.com", 5240, "example.com", True),
        ("maas.example.com", 5240, ".example.com", True),
        ("example.com", 443, ".example.com", True),
        ("notexample.com", 443, "example.com", False),
        ("MAAS.Example.COM.", 443, "example.com", True),
        ("10.11.12.13", 5240, "10.10.0.0/16,10.11.0.0/16", True),
        ("10.12.0.1", 5240, "10.10.0.0/16,10.11.0.0/16", False),
        ("10.11.12.13", 5240, "10.11.12.13", True),
        ("10.11.12.13", 5240, "10.11.12.14", False),
        ("::1", 443, "::1/128", True),
        ("fd00::5", 443, "fd00::/8", True),
        ("anything", 1, "*", True),
        ("palette.example.com", 443, "palette.example.com:8443", False),
        ("palette.example.com", 8443, "palette.example.com:8443", True),
        ("host", 80, " , ,", False),
        ("example.com", 443, "10.0.0.0/8", False),
        ("10.0.0.1", 443, "example.com", False),
    ],
)
def test_no_proxy_rules(host: str, port: int, no_proxy: str, expected: bool) -> None:
    assert bypasses(host, port, no_proxy) is expected


def test_scheme_picks_the_proxy_and_no_proxy_wins() -> None:
    settings = ProxySettings("http://sec:3128", "http://plain:3128", "internal.lan")
    assert settings.proxy_for("wss://palette.example.com/v1/tunnel") == "http://sec:3128"
    assert settings.proxy_for("ws://palette.example.com/v1/tunnel") == "http://plain:3128"
    assert settings.proxy_for("wss://hub.internal.lan/v1/tunnel") is None
    assert ProxySettings().proxy_for("wss://palette.example.com/") is None
    assert ProxySettings("proxy:3128").proxy_for("wss://x/") == "http://proxy:3128"


def test_environment_lower_case_first_and_config_over_environment() -> None:
    env = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2", "NO_PROXY": "a.b"}
    from_env = ProxySettings.from_env(env)
    assert from_env.https_proxy == "http://lower:2" and from_env.no_proxy == "a.b"
    merged = ProxySettings(https_proxy="http://config:3").merged_over(from_env)
    assert merged.https_proxy == "http://config:3" and merged.no_proxy == "a.b"
    # an explicitly empty no_proxy in the config overrides the environment's
    assert ProxySettings(no_proxy="").merged_over(from_env).no_proxy == ""


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("http://alice:s3cret@proxy:3128") == "http://alice:***@proxy:3128"
    assert redact_url("http://proxy:3128") == "http://proxy:3128"
