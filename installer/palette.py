"""The few Palette REST calls the installer makes, as a tenant admin.

::

    async with PaletteClient("https://palette.example.com", ca_file=None) as palette:
        await palette.login("user1@company.com", password)   # POST /v1/auth/authenticate
        await palette.validate_pairing_code(code)             # POST /v1/overlords/pairing/validate
        await palette.overlords()                             # GET  /v1/overlords
        await palette.cloud_accounts()                        # GET  /v1/cloudaccounts/maas

TLS is always verified: against the system's CAs, or against ``ca_file`` (a PEM bundle) when
Palette uses a private CA. The password and the session token never reach a log line or a
message; the token is sent in the ``Authorization`` header as Palette expects.
"""

from __future__ import annotations

import json
import logging
import ssl
from types import TracebackType
from typing import Any

import aiohttp

from installer.exceptions import (
    LoginRejected,
    PairingCodeRejected,
    PaletteApiError,
    PaletteUnreachable,
    SsoUserNotAllowed,
)

log = logging.getLogger("pcg.installer.palette")

_PAIRING_CODES = {"PairingCodeInvalid", "PairingCodeExpired", "PairingCodeUsed"}


class PaletteClient:
    def __init__(self, endpoint: str, *, ca_file: str | None = None, timeout: float = 20.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.ca_file = ca_file
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._token = ""
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            try:
                context = ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise PaletteUnreachable(
                    f"cannot load the Palette CA file {self.ca_file}: {exc}; give a PEM file "
                    "with --ca-file (palette.caFile)"
                ) from None
            # trust_env: the installer host may itself sit behind the proxy it configures
            self._http = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(ssl=context),
                trust_env=True,
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> PaletteClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def logged_in(self) -> bool:
        return bool(self._token)

    # -- calls ----------------------------------------------------------------------------

    async def login(self, username: str, password: str) -> None:
        """Raises LoginRejected, SsoUserNotAllowed, PaletteUnreachable, PaletteApiError."""
        body = await self._call(
            "POST",
            "/v1/auth/authenticate",
            {"emailId": username, "password": password},
            action=f"sign in to Palette as {username}",
            auth=False,
        )
        token = body.get("Authorization") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise PaletteApiError(
                f"Palette at {self.endpoint} answered the sign-in without a token; is the "
                "endpoint really Palette?",
                status=200,
            )
        self._token = token
        log.info("palette.login user=%s", username)

    async def validate_pairing_code(self, code: str) -> str:
        """The code's expiry time (ISO 8601) if it can still register a gateway; raises
        PairingCodeRejected otherwise."""
        body = await self._call(
            "POST",
            "/v1/overlords/pairing/validate",
            {"pairingCode": code},
            action="check the pairing code",
        )
        if not isinstance(body, dict) or body.get("valid") is not True:
            raise PairingCodeRejected(
                "Palette says the pairing code is not valid; get the code shown under Tenant "
                "Settings > Private Cloud Gateways > Create Private Cloud Gateway > MAAS",
                status=200,
            )
        return str(body.get("expiresAt", ""))

    async def overlords(self) -> list[dict[str, Any]]:
        body = await self._call("GET", "/v1/overlords", None, action="list gateways")
        return _items(body)

    async def cloud_accounts(self) -> list[dict[str, Any]]:
        body = await self._call(
            "GET", "/v1/cloudaccounts/maas", None, action="list MAAS cloud accounts"
        )
        return _items(body)

    # -- plumbing -------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, payload: Any, *, action: str, auth: bool = True
    ) -> Any:
        headers = {"Accept": "application/json"}
        if auth:
            if not self._token:
                raise RuntimeError(f"log in to Palette before trying to {action}")
            headers["Authorization"] = self._token
        url = self.endpoint + path
        try:
            async with self._session().request(
                method, url, json=payload, headers=headers
            ) as response:
                text = await response.text()
                status = response.status
        except aiohttp.ClientConnectorCertificateError as exc:
            raise PaletteUnreachable(
                f"cannot {action}: the TLS certificate of {self.endpoint} is not trusted "
                f"({exc.certificate_error}). If Palette uses a private CA, give its PEM file "
                "with --ca-file (palette.caFile in pcg.yaml); verification is never turned off"
            ) from None
        except aiohttp.ClientSSLError as exc:
            raise PaletteUnreachable(
                f"cannot {action}: TLS with {self.endpoint} failed ({exc}); check the endpoint "
                "and the CA file"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise PaletteUnreachable(
                f"cannot {action}: {self.endpoint} is unreachable ({exc.__class__.__name__}: "
                f"{exc}). Check the endpoint, DNS, and the proxy settings of this host"
            ) from None
        except TimeoutError:
            raise PaletteUnreachable(
                f"cannot {action}: {self.endpoint} did not answer in "
                f"{self._timeout.total:g} s; check the endpoint and the network"
            ) from None
        try:
            body = json.loads(text) if text else None
        except json.JSONDecodeError:
            body = None
        if 200 <= status < 300:
            if body is None and text:
                raise PaletteApiError(
                    f"cannot {action}: {self.endpoint} answered {status} with something that "
                    "is not JSON; is the endpoint really Palette (https://HOST, no path)?",
                    status=status,
                )
            return body
        raise _error(status, body, action, self.endpoint)


def _items(body: Any) -> list[dict[str, Any]]:
    items = body.get("items") if isinstance(body, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _error(status: int, body: Any, action: str, endpoint: str) -> PaletteApiError:
    code = str(body.get("code", "")) if isinstance(body, dict) else ""
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    if code == "SsoUserNotAllowed":
        return SsoUserNotAllowed(
            message
            or "this user signs in with SSO only: use a local (non-SSO) tenant admin account",
            status=status,
            code=code,
        )
    if code == "InvalidCredentials" or (status == 401 and action.startswith("sign in")):
        return LoginRejected(
            f"Palette refused the sign-in ({message or 'wrong email or password'}): check the "
            "username (your sign-in email) and the password of a local tenant admin",
            status=status,
            code=code,
        )
    if code in _PAIRING_CODES:
        return PairingCodeRejected(
            f"pairing code rejected ({code}): {message}", status=status, code=code
        )
    if status == 429:
        return PaletteApiError(
            f"cannot {action}: Palette is rate-limiting this address (429); wait a minute and "
            "rerun",
            status=status,
            code=code,
        )
    if status == 404:
        return PaletteApiError(
            f"cannot {action}: {endpoint} has no such API (404); is the endpoint Palette's "
            "URL, with no path?",
            status=status,
            code=code,
        )
    detail = f"{code}: {message}" if code or message else f"HTTP {status}"
    return PaletteApiError(f"cannot {action}: Palette answered {detail}", status=status, code=code)
