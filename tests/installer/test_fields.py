"""The answer checks shared by the prompts and pcg.yaml: each message says what is wrong and
what to enter; a secret is never echoed."""

from __future__ import annotations

import pytest

from installer import fields


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("https://console.spectrocloud.com", None),
        ("https://palette.example.com:8443", None),
        ("https://console.spectrocloud.com/", "remove the trailing slash"),
        ("http://console.spectrocloud.com", "must start with https://"),
        ("console.spectrocloud.com", "must start with https://"),
        ("https://console.spectrocloud.com/v1", "has a path (/v1)"),
        ("https://user:pw@palette.example.com", "must not carry credentials"),
        ("https://palette.example.com:99999", "not a valid URL"),
        ("", "is empty"),
    ],
)
def test_palette_endpoint(value: str, message: str | None) -> None:
    problem = fields.check_palette_endpoint(value)
    assert problem is None if message is None else message in (problem or "")
    if problem and "credentials" in problem:
        assert ":pw@" not in problem


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://10.11.12.13:5240/MAAS", None),
        ("https://maas.example.com/MAAS", None),
        ("http://10.11.12.13:5240", "is missing /MAAS at the end: enter it as "
                                   "http://10.11.12.13:5240/MAAS"),
        ("http://10.11.12.13:5240/", "is missing /MAAS"),
        ("http://10.11.12.13:5240/MAAS/", "ends with '/'"),
        ("http://10.11.12.13:5240/MAAS/api/2.0/", "goes past MAAS's root"),
        ("http://10.11.12.13:5240/maas", "does not end with /MAAS"),
        ("ftp://10.11.12.13/MAAS", "must start with http:// or https://"),
        ("http://:5240/MAAS", "has no host"),
        ("http://10.11.12.13:70000/MAAS", "invalid port"),
    ],
)  # fmt: skip
def test_maas_endpoint(value: str, message: str | None) -> None:
    problem = fields.check_maas_endpoint(value)
    assert problem is None if message is None else message in (problem or "")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("192.168.0.0/16", None),
        ("10.0.0.1/16", "has host bits set: did you mean 10.0.0.0/16?"),
        ("10.0.0.0", "has no prefix length"),
        ("10.0.0.0/26", "use a prefix between /8 and /24"),
        ("fd00::/48", "not an IPv4 CIDR"),
    ],
)
def test_pod_cidr(value: str, message: str | None) -> None:
    problem = fields.check_pod_cidr(value)
    assert problem is None if message is None else message in (problem or "")


def test_service_range_limits_and_overlap() -> None:
    assert fields.check_service_range("10.96.0.0/12") is None
    assert "/12 and /24" in (fields.check_service_range("10.0.0.0/8") or "")
    assert fields.networks_overlap("10.96.0.0/12", "10.100.0.0/16")
    assert not fields.networks_overlap("192.168.0.0/16", "10.96.0.0/12")


def test_names_users_proxies() -> None:
    assert fields.check_name("maas-pcg-1") is None
    for bad in ("Maas", "-a", "a-", "a_b", "x" * 64, ""):
        assert "lowercase letters" in (fields.check_name(bad) or "")
    assert fields.check_username("user1@company.com") is None
    assert "email address" in (fields.check_username("user1") or "")
    assert fields.check_proxy("", "HTTPS") is None
    assert fields.check_proxy("http://u:secret@proxy:3128", "HTTP") is None
    problem = fields.check_proxy("socks5://u:secret@proxy:1080", "HTTPS") or ""
    assert "must be http:// or https://" in problem and "secret" not in problem
    assert fields.check_no_proxy("maas.company.com,10.10.0.0/16, .local") is None
    assert "10.10.0.0/33" in (fields.check_no_proxy("10.10.0.0/33") or "")


def test_secrets_are_not_echoed() -> None:
    assert fields.check_pairing_code("A1B2C3") is None
    problem = fields.check_pairing_code("A1-B2 C3!") or ""
    assert "letters and digits" in problem and "A1-B2" not in problem
    key_problem = fields.check_api_key("Zq8vWx:Pt3kLm") or ""
    assert (
        "2 part(s)" in key_problem and "Zq8vWx" not in key_problem and "Pt3kLm" not in key_problem
    )
    assert fields.check_node_count(3) is None
    assert "1 (no HA) or 3 (HA)" in (fields.check_node_count(2) or "")
    assert fields.check_node_count(True) is not None


def test_repairs_that_let_the_preflight_go_on() -> None:
    assert fields.repaired_palette_endpoint("https://p.example.com/") == "https://p.example.com"
    assert fields.repaired_palette_endpoint("https://p.example.com") is None  # nothing to repair
    assert fields.repaired_palette_endpoint("http://p.example.com/") is None  # not repairable
    assert fields.repaired_maas_endpoint("http://m:5240") == "http://m:5240/MAAS"
    assert fields.repaired_maas_endpoint("http://m:5240/MAAS/api/2.0/") == "http://m:5240/MAAS"
    assert fields.repaired_maas_endpoint("http://m:5240/MAAS") is None
    assert fields.repaired_maas_endpoint("ftp://m/MAAS") is None
