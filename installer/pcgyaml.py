"""pcg.yaml: the gateway's configuration file, schema version 1.

::

    version: 1
    installType: private-cloud-gateway
    cloudType: maas
    name: maas-pcg-1
    palette:
      endpoint: https://console.spectrocloud.com      # https, no trailing '/'
      username: user1@company.com
      password: enc:v1:...                            # sealed, see installer/encryption.py
      pairingCode: A1B2C3                             # plain: the doc has you edit it here
      caFile: null                                    # PEM of a private CA for the endpoint
    environment:
      httpsProxy: ''
      httpProxy: ''
      noProxy: ''
      podCidr: 192.168.0.0/16
      serviceIpRange: 10.96.0.0/12
    maas:
      apiEndpoint: http://10.11.12.13:5240/MAAS
      apiKey: enc:v1:...                              # sealed
      domain: maas
      availabilityZone: default
      resourcePool: default
      nodeCount: 1                                    # 1 (no HA) or 3 (HA)
    encryption: {cipher: AES-256-GCM, kdf: scrypt, salt: ..., n: 32768, r: 8, p: 1}

Files are written atomically (a temporary file in the same directory, fsync, rename) with mode
0600: a crash leaves the old file or the new one, never half of one. Unknown settings are
refused with the list of known ones (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from installer.config import YAML_PATHS, InstallConfig
from installer.encryption import KdfParams, Sealer
from installer.exceptions import ConfigError, PassphraseError, Problem

SCHEMA_VERSION = 1
FILE_NAME = "pcg.yaml"
SEALED_FIELDS = ("password", "maas_api_key")

_HEADER = """\
# Private cloud gateway configuration, written by pcg-installer (schema version 1).
# Edit it and rerun:  pcg-installer -s true -c pcg.yaml
# palette.password and maas.apiKey are encrypted: change them with --update-passwords.
# Before a rerun, check that palette.pairingCode matches the code Palette shows now.
"""

_SECTIONS = ("palette", "environment", "maas")
_TOP = ("version", "installType", "cloudType", "name", *_SECTIONS, "encryption")


def install_dir(workdir: Path, name: str, now: datetime.datetime | None = None) -> Path:
    """``<workdir>/install-<name>-<YYYYmmddHHMMSS>`` (the product doc's layout)."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d%H%M%S")
    return workdir / f"install-{name}-{stamp}"


def to_document(config: InstallConfig, sealer: Sealer) -> dict[str, Any]:
    document: dict[str, Any] = {
        "version": SCHEMA_VERSION,
        "installType": config.install_type,
        "cloudType": config.cloud_type,
    }
    for name, path in YAML_PATHS.items():
        value: Any = getattr(config, name)
        if name in SEALED_FIELDS:
            value = sealer.seal(path, value)
        section, _, key = path.rpartition(".")
        target = document.setdefault(section, {}) if section else document
        target[key] = value
    document["encryption"] = sealer.params.to_yaml()
    return {key: document[key] for key in _TOP}


def dumps(config: InstallConfig, sealer: Sealer) -> str:
    return _HEADER + yaml.safe_dump(to_document(config, sealer), sort_keys=False)


def write(path: Path, config: InstallConfig, sealer: Sealer) -> Path:
    """Write atomically with mode 0600; the directory is created (0700) if missing."""
    text = dumps(config, sealer)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".pcg.yaml.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def read_document(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"no configuration file at {path}: give the pcg.yaml the installer wrote "
            "(-c /opt/spectrocloud/install-NAME-TIMESTAMP/pcg.yaml), or run without -s to "
            "create one"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path} must be a YAML map of settings (see pcg-installer --help)")
    version = document.get("version")
    if version != SCHEMA_VERSION:
        if isinstance(version, int) and version > SCHEMA_VERSION:
            why = f"version {version} was written by a newer installer: use that one"
        else:
            why = (
                f"version {version!r} is not a pcg.yaml schema this installer knows "
                f"({SCHEMA_VERSION})"
            )
        raise ConfigError(f"{path}: {why}")
    return document


def from_document(
    document: Mapping[str, Any], passphrase: str | None, *, source: str = "pcg.yaml"
) -> InstallConfig:
    """The config in ``document``; with ``passphrase=None`` the sealed values stay empty (for
    ``--update-passwords``, which replaces them)."""
    problems: list[Problem] = []
    unknown = [key for key in document if key not in _TOP]
    problems += [Problem(key, f"unknown setting; known: {', '.join(_TOP)}") for key in unknown]
    values: dict[str, Any] = {
        "install_type": document.get("installType"),
        "cloud_type": document.get("cloudType"),
    }
    for section in _SECTIONS:
        data = document.get(section)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            problems.append(Problem(section, "must be a map of settings"))
            continue
        known = {p.rpartition(".")[2] for p in YAML_PATHS.values() if p.startswith(section + ".")}
        for key in data:
            if key not in known:
                listed = ", ".join(sorted(known))
                problems.append(Problem(f"{section}.{key}", f"unknown setting; known: {listed}"))
    sealer: Sealer | None = None
    if passphrase is not None:
        sealer = Sealer.derive(passphrase, KdfParams.from_yaml(document.get("encryption")))
    for name, path in YAML_PATHS.items():
        section, _, key = path.rpartition(".")
        holder = document.get(section) if section else document
        value = holder.get(key) if isinstance(holder, dict) else None
        if name in SEALED_FIELDS:
            if sealer is None:
                value = ""
            elif value is None:
                problems.append(Problem(path, "is missing; rerun with --update-passwords"))
                value = ""
            else:
                value = sealer.open(path, value)
        elif name == "palette_ca_file":
            value = None if value in (None, "") else value
        elif value is None:
            value = _default(name)
        if name != "node_count" and isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)  # e.g. an unquoted numeric pairing code
        values[name] = value
    if problems:
        raise ConfigError.from_problems(problems, source)
    if values["install_type"] is None or values["cloud_type"] is None:
        raise ConfigError(f"{source}: installType and cloudType are required")
    return InstallConfig(**values)


def _default(name: str) -> Any:
    """The dataclass default of a field left out of the file ("" when it has none)."""
    default = InstallConfig.__dataclass_fields__[name].default
    return "" if default is dataclasses.MISSING or default is None else default


def load(path: Path, passphrase: str | None) -> InstallConfig:
    """Read, decrypt and check the shape of ``path``. Content problems are left to
    :meth:`InstallConfig.problems` (reported as preflight checks)."""
    try:
        return from_document(read_document(path), passphrase, source=str(path))
    except PassphraseError as exc:
        raise PassphraseError(f"{path}: {exc}", exc.problems) from None
