"""``make demo``: the product, end to end, on one machine and on loopback only.

1. Start the Palette simulator (https, with a CA made for the demo) and the MAAS simulator
   (``--boot-agents``: a deployed machine runs its cloud-init agent as a local subprocess),
   each as a ``pcg-sim`` subprocess, with compressed timings.
2. Sign in to Palette and get a pairing code, as a tenant admin would in the UI.
3. Write a pcg.yaml for a 3-node gateway and run ``pcg-installer -s true -c pcg.yaml``
   (its preflight, the deployment of three machines, registration of their agents).
4. Check that Palette shows the gateway Running with its MAAS cloud account, create a tenant
   cluster through Palette (the gateway allocates and deploys its machines in MAAS), wait for it.
5. Print a summary and stop everything it started.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from installer import pcgyaml
from installer.config import InstallConfig
from installer.demo_pki import make_pki
from installer.encryption import Sealer
from protocol.maas.client import MaasClient
from protocol.maas.models import Machine

BIN = Path(sys.executable).parent
ADMIN = "admin@example.com"
GATEWAY = "demo-pcg"
CLUSTER = "tenant-1"


def _env() -> dict[str, str]:
    """This environment without proxies (everything is on loopback) or PCG_* settings."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and not k.startswith("PCG_")
    }


def _say(step: str, detail: str = "") -> None:
    print(f"  {step:<36} {detail}", flush=True)


