"""An asyncio event loop on a thread that lives in a network namespace.

``setns(CLONE_NEWNET)`` moves only the calling thread, and a socket belongs to the namespace of
the thread that created it. So a thread that enters, say, the topology's public host and runs
an event loop there makes every socket of the coroutines it runs (asyncio streams, aiohttp,
the MAAS client) a socket of the public host, while the test thread stays in the root
namespace and turns the knobs. Needs root (CAP_SYS_ADMIN), as the topology itself does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from protocol.simulator.nat.netns import NETNS_DIR

T = TypeVar("T")

CLONE_NEWNET = 0x40000000


def _enter(namespace: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / namespace, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {namespace}: {os.strerror(errno)}")
    finally:
        os.close(fd)


class NamespaceLoop:
    """``run(coro, timeout)`` runs a coroutine on a loop whose sockets live in ``namespace``."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"netns-{namespace}", daemon=True)

    def start(self) -> NamespaceLoop:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError(f"the event loop thread for {self.namespace} did not start")
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        try:
            _enter(self.namespace)
            loop = asyncio.new_event_loop()
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
            return
        asyncio.set_event_loop(loop)
        self.loop = loop
        self._ready.set()
        try:
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        assert self.loop is not None, "start() first"
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` in the namespace and wait at most ``timeout`` seconds for its result."""
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result from {self.namespace} within {timeout:g}s") from None

    def close(self) -> None:
        if self.loop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
