"""Structured logs (key=value or JSON lines) that never carry a secret.

Every record goes through :class:`SecretFilter`, which replaces any registered secret (token,
API key, password, pairing code) found in the message or its arguments with ``***``: a
second line of defence behind the rule that code never logs them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable

_secrets: set[str] = set()


def register_secret(*values: str | None) -> None:
    """Remember values that must never reach a log line (passwords, tokens, API keys, pairing
    codes). A MAAS API key's token secret is remembered alone too: MAAS echoes it in errors."""
    for value in values:
        if value and len(value) >= 4:
            _secrets.add(value)
            if value.count(":") == 2:
                _secrets.add(value.rsplit(":", 1)[1])


def scrub(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):  # longest first: no partial leaks
        if secret in text:
            text = text.replace(secret, "***")
    return text


class SecretFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            record.msg = scrub(record.getMessage())
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


class KeyValueFormatter(logging.Formatter):
    def __init__(self, static: dict[str, str]) -> None:
        super().__init__()
        self.static = static

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields = "".join(f" {k}={v}" for k, v in self.static.items())
        line = f"{stamp} level={record.levelname.lower()} logger={record.name}{fields} "
        line += record.getMessage()
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, static: dict[str, str]) -> None:
        super().__init__()
        self.static = static

    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            **self.static,
            "msg": record.getMessage(),
        }
        if record.exc_text:
            body["exc"] = record.exc_text
        return json.dumps(body)


def setup(
    level: str = "INFO",
    fmt: str = "text",
    static: dict[str, str] | None = None,
    secrets: Iterable[str | None] = (),
) -> None:
    register_secret(*secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(SecretFilter())
    formatter = JsonFormatter if fmt == "json" else KeyValueFormatter
    handler.setFormatter(formatter(static or {}))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # At DEBUG the websockets library logs every handshake header, Authorization included:
    # keep it at INFO whatever the agent's level (the filter above would scrub it, but a
    # credential should not reach a log record at all).
    logging.getLogger("websockets").setLevel(max(logging.INFO, root.level))
