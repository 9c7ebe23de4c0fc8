"""Loopback helpers: free ports, a byte-exact HTTP client over a hub CONNECT."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pattern(n: int) -> bytes:
    """n deterministic bytes (what the test server's /bytes/{n} sends)."""
    block = hashlib.sha256(b"pcg").digest() * 2048  # 64 KiB
    whole, rest = divmod(n, len(block))
    return block * whole + block[:rest]


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: bytes


class ConnectError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"CONNECT answered {status}: {text}")
        self.status = status
        self.text = text


async def open_via_connect(
    connect_addr: tuple[str, int], gateway: str | None, host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(*connect_addr, limit=1 << 20)
    head = f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if gateway:
        head += f"Pcg-Gateway: {gateway}\r\n"
    writer.write((head + "\r\n").encode())
    response = await reader.readuntil(b"\r\n\r\n")
    status = int(response.split()[1])
    if status != 200:
        text = await reader.read()
        writer.close()
        raise ConnectError(status, text.decode(errors="replace").strip())
    return reader, writer


async def http_request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    method: str,
    path: str,
    body: bytes = b"",
    host: str = "test",
    keep_alive: bool = False,
) -> HttpResult:
    """One HTTP/1.1 request on an open connection; reads a Content-Length response."""
    conn = "keep-alive" if keep_alive else "close"
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
        f"Connection: {conn}\r\n\r\n".encode()
    )
    if body:
        writer.write(body)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    data = await reader.readexactly(length) if length else b""
    return HttpResult(status, headers, data)


async def fetch_via_connect(
    connect_addr: tuple[str, int],
    gateway: str | None,
    host: str,
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
) -> HttpResult:
    reader, writer = await open_via_connect(connect_addr, gateway, host, port)
    try:
        return await http_request(reader, writer, method, path, body, host=f"{host}:{port}")
    finally:
        writer.close()


async def splice(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    b: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Copy bytes both ways between two stream pairs until both directions end."""

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()

    await asyncio.gather(pipe(a[0], b[1]), pipe(b[0], a[1]))
