"""A throwaway network namespace of the test's own, for traffic that must stay inside it."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2 (apt-get install -y iproute2)"
    name = "pcgprobe" + secrets.token_hex(3)
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


@contextmanager
def namespace(addresses_on_lo: tuple[str, ...] = ()) -> Iterator[str]:
    """A new namespace with lo up and ``addresses_on_lo`` added to it; deleted afterwards."""
    name = "pcgt" + secrets.token_hex(4)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        for address in addresses_on_lo:
            subprocess.run(["ip", "-n", name, "addr", "add", address, "dev", "lo"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
