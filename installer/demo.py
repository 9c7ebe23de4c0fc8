"""``make demo``: the gateway end to end on the built-in simulators, on loopback only.

Today it starts a Palette-side hub, a gateway agent (a real subprocess) and a stand-in for the
MAAS API, relays an HTTP request and an RPC through the tunnel, shows a refused destination,
and stops everything it started.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(
    args: list[str], log: Path, env: dict[str, str], *, pipe_stdout: bool = False
) -> subprocess.Popen[bytes]:
    with open(log, "wb") as log_file:
        return subprocess.Popen(
            args,
            stdout=subprocess.PIPE if pipe_stdout else log_file,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def _say(step: str, detail: str = "") -> None:
    print(f"  {step:<34} {detail}", flush=True)


async def _connect_request(connect: tuple[str, int], gateway: str, target: str, path: str) -> str:
    reader, writer = await asyncio.open_connection(*connect)
    writer.write(f"CONNECT {target} HTTP/1.1\r\nPcg-Gateway: {gateway}\r\n\r\n".encode())
    status_line = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")[0].decode()
    if " 200 " not in status_line + " ":
        reason = (await reader.read()).decode().strip()
        writer.close()
        return f"{status_line} - {reason}"
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n".encode())
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    first_line = head.split(b"\r\n")[0].decode()
    return f"{first_line} body={body.decode()!r}"


async def demo() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="pcg-demo-"))
    token = secrets.token_urlsafe(24)
    gateway = "demo-gateway"
    hub_port, connect_port, origin_port = _free_port(), _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    processes: list[subprocess.Popen[bytes]] = []

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"capabilities": ["demo"], "version": "3.5-sim"})

    app = web.Application()
    app.add_routes([web.get("/MAAS/api/2.0/version/", version)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", origin_port).start()
    print("pcg demo: a gateway behind the tunnel, on loopback only")
    try:
        (workdir / "tokens.yaml").write_text(yaml.safe_dump({gateway: token}))
        hub = _spawn(
            [str(BIN / "pcg-sim"), "hub", "--insecure-ws", "--port", str(hub_port),
             "--connect-port", str(connect_port), "--tokens-file", str(workdir / "tokens.yaml")],
            workdir / "hub.log", env, pipe_stdout=True,
        )  # fmt: skip
        processes.append(hub)
        assert hub.stdout is not None
        ready = json.loads(await asyncio.to_thread(hub.stdout.readline))
        _say("hub (Palette side) listening", ready["tunnel_url"])
        config = {
            "gateway_name": gateway,
            "hub_url": ready["tunnel_url"],
            "token": token,
            "maas_api_endpoint": f"http://127.0.0.1:{origin_port}/MAAS",
        }
        (workdir / "agent.yaml").write_text(yaml.safe_dump(config))
        agent_log = workdir / "agent.log"
        agent = _spawn([str(BIN / "pcg-agent"), "-c", str(workdir / "agent.yaml")], agent_log, env)
        processes.append(agent)
        deadline = time.monotonic() + 15
        while "tunnel up" not in agent_log.read_text():
            if time.monotonic() > deadline or agent.poll() is not None:
                print(agent_log.read_text())
                raise RuntimeError("the agent did not connect")
            await asyncio.sleep(0.05)
        _say("agent dialed out, tunnel up", f"gateway={gateway} pid={agent.pid}")
        connect = ("127.0.0.1", connect_port)
        result = await _connect_request(
            connect, gateway, f"127.0.0.1:{origin_port}", "/MAAS/api/2.0/version/"
        )
        _say("MAAS API through the tunnel", result)
        refused = await _connect_request(connect, gateway, "127.0.0.1:22", "/")
        _say("relay to 127.0.0.1:22", refused)
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{hub_port}/v1/gateways/{gateway}/rpc/agent.status"
            async with http.post(url, json={}) as response:
                status = (await response.json())["result"]
        _say("RPC agent.status", f"version={status['version']} uptime={status['uptime_s']}s")
        agent.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(agent.wait, 30)
        _say("agent stopped on SIGTERM", f"exit code {code}")
        ok = "200" in result and "DESTINATION_NOT_ALLOWED" in refused and code == 0
        print("pcg demo: " + ("OK" if ok else "FAILED") + f" (logs in {workdir})")
        return 0 if ok else 1
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        await runner.cleanup()


def main() -> int:
    return asyncio.run(demo())


if __name__ == "__main__":
    sys.exit(main())
