"""The gateway's long-lived credential, kept in the agent's state dir (mode 0600).

Written once after registration (Palette simulator README, "Registration"); read at every start
so that a restarted agent reconnects as the same gateway without a pairing code. A gateway that
Palette deleted leaves a marker instead, so a restarted agent does not try to come back.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from agent.exceptions import ConfigError


@dataclass(frozen=True, slots=True)
class Credential:
    uid: str
    secret: str = field(repr=False)


class CredentialStore:
    FILE = "credential.json"
    DECOMMISSIONED = "decommissioned"

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir)

    @property
    def path(self) -> Path:
        return self.dir / self.FILE

    def load(self) -> Credential | None:
        try:
            body = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot read the gateway credential {self.path}: {exc}; restore it from a "
                "backup, or delete it and register again with a new pairing code"
            ) from None
        if not isinstance(body, dict) or not body.get("uid") or not body.get("credential"):
            raise ConfigError(f"{self.path} is not a gateway credential file")
        return Credential(str(body["uid"]), str(body["credential"]))

    def save(self, credential: Credential) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"uid": credential.uid, "credential": credential.secret}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def decommission(self) -> None:
        """Forget the credential and leave a marker: this gateway was deleted."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.dir / self.DECOMMISSIONED).write_text("deleted in Palette\n")
        self.path.unlink(missing_ok=True)

    @property
    def decommissioned(self) -> bool:
        return (self.dir / self.DECOMMISSIONED).exists()
