"""What a long-running process reports about itself: asyncio tasks, open fds, RSS (Linux)."""

from __future__ import annotations

import asyncio
import os


def process_stats() -> dict[str, int]:
    stats = {"tasks": len(asyncio.all_tasks())}
    try:
        stats["fds"] = len(os.listdir("/proc/self/fd"))
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    stats["rss_bytes"] = int(line.split()[1]) * 1024
                    break
    except OSError:  # not Linux: tasks only
        pass
    return stats
