"""The installer's log file: key=value lines in the install directory, scrubbed of secrets.

Code never logs a secret; :class:`SecretFilter` is the second line of defence: every value
registered with :func:`register_secret` (password, API key, its token secret, pairing code,
Palette token) is replaced with ``***`` in every record that reaches the file.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

_secrets: set[str] = set()


def register_secret(*values: str | None) -> None:
    for value in values:
        if value and len(value) >= 4:
            _secrets.add(value)
            # the token secret alone also appears in MAAS's error texts
            if value.count(":") == 2:
                _secrets.add(value.rsplit(":", 1)[1])


def scrub(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text


class SecretFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = (
            f"{stamp} level={record.levelname.lower()} logger={record.name} {record.getMessage()}"
        )
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


def to_file(path: Path, level: int = logging.INFO) -> Path:
    """Send the installer's, the MAAS client's and aiohttp's records to ``path`` (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8"))
    handler.addFilter(SecretFilter())
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return path
