"""The MAAS API key: ``consumer_key:token_key:token_secret``.

MAAS hands out keys of exactly three colon-separated parts (18, 18 and 32 characters on the
MAAS versions we know; other lengths are accepted). The consumer secret of MAAS's OAuth 1.0a
scheme is always empty, so the three parts are all a client needs (MAAS API 2.0, api/auth.py).

Nothing here ever prints the key: ``repr()`` and ``str()`` are redacted, parse errors say which
part is wrong without quoting any of it, and :meth:`ApiKey.redact` scrubs the key's parts out of
text we did not write (server replies) before it goes into an error message or a log line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import quote

from protocol.maas.exceptions import InvalidApiKey

__all__ = ["PART_NAMES", "ApiKey"]

#: the three parts, in order
PART_NAMES: tuple[str, str, str] = ("consumer_key", "token_key", "token_secret")

_WHERE_TO_GET_ONE = (
    "Copy the whole key from the MAAS web UI (user menu > API keys) or run "
    "`maas apikey --username <user>` on the MAAS region controller."
)

REDACTED = "<redacted>"


@dataclass(frozen=True, slots=True, repr=False)
class ApiKey:
    """A parsed MAAS API key. Build one with :meth:`parse`."""

    consumer_key: str
    token_key: str
    token_secret: str

    def __post_init__(self) -> None:
        for position, (name, value) in enumerate(zip(PART_NAMES, self.parts(), strict=True), 1):
            _check_part(position, name, value)

    @classmethod
    def parse(cls, text: str) -> ApiKey:
        """Parse ``consumer_key:token_key:token_secret``; surrounding whitespace is ignored.

        Raises :class:`InvalidApiKey` naming the problem (number of parts, which part is empty
        or holds whitespace) and never quoting the key.
        """
        if not isinstance(text, str):
            raise InvalidApiKey(
                f"MAAS API key must be a string, got {type(text).__name__}. {_WHERE_TO_GET_ONE}"
            )
        stripped = text.strip()
        if not stripped:
            raise InvalidApiKey(
                "MAAS API key is empty; expected consumer_key:token_key:token_secret. "
                + _WHERE_TO_GET_ONE
            )
        parts = stripped.split(":")
        if len(parts) != 3:
            raise InvalidApiKey(
                f"MAAS API key has {len(parts)} part(s) separated by ':', expected 3 "
                f"(consumer_key:token_key:token_secret, {len(stripped)} characters given). "
                "It was probably truncated or two keys were pasted together. " + _WHERE_TO_GET_ONE
            )
        return cls(parts[0], parts[1], parts[2])

    def parts(self) -> tuple[str, str, str]:
        return (self.consumer_key, self.token_key, self.token_secret)

    def reveal(self) -> str:
        """The key as MAAS writes it. Only for writing it where it belongs (a 0600 file)."""
        return ":".join(self.parts())

    @property
    def fingerprint(self) -> str:
        """A short, stable, non-reversible id for logs: which key, without the key."""
        return hashlib.sha256(self.reveal().encode()).hexdigest()[:12]

    def redact(self, text: str) -> str:
        """``text`` with every part of this key (and its %-encoded form) replaced."""
        variants = {form for part in self.parts() for form in (part, quote(part, safe=""))}
        for variant in sorted(variants, key=len, reverse=True):
            text = text.replace(variant, REDACTED)
        return text

    def __repr__(self) -> str:
        return f"ApiKey(fingerprint={self.fingerprint!r})"

    __str__ = __repr__


def _check_part(position: int, name: str, value: str) -> None:
    if not isinstance(value, str):
        raise InvalidApiKey(
            f"MAAS API key part {position} of 3 ({name}) must be a string, "
            f"got {type(value).__name__}."
        )
    if value == "":
        raise InvalidApiKey(
            f"MAAS API key part {position} of 3 ({name}) is empty; expected "
            "consumer_key:token_key:token_secret with no empty part. " + _WHERE_TO_GET_ONE
        )
    if any(ch.isspace() for ch in value):
        raise InvalidApiKey(
            f"MAAS API key part {position} of 3 ({name}) contains whitespace; the key was "
            "probably wrapped or split when pasted. " + _WHERE_TO_GET_ONE
        )
    if not value.isascii() or not value.isprintable():
        raise InvalidApiKey(
            f"MAAS API key part {position} of 3 ({name}) contains non-ASCII or control "
            "characters; MAAS keys are plain letters and digits. " + _WHERE_TO_GET_ONE
        )
