"""The installer's log file: key=value lines in the install directory, scrubbed of secrets.

Code never logs a secret; the filter of :mod:`agent.logs` is the second line of defence: every
value registered with :func:`register_secret` (password, API key, its token secret, pairing
code, Palette token) is replaced with ``***`` in every record that reaches the file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from agent.logs import KeyValueFormatter, SecretFilter, register_secret, scrub

__all__ = ["register_secret", "scrub", "to_file"]


def to_file(path: Path, level: int = logging.INFO) -> Path:
    """Send the installer's, the MAAS client's and aiohttp's records to ``path`` (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8"))
    handler.addFilter(SecretFilter())
    handler.setFormatter(KeyValueFormatter({}))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return path
