"""Checking an OAuth 1.0a PLAINTEXT ``Authorization`` header the way MAAS does.

MAAS (src/maasserver/api/auth.py on top of piston3's OAuth server) checks, in this order: the
header carries all the OAuth parameters (else the request is anonymous, and an endpoint that
needs a user answers 401); ``oauth_version`` is 1.0; the consumer key is known (else
"Authorization Error: Invalid API key."); the token is known; the timestamp is not older than
300 s; the nonce was never seen for this consumer and token (it is recorded *before* the
signature is checked, so even a badly signed request burns its nonce); the signature method is
supported; the signature is ``&<token_secret>``. Every failure is a 401 whose text is
``Authorization Error: '<reason>'``.

One deliberate difference: for a wrong signature MAAS adds "Expected signature base string:
&<token secret>", i.e. it sends the real secret back. The simulator does not.

Sans-I/O: the caller passes the header and the time and gets a key or an :class:`OAuthRejected`.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

from protocol.maas.apikey import ApiKey

__all__ = ["REQUIRED_PARAMS", "NonceStore", "OAuthRejected", "OAuthVerifier", "parse_header"]

#: piston3's is_valid_request: without all of these the request is not an OAuth request at all
REQUIRED_PARAMS: frozenset[str] = frozenset(
    {
        "oauth_consumer_key",
        "oauth_token",
        "oauth_signature",
        "oauth_signature_method",
        "oauth_timestamp",
        "oauth_nonce",
    }
)

TIMESTAMP_THRESHOLD = 300  # seconds, as piston3's OAuthServer


class OAuthRejected(Exception):
    """The request claimed OAuth and failed a check; ``str()`` is the 401 body; ``reason`` a
    short tag for logs (unknown-key, bad-token, expired, reused-nonce, method, bad-signature)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_header(header: str | None) -> dict[str, str] | None:
    """OAuth parameters of an ``Authorization: OAuth k="v", ...`` header (None if not OAuth).

    Like piston3: split on commas, skip ``realm``, strip quotes, percent-decode values.
    """
    if header is None or not header.startswith("OAuth "):
        return None
    params: dict[str, str] = {}
    for part in header[6:].split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name == "realm":
            continue
        params[name] = unquote(value.strip().strip('"'))
    return params


@dataclass(slots=True)
class NonceStore:
    """Nonces seen per (consumer, token); forgotten once their timestamp could no longer pass
    the timestamp check anyway."""

    seen: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def check_and_add(self, consumer: str, token: str, nonce: str, timestamp: int) -> bool:
        """True if the nonce is new (and now recorded), False if it was used before."""
        key = (consumer, token, nonce)
        if key in self.seen:
            return False
        self.seen[key] = timestamp
        return True

    def prune(self, now: float) -> None:
        horizon = now - 2 * TIMESTAMP_THRESHOLD
        for key in [key for key, ts in self.seen.items() if ts < horizon]:
            del self.seen[key]


class OAuthVerifier:
    """Knows the valid API keys and the nonces already used."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self._keys: dict[str, ApiKey] = {}
        self.nonces = NonceStore()
        for key in keys:
            self.add_key(key)

    def add_key(self, key: ApiKey) -> None:
        self._keys[key.consumer_key] = key

    def remove_key(self, key: ApiKey) -> None:
        self._keys.pop(key.consumer_key, None)

    @property
    def keys(self) -> tuple[ApiKey, ...]:
        return tuple(self._keys.values())

    def verify(self, header: str | None, now: float) -> ApiKey | None:
        """The key that signed the request, None if it is anonymous; raises OAuthRejected."""
        params = parse_header(header)
        if params is None or not REQUIRED_PARAMS <= params.keys():
            return None
        version = params.get("oauth_version")
        if version and version != "1.0":
            raise _rejected(f"OAuth version {version} not supported.", "version")
        key = self._keys.get(params["oauth_consumer_key"])
        if key is None:
            raise OAuthRejected("Authorization Error: Invalid API key.", "unknown-key")
        token = params["oauth_token"]
        if not hmac.compare_digest(token.encode(), key.token_key.encode()):
            raise _rejected(f"Invalid access token: {token}", "bad-token")
        try:
            timestamp = int(params["oauth_timestamp"])
        except ValueError:
            # MAAS fails with a 500 here (int() raises); a clear 401 is more useful.
            raise _rejected(
                "oauth_timestamp must be an integer number of seconds, got "
                f"{params['oauth_timestamp']!r}",
                "bad-timestamp",
            ) from None
        if int(now) - timestamp > TIMESTAMP_THRESHOLD:
            raise _rejected(
                f"Expired timestamp: given {timestamp} and now {int(now)} has a greater "
                f"difference than threshold {TIMESTAMP_THRESHOLD}",
                "expired",
            )
        self.nonces.prune(now)
        nonce = params["oauth_nonce"]
        if not self.nonces.check_and_add(key.consumer_key, token, nonce, timestamp):
            raise _rejected(f"Nonce already used: {nonce}", "reused-nonce")
        method = params["oauth_signature_method"]
        if method != "PLAINTEXT":
            raise _rejected(
                f"Signature method {method} not supported try one of the following: PLAINTEXT",
                "method",
            )
        expected = "&" + key.token_secret
        if not hmac.compare_digest(params["oauth_signature"].encode(), expected.encode()):
            raise _rejected("Invalid signature.", "bad-signature")
        return key


def _rejected(reason_text: str, reason: str) -> OAuthRejected:
    return OAuthRejected(f"Authorization Error: {reason_text!r}", reason)
