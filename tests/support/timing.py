"""Helpers for tests that time something: keep the test process's own pauses out of the figures."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_collector_pauses() -> Iterator[None]:
    """Run the block with the test process's cyclic garbage collector off.

    A test that times traffic through the hub and the agent (separate processes) also runs the
    client and the origin in this one. After a few hundred tests this heap is large, and a full
    collection here has been seen to take 0.3-0.7 s: landing inside one timed transfer, it
    measures pytest, not the tunnel. Objects already alive are frozen first, so the collection
    after the block only looks at what the block made.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
