"""Signing requests the way MAAS checks them (MAAS API 2.0, src/maasserver/api/auth.py).

MAAS uses OAuth 1.0a with the PLAINTEXT method and an empty consumer secret, so the signature is
``"&" + token_secret``, percent-encoded in the header as ``%26<token_secret>``. The signature does
not cover the URL or the body; what makes a signed request unique is the nonce, which MAAS
remembers and refuses to see twice, and the timestamp (integer seconds), which must not be older
than five minutes. oauthlib generates a fresh nonce and timestamp on every call.
"""

from __future__ import annotations

from oauthlib import oauth1

from protocol.maas.apikey import ApiKey

__all__ = ["authorization_header"]


def authorization_header(api_key: ApiKey, method: str, url: str) -> str:
    """The ``Authorization`` header value for one request. Call once per request."""
    client = oauth1.Client(
        api_key.consumer_key,
        client_secret="",
        resource_owner_key=api_key.token_key,
        resource_owner_secret=api_key.token_secret,
        signature_method=oauth1.SIGNATURE_PLAINTEXT,
    )
    # PLAINTEXT ignores the body, and oauthlib would insist on a form content type to look at
    # one, so the body is not passed.
    _, headers, _ = client.sign(url, http_method=method.upper())
    return str(headers["Authorization"])
