"""What a long-running process reports about itself: asyncio tasks, open fds, RSS (Linux)."""

from __future__ import annotations

import asyncio
import os


def rss_bytes(pid: int | None = None) -> int | None:
    """VmRSS of ``pid`` (this process when None) from /proc, or None where there is no /proc."""
    try:
        with open(f"/proc/{'self' if pid is None else pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def process_stats() -> dict[str, int]:
    stats = {"tasks": len(asyncio.all_tasks())}
    try:
        stats["fds"] = len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux: tasks only
        return stats
    rss = rss_bytes()
    if rss is not None:
        stats["rss_bytes"] = rss
    return stats
