"""One signed HTTP exchange with MAAS: URL building, signing, retries, error mapping, logging.

:class:`protocol.maas.client.MaasClient` builds on this; nothing here knows about machines.
Requests follow MAAS API 2.0 conventions: the operation goes in the query string
(``POST machines/?op=allocate``), parameters of a GET in the query string, parameters of a POST
as a form body, repeated names for lists.

Connection failures are retried only for GET: a POST that vanished with the connection may
have been carried out (an allocate would then allocate twice).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from protocol.maas.apikey import ApiKey
from protocol.maas.auth import authorization_header
from protocol.maas.exceptions import (
    AuthError,
    BadRequest,
    Conflict,
    Forbidden,
    InvalidEndpoint,
    MaasApiError,
    MaasTimeout,
    MaasUnreachable,
    NoMatchingMachine,
    NotFound,
    Retryable,
    WrongState,
)
from protocol.maas.retry import RetryPolicy, is_retryable_status, parse_retry_after

__all__ = ["API_PATH", "MaasTransport", "Params", "normalize_endpoint"]

log = logging.getLogger("protocol.maas")

#: where the 2.0 API lives under the MAAS endpoint
API_PATH = "api/2.0/"

#: name/value pairs; a name may repeat (MAAS's way of sending a list)
Params = Sequence[tuple[str, str]]

_BODY_LIMIT = 300


def normalize_endpoint(endpoint: str) -> str:
    """``http://host:5240/MAAS`` from what a user may type (trailing ``/``, ``/api/2.0``)."""
    text = endpoint.strip() if isinstance(endpoint, str) else ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidEndpoint(
            f"MAAS endpoint {endpoint!r} is not an http(s) URL with a host; expected something "
            "like http://maas.example.com:5240/MAAS"
        )
    if parts.query or parts.fragment:
        raise InvalidEndpoint(
            f"MAAS endpoint {endpoint!r} has a query or fragment; give only the API root, "
            "e.g. http://maas.example.com:5240/MAAS"
        )
    path = parts.path.rstrip("/")
    for suffix in ("/api/2.0", "/api"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return f"{parts.scheme}://{parts.netloc}{path}"


class MaasTransport:
    """Signed requests to one MAAS. Owns an aiohttp session unless one is given."""

    def __init__(
        self,
        endpoint: str,
        api_key: ApiKey,
        *,
        timeout: float,
        retry: RetryPolicy,
        trust_env: bool,
        session: aiohttp.ClientSession | None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.endpoint = normalize_endpoint(endpoint)
        self.api_root = f"{self.endpoint}/{API_PATH}"
        self.api_key = api_key
        self.timeout = timeout
        self.retry = retry
        self._trust_env = trust_env
        self._session = session
        self._owns_session = session is None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                trust_env=self._trust_env, headers={"User-Agent": "pcg-maas-client/0.1"}
            )
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()

    def url(self, path: str, *, op: str | None = None, query: Params = ()) -> str:
        pairs = ([("op", op)] if op else []) + list(query)
        return self.api_root + path + (f"?{urlencode(pairs)}" if pairs else "")

    async def call(
        self,
        method: str,
        path: str,
        *,
        op: str | None = None,
        query: Params = (),
        form: Params | None = None,
        action: str,
        subject: str | None = None,
        signed: bool = True,
    ) -> Any:
        """Make the request (with retries) and return the decoded JSON (or text) body.

        ``action`` ("allocate a machine") and ``subject`` ("machine 'abc123'") only shape
        error messages.
        """
        session = self._ensure_session()
        url = self.url(path, op=op, query=query)
        shown = _show(method, url)
        body = urlencode(list(form)) if form is not None else None
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            headers = {"Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            if signed:
                headers["Authorization"] = authorization_header(self.api_key, method, url)
            log.debug("maas.request method=%s url=%s attempt=%d", method, shown, attempt)
            try:
                async with session.request(
                    method,
                    url,
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    text = await response.text(errors="replace")
                    content_type = response.content_type
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
            except TimeoutError as exc:
                error: MaasUnreachable = MaasTimeout(
                    f"MAAS at {self.endpoint} did not answer {shown} within {self.timeout:g} s. "
                    "MAAS may be overloaded or the network slow; try again, or raise the timeout.",
                    url=url,
                )
                if await self._retry_connection(method, attempt, shown, error):
                    continue
                raise error from exc
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                reason = self.api_key.redact(str(exc) or type(exc).__name__)
                error = MaasUnreachable(
                    f"Cannot reach MAAS at {self.endpoint} ({shown}): {reason}. Check the endpoint "
                    "URL (e.g. http://maas.example.com:5240/MAAS), that MAAS is running, and that "
                    "no firewall or proxy is in the way (with a proxy set, MAAS must be listed in "
                    "no_proxy).",
                    url=url,
                )
                if await self._retry_connection(method, attempt, shown, error):
                    continue
                raise error from exc
            elapsed = time.monotonic() - started
            log.debug(
                "maas.response method=%s url=%s status=%d elapsed_ms=%d",
                method,
                shown,
                status,
                elapsed * 1000,
            )
            if 200 <= status < 300:
                try:
                    return _decode(text, content_type)
                except ValueError:
                    raise MaasApiError(
                        f"MAAS answered {shown} with HTTP {status} but a body that is not valid "
                        f"JSON ({_clip(self.api_key.redact(text)) or 'empty'}). Is {self.endpoint} "
                        "really MAAS, and not a proxy or login page?",
                        status=status,
                        method=method,
                        url=url,
                        body=self.api_key.redact(text),
                    ) from None
            clean = self.api_key.redact(text).strip()
            if is_retryable_status(status, retry_after):
                if attempt < self.retry.attempts:
                    delay = self.retry.delay(attempt, retry_after)
                    log.warning(
                        "maas.retry method=%s url=%s status=%d retry_after=%s attempt=%d "
                        "delay_s=%.2f",
                        method,
                        shown,
                        status,
                        retry_after,
                        attempt,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                raise Retryable(
                    f"MAAS kept answering HTTP {status}"
                    f"{'' if retry_after is None else f' (Retry-After: {retry_after:g} s)'} "
                    f"to {shown} after {attempt} attempt(s) over {elapsed:.1f} s: "
                    f"{_sentence(_clip(clean) or 'no details')} MAAS is busy or restarting; "
                    "try again later.",
                    status=status,
                    method=method,
                    url=url,
                    body=clean,
                    retry_after=retry_after,
                    attempts=attempt,
                )
            raise self._error(status, method, url, clean, content_type, action, subject, op)

    async def _retry_connection(
        self, method: str, attempt: int, shown: str, error: MaasUnreachable
    ) -> bool:
        if method.upper() != "GET" or attempt >= self.retry.attempts:
            return False
        delay = self.retry.delay(attempt)
        log.warning(
            "maas.retry url=%s error=%s attempt=%d delay_s=%.2f",
            shown,
            type(error).__name__,
            attempt,
            delay,
        )
        await asyncio.sleep(delay)
        return True

    def _error(
        self,
        status: int,
        method: str,
        url: str,
        body: str,
        content_type: str,
        action: str,
        subject: str | None,
        op: str | None,
    ) -> MaasApiError:
        shown = _show(method, url)
        detail = _clip(body) or "no details"
        fields = _field_errors(body, content_type) if status == 400 else {}
        if fields:
            detail = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in fields.items())
        said = _sentence(detail)
        common: dict[str, Any] = {"status": status, "method": method, "url": url, "body": body}
        if status == 400:
            return BadRequest(
                f"MAAS rejected the request to {action}: {said} Fix the value(s) named here and "
                f"try again. ({shown} -> HTTP 400)",
                field_errors=fields,
                **common,
            )
        if status == 401:
            return AuthError(
                f"MAAS at {self.endpoint} refused the API key (fingerprint "
                f"{self.api_key.fingerprint}) when trying to {action}: {said} Check that the key "
                "was copied whole from the MAAS UI (user menu > API keys), belongs to this MAAS "
                "and was not deleted, and that this machine's clock is within 5 minutes of "
                "MAAS's.",
                **common,
            )
        if status == 403:
            return Forbidden(
                f"MAAS does not allow the API key's user to {action}: {said} Use the key of a "
                "user with the needed rights (an administrator for admin-only actions).",
                **common,
            )
        if status == 404:
            if subject is not None:
                message = (
                    f"MAAS has no {subject} ({detail}). Check the name or id; list what exists "
                    "to see the valid ones."
                )
            else:
                message = (
                    f"MAAS answered 404 to {shown} ({detail}). Check that {self.endpoint} is "
                    "MAAS's API root: it normally ends with /MAAS, e.g. "
                    "http://maas.example.com:5240/MAAS."
                )
            return NotFound(message, **common)
        if status == 409:
            if op == "allocate":
                return NoMatchingMachine(
                    f"MAAS could not {action}: {said} Commission or release machines that meet "
                    "these constraints, or relax the constraints.",
                    **common,
                )
            if subject is not None:
                return WrongState(
                    f"MAAS refused to {action}: {said} Check the current status of the {subject}, "
                    "wait for it to settle, or release it first.",
                    **common,
                )
            return Conflict(f"MAAS refused to {action}: {said}", **common)
        return MaasApiError(
            f"MAAS answered HTTP {status} to {shown} while trying to {action}: {said} Check the "
            "MAAS region logs (regiond.log) for the cause.",
            **common,
        )


def _show(method: str, url: str) -> str:
    parts = urlsplit(url)
    return f"{method} {parts.path}{'?' + parts.query if parts.query else ''}"


def _sentence(text: str) -> str:
    text = text.rstrip()
    return text if text.rstrip("'\"").endswith((".", "!", "?", "…")) else text + "."


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _BODY_LIMIT else text[: _BODY_LIMIT - 1] + "…"


def _decode(text: str, content_type: str) -> Any:
    if content_type.endswith("json") or text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            if content_type.endswith("json"):
                raise
    return text


def _field_errors(body: str, content_type: str) -> dict[str, list[str]]:
    """MAAS's 400 body is ``{"field": ["message", ...]}`` for form errors, else plain text."""
    if not (content_type.endswith("json") or body[:1] == "{"):
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(data, Mapping):
        return {}
    fields: dict[str, list[str]] = {}
    for name, messages in data.items():
        if isinstance(messages, str):
            fields[str(name)] = [messages]
        elif isinstance(messages, Sequence):
            fields[str(name)] = [str(message) for message in messages]
        else:
            fields[str(name)] = [str(messages)]
    return fields
