"""``InstallConfig``: the answers to the product doc's tables, in the doc's order.

The dataclass refuses what cannot be represented (a field of the wrong type, an unknown install
or cloud type) in ``__post_init__``; what a user can get wrong in a value (a trailing '/', a
MAAS endpoint without /MAAS, overlapping ranges) is listed by :meth:`InstallConfig.problems`, so
that a pcg.yaml with several mistakes reports all of them at once, as preflight checks, instead
of stopping at the first. :meth:`InstallConfig.validated` raises them all as one ConfigError.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from installer import fields
from installer.exceptions import ConfigError, Problem

INSTALL_TYPE = "private-cloud-gateway"
CLOUD_TYPE = "maas"

#: field -> the setting's path in pcg.yaml, used in every message about it
YAML_PATHS: dict[str, str] = {
    "name": "name",
    "palette_endpoint": "palette.endpoint",
    "username": "palette.username",
    "password": "palette.password",
    "pairing_code": "palette.pairingCode",
    "palette_ca_file": "palette.caFile",
    "https_proxy": "environment.httpsProxy",
    "http_proxy": "environment.httpProxy",
    "no_proxy": "environment.noProxy",
    "pod_cidr": "environment.podCidr",
    "service_range": "environment.serviceIpRange",
    "maas_endpoint": "maas.apiEndpoint",
    "maas_api_key": "maas.apiKey",
    "domain": "maas.domain",
    "zone": "maas.availabilityZone",
    "resource_pool": "maas.resourcePool",
    "node_count": "maas.nodeCount",
}

SECRET_FIELDS = frozenset({"password", "maas_api_key", "pairing_code"})


@dataclass(frozen=True, slots=True)
class InstallConfig:
    # Palette parameters
    name: str
    palette_endpoint: str
    username: str
    password: str = field(repr=False)
    pairing_code: str = field(repr=False)
    # Environment configuration
    https_proxy: str = ""
    http_proxy: str = ""
    no_proxy: str = ""
    pod_cidr: str = fields.DEFAULT_POD_CIDR
    service_range: str = fields.DEFAULT_SERVICE_RANGE
    # MAAS account information, then where the gateway's machines come from
    maas_endpoint: str = ""
    maas_api_key: str = field(default="", repr=False)
    domain: str = "maas"
    zone: str = "default"
    resource_pool: str = "default"
    node_count: int = 1
    # not in the doc's tables: a private CA for the Palette endpoint (PEM file)
    palette_ca_file: str | None = None
    install_type: str = INSTALL_TYPE
    cloud_type: str = CLOUD_TYPE

    def __post_init__(self) -> None:
        wrong: list[Problem] = []
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name == "node_count":
                if not isinstance(value, int) or isinstance(value, bool):
                    wrong.append(Problem(YAML_PATHS[item.name], "must be the number 1 or 3"))
            elif item.name == "palette_ca_file":
                if value is not None and not isinstance(value, str):
                    wrong.append(Problem(YAML_PATHS[item.name], "must be a file path or empty"))
            elif not isinstance(value, str):
                path = YAML_PATHS.get(item.name, item.name)
                wrong.append(Problem(path, f"must be text, not {type(value).__name__}"))
        if self.install_type != INSTALL_TYPE:
            wrong.append(
                Problem("installType", f"{self.install_type!r}: only {INSTALL_TYPE!r} is supported")
            )
        if self.cloud_type != CLOUD_TYPE:
            wrong.append(
                Problem("cloudType", f"{self.cloud_type!r}: this installer installs MAAS gateways")
            )
        if wrong:
            raise ConfigError.from_problems(wrong)

    # -- checks -------------------------------------------------------------------------

    def field_problem(self, name: str) -> str | None:
        """The problem with one field's value on its own, or None."""
        value: Any = getattr(self, name)
        checker = _CHECKERS.get(name)
        return None if checker is None else checker(value)

    def problems(self) -> list[Problem]:
        """Every wrong value, each field on its own and then across fields."""
        found: list[Problem] = []
        for name in YAML_PATHS:
            if name == "palette_ca_file" and not self.palette_ca_file:
                continue
            message = self.field_problem(name)
            if message:
                found.append(Problem(YAML_PATHS[name], message))
        bad = {p.field for p in found}
        pod, svc = YAML_PATHS["pod_cidr"], YAML_PATHS["service_range"]
        if (
            pod not in bad
            and svc not in bad
            and fields.networks_overlap(self.pod_cidr, self.service_range)
        ):
            found.append(
                Problem(
                    svc,
                    f"service IP range {self.service_range} overlaps the pod CIDR "
                    f"{self.pod_cidr}: pick ranges that do not overlap "
                    f"(e.g. pods {fields.DEFAULT_POD_CIDR}, services "
                    f"{fields.DEFAULT_SERVICE_RANGE})",
                )
            )
        return found

    def validated(self) -> InstallConfig:
        problems = self.problems()
        if problems:
            raise ConfigError.from_problems(problems)
        return self

    # -- derived ------------------------------------------------------------------------

    @property
    def tunnel_url(self) -> str:
        """The agents' hub URL: ``https://host[:port]`` -> ``wss://host[:port]/v1/tunnel``."""
        return tunnel_url(self.palette_endpoint)

    @property
    def maas_host(self) -> str:
        return urlsplit(self.maas_endpoint).hostname or ""

    @property
    def agent_name(self) -> str:
        """What MAAS records as the owner tag of the gateway's machines (the agent's resize
        allocates with the same)."""
        return f"pcg-gw:{self.name}"

    def secrets(self) -> tuple[str, ...]:
        return tuple(v for v in (self.password, self.maas_api_key, self.pairing_code) if v)

    def replace(self, **changes: Any) -> InstallConfig:
        return dataclasses.replace(self, **changes)


def tunnel_url(palette_endpoint: str) -> str:
    parts = urlsplit(palette_endpoint.strip().rstrip("/"))
    return f"wss://{parts.netloc}/v1/tunnel"


_CHECKERS: dict[str, Any] = {
    "name": fields.check_name,
    "palette_endpoint": fields.check_palette_endpoint,
    "username": fields.check_username,
    "password": fields.check_password,
    "pairing_code": fields.check_pairing_code,
    "palette_ca_file": fields.check_ca_file,
    "https_proxy": lambda v: fields.check_proxy(v, "HTTPS"),
    "http_proxy": lambda v: fields.check_proxy(v, "HTTP"),
    "no_proxy": fields.check_no_proxy,
    "pod_cidr": fields.check_pod_cidr,
    "service_range": fields.check_service_range,
    "maas_endpoint": fields.check_maas_endpoint,
    "maas_api_key": fields.check_api_key,
    "domain": lambda v: fields.check_maas_name(v, "domain"),
    "zone": lambda v: fields.check_maas_name(v, "availability zone"),
    "resource_pool": lambda v: fields.check_maas_name(v, "resource pool"),
    "node_count": fields.check_node_count,
}
