"""A throwaway CA and a server certificate for the tests (made by the demo's generator)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from installer.demo_pki import make_pki as _make_pki


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_pki(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Pki:
    return Pki(*_make_pki(directory, hosts))
