"""The relay allowlist: deny by default, exact names, CIDR blocks, ports."""

from __future__ import annotations

import pytest

from agent.exceptions import ConfigError
from agent.relay import Allowlist


def test_empty_allowlist_denies_everything() -> None:
    assert not Allowlist([]).allows("127.0.0.1", 22)


@pytest.mark.parametrize(
    ("entry", "host", "port", "expected"),
    [
        ("10.11.12.13:5240", "10.11.12.13", 5240, True),
        ("10.11.12.13:5240", "10.11.12.13", 22, False),
        ("10.11.12.13:5240", "10.11.12.14", 5240, False),
        ("maas.lan:5240", "MAAS.lan.", 5240, True),
        ("maas.lan:5240", "evil.maas.lan", 5240, False),
        ("maas.lan:5240", "10.11.12.13", 5240, False),
        ("10.11.0.0/16:*", "10.11.200.1", 8080, True),
        ("10.11.0.0/16:*", "10.12.0.1", 8080, False),
        ("10.11.0.0/16:*", "maas.lan", 8080, False),
        ("[fd00::/64]:5240", "fd00::7", 5240, True),
        ("[fd00::1]:5240", "[fd00::1]", 5240, True),
        ("127.0.0.1:8080", "169.254.169.254", 80, False),
    ],
)
def test_entries(entry: str, host: str, port: int, expected: bool) -> None:
    assert Allowlist([entry]).allows(host, port) is expected


@pytest.mark.parametrize("entry", ["10.0.0.1", "maas.lan:", ":5240", "host:99999", "host:abc"])
def test_malformed_entries_say_how_to_write_one(entry: str) -> None:
    with pytest.raises(ConfigError, match="allowlist entry"):
        Allowlist([entry])
