"""One checker per answer of the product doc's tables, shared by the prompts (which ask again)
and by pcg.yaml loading (which lists every problem at once).

Each ``check_*`` returns None when the value is fine, else a message that says what is wrong,
shows the value (never a secret: passwords, API keys and pairing codes are not echoed) and
says what to enter instead.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from protocol.aio.proxy import redact_url
from protocol.maas.apikey import ApiKey
from protocol.maas.exceptions import InvalidApiKey

DEFAULT_PALETTE_ENDPOINT = "https://console.spectrocloud.com"
#: the MAAS Kubernetes pack's default (product doc, prerequisites warning)
DEFAULT_POD_CIDR = "192.168.0.0/16"
#: Kubernetes' default service range
DEFAULT_SERVICE_RANGE = "10.96.0.0/12"

_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PAIRING = re.compile(r"^[A-Za-z0-9]{4,64}$")
_MAAS_NAME = re.compile(r"^[^\s/]{1,256}$")


def check_name(value: str) -> str | None:
    if _NAME.match(value):
        return None
    return (
        f"gateway name {value!r} is not allowed: use 1-63 lowercase letters, digits and '-', "
        "starting with a letter and not ending with '-' (example: maas-pcg-1)"
    )


def check_palette_endpoint(value: str) -> str | None:
    text = value.strip()
    example = DEFAULT_PALETTE_ENDPOINT
    if not text:
        return f"the Palette endpoint is empty: enter its URL, e.g. {example}"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return f"Palette endpoint {value!r} is not a valid URL: enter it like {example}"
    if parts.scheme != "https":
        hint = (
            "Palette is served over HTTPS" if parts.scheme == "http" else "start it with https://"
        )
        return f"Palette endpoint {value!r} must start with https:// ({hint}), e.g. {example}"
    if not parts.hostname:
        return f"Palette endpoint {value!r} has no host name: enter it like {example}"
    if parts.username or parts.password:
        return f"Palette endpoint {redact_url(value)!r} must not carry credentials"
    if parts.query or parts.fragment:
        return f"Palette endpoint {value!r} must not have a query or '#': use {_origin(parts)}"
    if text.endswith("/"):
        return (
            f"Palette endpoint {value!r} ends with '/': remove the trailing slash "
            f"({text.rstrip('/')})"
        )
    if parts.path:
        return (
            f"Palette endpoint {value!r} has a path ({parts.path}): enter only the scheme and "
            f"host, e.g. {_origin(parts)}"
        )
    return None


def _origin(parts: SplitResult) -> str:
    return f"{parts.scheme}://{parts.netloc}"


def check_username(value: str) -> str | None:
    if _EMAIL.match(value.strip()):
        return None
    return (
        f"Palette username {value!r} is not an email address: enter the address you sign in "
        "with, e.g. user1@company.com"
    )


def check_password(value: str) -> str | None:
    if value:
        return None
    return "the Palette password is empty: enter the password of a local (non-SSO) tenant admin"


def check_pairing_code(value: str) -> str | None:
    if _PAIRING.match(value.strip()):
        return None
    # the code is a secret: say what it should look like, not what was typed
    return (
        "the pairing code should be the letters and digits shown in Palette under Tenant "
        "Settings > Private Cloud Gateways > Create Private Cloud Gateway > MAAS (like A1B2C3)"
    )


def check_proxy(value: str, which: str) -> str | None:
    text = value.strip()
    if not text:
        return None
    shown = redact_url(text)
    example = f"{'https' if which == 'HTTPS' else 'http'}://PROXYIP:PROXYPORT"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018
    except ValueError:
        return (
            f"{which} proxy {shown!r} is not a valid URL: enter it like {example}, "
            "or leave it blank"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return (
            f"{which} proxy {shown!r} must be http:// or https:// with a host, like {example} "
            "(USERNAME:PASSWORD@ before the host if it needs a login), or blank for none"
        )
    return None


def check_no_proxy(value: str) -> str | None:
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if " " in entry or "/" in entry and _network(entry) is None:
            return (
                f"no_proxy entry {entry!r} is not a host, domain, IP address or CIDR: use a "
                "comma-separated list like maas.company.com,10.10.0.0/16"
            )
    return None


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def check_cidr(value: str, what: str, *, min_prefix: int, max_prefix: int) -> str | None:
    text = value.strip()
    example = DEFAULT_POD_CIDR if what == "pod CIDR" else DEFAULT_SERVICE_RANGE
    try:
        network = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        return f"{what} {value!r} is not an IPv4 CIDR: enter it like {example}"
    if "/" not in text:
        return f"{what} {value!r} has no prefix length: enter it like {example}"
    if str(network) != text:
        return f"{what} {value!r} has host bits set: did you mean {network}?"
    if not min_prefix <= network.prefixlen <= max_prefix:
        return (
            f"{what} {value!r} is a /{network.prefixlen}: use a prefix between /{min_prefix} "
            f"and /{max_prefix}, e.g. {example}"
        )
    return None


def check_pod_cidr(value: str) -> str | None:
    # every node takes a /24 of the pod range: anything smaller than a /24 leaves no room
    return check_cidr(value, "pod CIDR", min_prefix=8, max_prefix=24)


def check_service_range(value: str) -> str | None:
    # kube-apiserver refuses a service range larger than /12 (2^20 addresses)
    return check_cidr(value, "service IP range", min_prefix=12, max_prefix=24)


def check_maas_endpoint(value: str) -> str | None:
    text = value.strip()
    example = "http://10.11.12.13:5240/MAAS"
    if not text:
        return f"the MAAS API endpoint is empty: enter it like {example}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return f"MAAS API endpoint {value!r} has an invalid port: enter it like {example}"
    if parts.scheme not in ("http", "https"):
        return f"MAAS API endpoint {value!r} must start with http:// or https://, like {example}"
    if not parts.hostname:
        return f"MAAS API endpoint {value!r} has no host: enter it like {example}"
    if parts.username or parts.password:
        return f"MAAS API endpoint {redact_url(value)!r} must not carry credentials"
    if parts.query or parts.fragment:
        return f"MAAS API endpoint {value!r} must not have a query or '#': enter it like {example}"
    if port == 0:
        return f"MAAS API endpoint {value!r} has port 0: MAAS listens on 5240 by default"
    if parts.path != "/MAAS":
        root = f"{parts.scheme}://{parts.netloc}/MAAS"
        if parts.path in ("", "/"):
            why = "is missing /MAAS at the end"
        elif parts.path.rstrip("/") == "/MAAS":
            why = "ends with '/'"
        elif parts.path.startswith("/MAAS/"):
            why = "goes past MAAS's root"
        else:
            why = "does not end with /MAAS"
        return f"MAAS API endpoint {value!r} {why}: enter it as {root} (syntax matters)"
    return None


def check_api_key(value: str) -> str | None:
    try:
        ApiKey.parse(value)
    except InvalidApiKey as exc:
        return str(exc)
    return None


def check_maas_name(value: str, what: str) -> str | None:
    if _MAAS_NAME.match(value):
        return None
    return f"{what} {value!r} is not a MAAS name: pick one that MAAS lists"


def check_node_count(value: object) -> str | None:
    if value in (1, 3) and not isinstance(value, bool):
        return None
    return f"node count {value!r} must be 1 (no HA) or 3 (HA)"


def check_ca_file(value: str) -> str | None:
    path = Path(value).expanduser()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"Palette CA file {value!r} cannot be read ({exc.strerror}): give a PEM file"
    if "-----BEGIN CERTIFICATE-----" not in text:
        return f"Palette CA file {value!r} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    return None


def networks_overlap(first: str, second: str) -> bool:
    a, b = _network(first), _network(second)
    return a is not None and b is not None and a.version == b.version and a.overlaps(b)


def repaired_palette_endpoint(value: str) -> str | None:
    """The endpoint without its trailing '/', when that is all that is wrong (so that the
    preflight can go on checking the rest); None otherwise."""
    fixed = value.strip().rstrip("/")
    return fixed if fixed != value and check_palette_endpoint(fixed) is None else None


def repaired_maas_endpoint(value: str) -> str | None:
    """``scheme://host:port/MAAS`` when only the path is wrong; None otherwise."""
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return None
    fixed = f"{parts.scheme}://{parts.netloc}/MAAS"
    return fixed if fixed != value and check_maas_endpoint(fixed) is None else None