class Simulators:
    """The two pcg-sim subprocesses, stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, args: list[str], log_name: str) -> tuple[subprocess.Popen[str], str]:
        log = open(self.workdir / log_name, "w")  # noqa: SIM115 - owned by the child
        process = subprocess.Popen(
            [str(BIN / "pcg-sim"), *args],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            env=_env(),
        )
        self.processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            process.wait(10)
            raise RuntimeError(
                f"pcg-sim {args[0]} did not start:\n{(self.workdir / log_name).read_text()}"
            )
        return process, line

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)


class Palette:
    """The tenant admin's side of Palette's REST API."""

    def __init__(self, url: str, ca: Path, http: aiohttp.ClientSession) -> None:
        self.url = url
        self.ssl = ssl.create_default_context(cafile=str(ca))
        self.http = http
        self.token = ""

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": self.token} if self.token else {}
        async with self.http.request(
            method, self.url + path, json=body, headers=headers, ssl=self.ssl
        ) as response:
            data = await response.json(content_type=None)
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: {response.status} {data}")
            return data

    async def login(self, password: str) -> None:
        body = {"emailId": ADMIN, "password": password}
        self.token = (await self.call("POST", "/v1/auth/authenticate", body))["Authorization"]


def _cluster_body(account_uid: str) -> dict[str, Any]:
    def pool(name: str, size: int, control_plane: bool) -> dict[str, Any]:
        return {
            "cloudConfig": {
                "azs": ["default"],
                "resourcePool": "default",
                "instanceType": {"minCPU": 4, "minMemInMB": 8192, "minDiskSizeInGB": 60},
                "tags": [],
            },
            "poolConfig": {"name": name, "size": size, "isControlPlane": control_plane},
        }

    return {
        "metadata": {"name": CLUSTER},
        "spec": {
            "cloudAccountUid": account_uid,
            "cloudConfig": {"domain": "maas"},
            "machinepoolconfig": [pool("control-plane", 1, True), pool("workers", 2, False)],
        },
    }


async def _wait(what: str, check: Any, limit: float) -> Any:
    deadline = time.monotonic() + limit
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {limit:g} s waiting for {what}")
        await asyncio.sleep(0.25)


async def demo(workdir: Path) -> int:
    started = time.monotonic()
    admin_password = "Demo-" + secrets.token_urlsafe(12)
    passphrase = "Demo-" + secrets.token_hex(6) + "!A1"
    ca, cert, key = make_pki(workdir / "pki")
    sims = Simulators(workdir)
    print("pcg demo: a 3-node gateway installed through MAAS and registered with Palette")
    try:
        _, line = sims.start(
            ["palette", "--host", "127.0.0.1", "--port", "0", "--user",
             f"{ADMIN}:{admin_password}", "--cert", str(cert), "--key", str(key),
             "--ping-interval", "2", "--ping-timeout", "4"],
            "palette.log",
        )  # fmt: skip
        palette_url = json.loads(line)["url"]
        _say("Palette simulator (https)", palette_url)
        _, line = sims.start(
            ["maas", "--host", "127.0.0.1", "--port", "0", "--api-key-file",
             str(workdir / "maas.key"), "--boot-agents", "--boot-dir", str(workdir / "machines"),
             "--deploy-seconds", "1", "--release-seconds", "0.2"],
            "maas.log",
        )  # fmt: skip
        maas_url = line.split(" at ", 1)[1].split(" ", 1)[0]
        _say("MAAS simulator (boots agents)", maas_url)
        api_key = (workdir / "maas.key").read_text().strip()
        async with aiohttp.ClientSession(trust_env=False) as http:
            palette = Palette(palette_url, ca, http)
            await palette.login(admin_password)
            code = (await palette.call("GET", "/v1/overlords/pairing/code?cloudType=maas"))[
                "pairingCode"
            ]
            _say("pairing code from Palette", "(valid 24 h; not shown)")
            config = InstallConfig(
                name=GATEWAY,
                palette_endpoint=palette_url,
                username=ADMIN,
                password=admin_password,
                pairing_code=code,
                pod_cidr="172.30.0.0/16",
                maas_endpoint=maas_url,
                maas_api_key=api_key,
                node_count=3,
                palette_ca_file=str(ca),
            )
            path = pcgyaml.write(
                pcgyaml.install_dir(workdir, GATEWAY) / "pcg.yaml", config, Sealer.new(passphrase)
            )
            _say("pcg.yaml written", str(path))
            print("  --- pcg-installer -s true -c pcg.yaml " + "-" * 40, flush=True)
            installer = await asyncio.create_subprocess_exec(
                str(BIN / "pcg-installer"), "-s", "true", "-c", str(path),
                "--poll-interval", "0.5", "--register-timeout", "60",
                env={**_env(), "PCG_ENCRYPTION_PASSPHRASE": passphrase, "COLUMNS": "110"},
                stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            code_ = await installer.wait()
            print("  " + "-" * 78, flush=True)
            if code_ != 0:
                print(f"pcg demo: FAILED (pcg-installer exited {code_}; logs in {workdir})")
                return 1

            async def running_gateway() -> Any:
                items = (await palette.call("GET", "/v1/overlords"))["items"]
                return next(
                    (
                        o
                        for o in items
                        if o["metadata"]["name"] == GATEWAY and o["status"]["state"] == "Running"
                    ),
                    None,
                )

            gateway = await _wait("the gateway to be Running", running_gateway, 30)
            accounts = (await palette.call("GET", "/v1/cloudaccounts/maas"))["items"]
            account = next(
                a
                for a in accounts
                if a["metadata"]["annotations"]["overlordUid"] == gateway["metadata"]["uid"]
            )
            created = await palette.call(
                "POST", "/v1/spectroclusters/maas", _cluster_body(account["metadata"]["uid"])
            )
            _say("tenant cluster requested", f"{CLUSTER} (1 control plane + 2 workers)")

            async def settled_cluster() -> Any:
                cluster = await palette.call("GET", f"/v1/spectroclusters/{created['uid']}")
                return cluster if cluster["status"]["state"] in ("Running", "Failed") else None

            cluster = await _wait("the tenant cluster", settled_cluster, 40)
        async with MaasClient(maas_url, api_key, trust_env=False) as maas:
            nodes = await maas.list_machines(agent_name=config.agent_name)
        _summary(gateway, nodes, account, cluster, time.monotonic() - started)
        ok = cluster["status"]["state"] == "Running"
        print(f"pcg demo: {'OK' if ok else 'FAILED'} (logs in {workdir})")
        return 0 if ok else 1
    finally:
        sims.stop()


def _summary(
    gateway: Any, nodes: list[Machine], account: Any, cluster: Any, seconds: float
) -> None:
    print("\nSummary")
    meta, status = gateway["metadata"], gateway["status"]
    _say("gateway", f"{meta['name']} {status['state']} (uid {meta['uid']})")
    for node in nodes:
        address = node.ip_addresses[0] if node.ip_addresses else "-"
        _say("  node", f"{node.hostname} {node.system_id} {address} {node.status_label}")
    _say("MAAS cloud account", f"{account['metadata']['uid']} -> {account['spec']['apiEndpoint']}")
    cluster_status = cluster["status"]
    message = f" - {cluster_status['message']}" if cluster_status.get("message") else ""
    _say("tenant cluster", f"{cluster['metadata']['name']} {cluster_status['state']}{message}")
    for machine in cluster_status.get("machines") or []:
        where = f"pool={machine.get('pool', '?')} {machine.get('state', '')}"
        _say("  machine", f"{machine.get('hostname', '?')} {machine.get('systemId', '?')} {where}")
    _say("elapsed", f"{seconds:.1f} s")


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="pcg-demo-"))
    return asyncio.run(demo(workdir))


if __name__ == "__main__":
    sys.exit(main())
