"""What the Palette simulator knows: users, pairing codes, overlords, cloud accounts, clusters.

Plain mutable records (this is the simulator's database), serialisable to one JSON file so that
a restarted simulator keeps its gateways and clusters.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAIRING_CODE_TTL = 24 * 3600.0
PAIRING_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to misread


class Clock:
    """Wall-clock seconds, with an offset tests can advance (pairing codes expire on it)."""

    def __init__(self, start: float | None = None) -> None:
        self._offset = 0.0 if start is None else start - time.time()

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    def iso(self, when: float | None = None) -> str:
        stamp = self.now() if when is None else when
        return (
            datetime.datetime.fromtimestamp(stamp, datetime.UTC)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z")
        )


@dataclass(frozen=True, slots=True)
class PaletteUser:
    email: str
    password: str = field(repr=False)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_uid() -> str:
    return secrets.token_hex(12)


@dataclass
class PairingCode:
    code: str
    issued_at: float
    used_by_install: str | None = None
    overlord_uid: str | None = None


@dataclass
class Overlord:
    uid: str
    name: str
    install_id: str
    created_at: float
    #: sha256 of each credential issued to this gateway's nodes (one per node); empty: revoked
    credential_digests: list[str]
    cloud_account_uid: str
    domain: str = "maas"
    azs: list[str] = field(default_factory=lambda: ["default"])
    resource_pool: str = "default"
    size: int = 1
    state: str = "Pending"
    agent_version: str = ""
    last_heartbeat: float | None = None
    ever_connected: bool = False

    def to_api(self, clock: Clock, sessions: int) -> dict[str, Any]:
        running = self.state == "Running"
        return {
            "metadata": {
                "uid": self.uid,
                "name": self.name,
                "creationTimestamp": clock.iso(self.created_at),
                "annotations": {"installId": self.install_id},
            },
            "spec": {
                "cloudType": "maas",
                "cloudAccountUid": self.cloud_account_uid,
                "cloudConfig": {
                    "clusterConfig": {"domain": self.domain},
                    "machineConfig": {
                        "azs": list(self.azs),
                        "resourcePool": self.resource_pool,
                        "instanceType": {"minCPU": 4, "minMemInMB": 8192, "minDiskSizeInGB": 60},
                    },
                    "size": self.size,
                },
            },
            "status": {
                "state": self.state,
                "isActive": sessions > 0,
                "isReady": running,
                "health": {
                    "agentVersion": self.agent_version,
                    "lastHeartBeatTimestamp": (
                        clock.iso(self.last_heartbeat) if self.last_heartbeat else None
                    ),
                    "state": "healthy" if running else self.state.lower(),
                },
                "sessions": sessions,
            },
        }


@dataclass
class CloudAccount:
    uid: str
    name: str
    api_endpoint: str
    api_key: str = field(repr=False)
    overlord_uid: str

    def to_api(self) -> dict[str, Any]:
        return {
            "metadata": {
                "uid": self.uid,
                "name": self.name,
                "annotations": {"overlordUid": self.overlord_uid},
            },
            "spec": {"apiEndpoint": self.api_endpoint, "apiKey": "****", "preferredSubnets": []},
        }


@dataclass
class Cluster:
    uid: str
    name: str
    cloud_account_uid: str
    spec: dict[str, Any]
    created_at: float
    state: str = "Provisioning"
    message: str = ""
    machines: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def holds_machines(self) -> bool:
        return self.state in ("Provisioning", "Running", "Deleting")

    def to_api(self, clock: Clock) -> dict[str, Any]:
        return {
            "metadata": {
                "uid": self.uid,
                "name": self.name,
                "creationTimestamp": clock.iso(self.created_at),
            },
            "spec": self.spec,
            "status": {
                "state": self.state,
                "message": self.message,
                "machines": list(self.machines.values()),
                "events": list(self.events),
            },
        }


@dataclass
class PaletteState:
    pairing_codes: dict[str, PairingCode] = field(default_factory=dict)
    overlords: dict[str, Overlord] = field(default_factory=dict)
    cloud_accounts: dict[str, CloudAccount] = field(default_factory=dict)
    clusters: dict[str, Cluster] = field(default_factory=dict)

    def overlord_by_credential(self, credential: str) -> Overlord | None:
        if not credential:
            return None
        wanted = digest(credential)
        for overlord in self.overlords.values():
            if any(secrets.compare_digest(d, wanted) for d in overlord.credential_digests):
                return overlord
        return None

    def overlord_of_account(self, account_uid: str) -> Overlord | None:
        account = self.cloud_accounts.get(account_uid)
        return None if account is None else self.overlords.get(account.overlord_uid)

    def clusters_of(self, overlord: Overlord) -> list[Cluster]:
        return [
            c
            for c in self.clusters.values()
            if c.cloud_account_uid == overlord.cloud_account_uid and c.holds_machines
        ]

    # -------------------------------------------------------------- persistence

    def save(self, path: Path) -> None:
        body = {
            "pairing_codes": [dataclasses.asdict(c) for c in self.pairing_codes.values()],
            "overlords": [dataclasses.asdict(o) for o in self.overlords.values()],
            "cloud_accounts": [dataclasses.asdict(a) for a in self.cloud_accounts.values()],
            "clusters": [dataclasses.asdict(c) for c in self.clusters.values()],
        }
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(body, f)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> PaletteState:
        body = json.loads(path.read_text())
        return cls(
            {c["code"]: PairingCode(**c) for c in body.get("pairing_codes", [])},
            {o["uid"]: Overlord(**o) for o in body.get("overlords", [])},
            {a["uid"]: CloudAccount(**a) for a in body.get("cloud_accounts", [])},
            {c["uid"]: Cluster(**c) for c in body.get("clusters", [])},
        )
