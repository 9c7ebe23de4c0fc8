"""Tiny TCP peers run inside the NAT topology's namespaces (stdlib only, every loop bounded).

tcptool.py serve ADDR PORT [--lifetime S]
    echo server; prints LISTENING, then "ACCEPT ip port" per connection
tcptool.py connect ADDR PORT [--timeout S] [--proxy ADDR:PORT [--auth HEADER]]
    one round trip; prints "OK rtt_ms peer" or "FAIL reason"; exit 0 / 1
tcptool.py session ADDR PORT [--timeout S] [--lifetime S]
    connects (prints CONNECTED or FAIL), then per stdin line sends it and prints
    "ECHO rtt_ms", "TIMEOUT" or "ERROR reason"
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time


def say(*words: object) -> None:
    print(*words, flush=True)


def serve(address: str, port: int, lifetime: float) -> int:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(16)
    listener.settimeout(0.2)
    say("LISTENING")
    deadline = time.monotonic() + lifetime
    while time.monotonic() < deadline:
        try:
            conn, (peer, peer_port) = listener.accept()
        except TimeoutError:
            continue
        say("ACCEPT", peer, peer_port)
        threading.Thread(target=echo, args=(conn, deadline), daemon=True).start()
    return 0


def echo(conn: socket.socket, deadline: float) -> None:
    conn.settimeout(0.2)
    with conn:
        while time.monotonic() < deadline:
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            say("DATA", len(data))
            conn.sendall(data)


def open_connection(args: argparse.Namespace) -> socket.socket:
    if args.proxy is None:
        sock = socket.create_connection((args.address, args.port), timeout=args.timeout)
    else:
        proxy_address, _, proxy_port = args.proxy.rpartition(":")
        sock = socket.create_connection((proxy_address, int(proxy_port)), timeout=args.timeout)
        target = f"{args.address}:{args.port}"
        request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if args.auth:
            request += f"Proxy-Authorization: {args.auth}\r\n"
        sock.sendall((request + "\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response and len(response) < 8192:
            chunk = sock.recv(1024)
            if not chunk:
                break
            response += chunk
        status = response.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 200 " not in status + " ":
            sock.close()
            raise ConnectionError(f"proxy answered {status!r}")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def round_trip(sock: socket.socket, payload: bytes, timeout: float) -> float:
    sock.settimeout(timeout)
    started = time.monotonic()
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed by peer")
        received += chunk
    return (time.monotonic() - started) * 1000.0


def connect(args: argparse.Namespace) -> int:
    try:
        sock = open_connection(args)
        with sock:
            rtt = round_trip(sock, b"ping\n", args.timeout)
            say("OK", f"{rtt:.1f}", sock.getpeername()[0])
    except (OSError, ConnectionError) as exc:
        say("FAIL", type(exc).__name__, exc)
        return 1
    return 0


def session(args: argparse.Namespace) -> int:
    try:
        sock = open_connection(args)
    except OSError as exc:
        say("FAIL", type(exc).__name__, exc)
        return 1
    say("CONNECTED", sock.getsockname()[1])
    deadline = time.monotonic() + args.lifetime
    for line in sys.stdin:
        if time.monotonic() > deadline:
            break
        try:
            say("ECHO", f"{round_trip(sock, line.encode(), args.timeout):.1f}")
        except TimeoutError:
            say("TIMEOUT")
        except OSError as exc:
            say("ERROR", type(exc).__name__, exc)
    sock.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "connect", "session"):
        command = commands.add_parser(name)
        command.add_argument("address")
        command.add_argument("port", type=int)
        command.add_argument("--timeout", type=float, default=2.0)
        command.add_argument("--lifetime", type=float, default=60.0)
        command.add_argument("--proxy")
        command.add_argument("--auth")
    args = parser.parse_args()
    if args.command == "serve":
        return serve(args.address, args.port, args.lifetime)
    return connect(args) if args.command == "connect" else session(args)


if __name__ == "__main__":
    sys.exit(main())
