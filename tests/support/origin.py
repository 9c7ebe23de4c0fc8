"""A local aiohttp server standing in for a destination behind the gateway (e.g. MAAS)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tests.support.net import pattern


class Counter:
    """Body bytes the origin has written to its sockets, over all responses."""

    def __init__(self) -> None:
        self.value = 0


def origin_app(sent: Counter | None = None) -> web.Application:
    sent = sent if sent is not None else Counter()

    async def bytes_(request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        response = web.StreamResponse(headers={"Content-Length": str(n)})
        await response.prepare(request)
        chunk = pattern(1 << 20)  # the pattern repeats every 64 KiB, so every 1 MiB is alike
        for offset in range(0, n, len(chunk)):
            piece = chunk[: min(len(chunk), n - offset)]
            await response.write(piece)
            sent.value += len(piece)
        await response.write_eof()
        return response

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    async def small(request: web.Request) -> web.Response:
        return web.Response(body=b"ok")

    async def delay(request: web.Request) -> web.Response:
        await asyncio.sleep(int(request.match_info["ms"]) / 1000)
        return web.Response(body=b"delayed")

    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.Response(body=b"late")

    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.add_routes(
        [
            web.get("/bytes/{n}", bytes_),
            web.post("/echo", echo),
            web.get("/small", small),
            web.get("/stall", stall),
            web.get("/delay/{ms}", delay),
        ]
    )
    return app


class Origin:
    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.sent = Counter()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self.runner = web.AppRunner(origin_app(self.sent), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, backlog=2048)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = int(server.sockets[0].getsockname()[1])
        return self.port

    async def wait_quiet(self, quiet: float = 0.3, timeout: float = 20.0) -> None:
        """Wait until no response body has moved for ``quiet`` seconds (all writers blocked)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last, since = self.sent.value, loop.time()
        while loop.time() - since < quiet:
            if loop.time() > deadline:
                raise TimeoutError(f"origin still sending after {timeout} s")
            await asyncio.sleep(0.05)
            if self.sent.value != last:
                last, since = self.sent.value, loop.time()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
