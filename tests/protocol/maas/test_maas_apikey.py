"""The API key: three parts, errors that say which part is wrong, never the key itself."""

from __future__ import annotations

import pytest

from protocol.maas import ApiKey, InvalidApiKey

CONSUMER = "AbCdEfGhIjKlMnOpQr"
TOKEN = "StUvWxYz0123456789"
SECRET = "s3cr3tS3CR3Ts3cr3tS3CR3Ts3cr3tXY"
KEY = f"{CONSUMER}:{TOKEN}:{SECRET}"


def test_parses_three_parts_and_ignores_surrounding_whitespace() -> None:
    key = ApiKey.parse(f"  {KEY}\n")
    assert key.parts() == (CONSUMER, TOKEN, SECRET)
    assert key.reveal() == KEY


@pytest.mark.parametrize(
    ("text", "count"),
    [
        (f"{CONSUMER}:{TOKEN}", 2),
        (f"{CONSUMER}{TOKEN}{SECRET}", 1),
        (f"{KEY}:{KEY}", 6),
    ],
)
def test_wrong_number_of_parts_says_how_many(text: str, count: int) -> None:
    with pytest.raises(InvalidApiKey) as caught:
        ApiKey.parse(text)
    message = str(caught.value)
    assert f"has {count} part(s)" in message
    assert "expected 3" in message
    assert SECRET not in message and TOKEN not in message and CONSUMER not in message


@pytest.mark.parametrize(
    ("text", "position", "name"),
    [
        (f":{TOKEN}:{SECRET}", 1, "consumer_key"),
        (f"{CONSUMER}::{SECRET}", 2, "token_key"),
        (f"{CONSUMER}:{TOKEN}:", 3, "token_secret"),
    ],
)
def test_empty_part_is_named(text: str, position: int, name: str) -> None:
    with pytest.raises(InvalidApiKey, match=rf"part {position} of 3 \({name}\) is empty") as caught:
        ApiKey.parse(text)
    assert SECRET not in str(caught.value)


def test_whitespace_inside_a_part_is_named_without_echoing_it() -> None:
    broken = f"{CONSUMER}:{TOKEN}:{SECRET[:10]} {SECRET[10:]}"
    with pytest.raises(InvalidApiKey, match=r"part 3 of 3 \(token_secret\) contains whitespace"):
        ApiKey.parse(broken)


def test_empty_key() -> None:
    with pytest.raises(InvalidApiKey, match="is empty"):
        ApiKey.parse("   ")


def test_invalid_key_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        ApiKey.parse("nope")


def test_repr_and_str_never_show_the_key() -> None:
    key = ApiKey.parse(KEY)
    for text in (repr(key), str(key), f"{key}", str([key])):
        for part in key.parts():
            assert part not in text
    assert key.fingerprint in repr(key)
    assert len(key.fingerprint) == 12


def test_redact_scrubs_every_part() -> None:
    key = ApiKey.parse(KEY)
    server_text = f"Invalid signature. Expected signature base string: &{SECRET} for {TOKEN}"
    cleaned = key.redact(server_text)
    assert SECRET not in cleaned and TOKEN not in cleaned
    assert "<redacted>" in cleaned
