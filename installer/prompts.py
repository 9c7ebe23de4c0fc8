"""Interactive mode: every field of the product doc's tables, in the doc's order.

Arrow keys choose from lists, secrets (password, pairing code, API key) are not echoed, defaults
are shown and kept with Enter, and every answer is checked as it is typed (the same checks as
pcg.yaml's, :mod:`installer.fields`): a wrong one shows what to fix and is asked again. Answers
that need a server are checked there too: the Palette sign-in (and that the user is not an
SSO-only user), the pairing code, and the MAAS endpoint + key, whose domains, zones and pools
then become the pick-lists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import questionary
from rich.console import Console
from rich.markup import escape

from installer import fields
from installer.config import InstallConfig
from installer.encryption import check_passphrase
from installer.exceptions import PaletteError
from installer.machines import Placement, Survey
from installer.palette import PaletteClient
from protocol.maas.client import MaasClient
from protocol.maas.exceptions import MaasError
from protocol.maas.models import Machine
from protocol.maas.retry import RetryPolicy

Validator = Callable[[str], str | None]

INSTALL_TYPES = [questionary.Choice("Private Cloud Gateway", value="private-cloud-gateway")]
CLOUD_TYPES = [questionary.Choice("MAAS", value="maas")]


def _validate(check: Validator) -> Callable[[str], bool | str]:
    def validate(text: str) -> bool | str:
        message = check(text)
        if message is None:
            return True
        # the answer is on the screen just above: leave it out, so the line fits the toolbar
        return message.replace(f" {text!r}", "").replace(f" {text.strip()!r}", "")

    return validate


def _text(message: str, default: str, check: Validator) -> str:
    answer: str = questionary.text(message, default=default, validate=_validate(check)).unsafe_ask()
    return answer.strip()


def _secret(message: str, check: Validator) -> str:
    answer: str = questionary.password(message, validate=_validate(check)).unsafe_ask()
    return answer.strip()


def _select(message: str, choices: list[Any], default: Any = None) -> Any:
    return questionary.select(
        message, choices=choices, default=default, instruction="(arrow keys, Enter)"
    ).unsafe_ask()


@dataclass(frozen=True, slots=True)
class MaasInventory:
    domains: list[str]
    zones: list[str]
    pools: list[str]
    machines: list[Machine]


async def _sign_in(endpoint: str, username: str, password: str, ca_file: str | None) -> None:
    async with PaletteClient(endpoint, ca_file=ca_file) as palette:
        await palette.login(username, password)


async def _check_code(
    endpoint: str, username: str, password: str, ca_file: str | None, code: str
) -> None:
    async with PaletteClient(endpoint, ca_file=ca_file) as palette:
        await palette.login(username, password)
        await palette.validate_pairing_code(code)


async def _inventory(endpoint: str, key: str) -> MaasInventory:
    retry = RetryPolicy(attempts=2, base_delay=0.5, max_delay=2.0)
    async with MaasClient(endpoint, key, timeout=20.0, retry=retry) as maas:
        domains, zones, pools, machines = await asyncio.gather(
            maas.list_domains(), maas.list_zones(), maas.list_resource_pools(), maas.list_machines()
        )
    return MaasInventory(
        [d.name for d in domains], [z.name for z in zones], [p.name for p in pools], machines
    )


def ask(
    console: Console,
    *,
    prefill: Mapping[str, str],
    previous: InstallConfig | None = None,
    ca_file: str | None = None,
) -> InstallConfig:
    """Ask every answer; ``prefill`` (from the old flags) and ``previous`` (a pcg.yaml given
    with -c) provide the defaults. Raises KeyboardInterrupt when the user presses Ctrl-C."""

    def default(name: str, fallback: str = "") -> str:
        if name in prefill and prefill[name] is not None:
            return str(prefill[name])
        if previous is not None:
            return str(getattr(previous, name))
        return fallback

    console.print("[bold]Palette parameters[/bold]")
    install_type = _select("Install Type", INSTALL_TYPES)
    cloud_type = _select("Cloud Type", CLOUD_TYPES)
    name = _text("Name", default("name"), fields.check_name)
    endpoint_default = default("palette_endpoint", fields.DEFAULT_PALETTE_ENDPOINT)
    username_default = default("username")
    while True:
        endpoint = _text("Endpoint", endpoint_default, fields.check_palette_endpoint)
        username = _text("Username", username_default, fields.check_username)
        password = _secret("Password", fields.check_password)
        try:
            asyncio.run(_sign_in(endpoint, username, password, ca_file))
            break
        except PaletteError as exc:
            _problem(console, exc)
            endpoint_default, username_default = endpoint, username
    while True:
        pairing_code = _secret("Pairing Code", fields.check_pairing_code)
        try:
            asyncio.run(_check_code(endpoint, username, password, ca_file, pairing_code))
            break
        except PaletteError as exc:
            _problem(console, exc)

    console.print("[bold]Environment configuration[/bold]")
    https_proxy = _text(
        "HTTPS Proxy", default("https_proxy"), lambda v: fields.check_proxy(v, "HTTPS")
    )
    http_proxy = _text("HTTP Proxy", default("http_proxy"), lambda v: fields.check_proxy(v, "HTTP"))
    no_proxy = _text("No Proxy", default("no_proxy"), fields.check_no_proxy)
    pod_cidr = _text(
        "Pod CIDR", default("pod_cidr", fields.DEFAULT_POD_CIDR), fields.check_pod_cidr
    )

    def check_range(value: str) -> str | None:
        problem = fields.check_service_range(value)
        if problem is None and fields.networks_overlap(value.strip(), pod_cidr):
            return (
                f"service IP range {value.strip()} overlaps the pod CIDR {pod_cidr}: pick another"
            )
        return problem

    service_range = _text(
        "Service IP Range", default("service_range", fields.DEFAULT_SERVICE_RANGE), check_range
    )

    console.print("[bold]MAAS account information[/bold]")
    maas_default = default("maas_endpoint")
    while True:
        maas_endpoint = _text("MAAS API Endpoint", maas_default, fields.check_maas_endpoint)
        api_key = _secret("MAAS API Key", fields.check_api_key)
        try:
            inventory = asyncio.run(_inventory(maas_endpoint, api_key))
            break
        except MaasError as exc:
            _problem(console, exc)
            maas_default = maas_endpoint
    domain = _select("Domain", inventory.domains, _keep(default("domain"), inventory.domains))
    zone = _select("Availability Zone", inventory.zones, _keep(default("zone"), inventory.zones))
    pool = _select(
        "Resource Pool", inventory.pools, _keep(default("resource_pool"), inventory.pools)
    )
    survey = Survey.of(inventory.machines, Placement(zone, pool))
    ready = len(survey.qualifying)
    console.print(
        f"{ready} machine(s) in zone {escape(zone)}, pool {escape(pool)} can be gateway nodes "
        "(Ready, >= 4 CPUs, 8192 MiB, 60 GiB).",
        highlight=False,
    )
    nodes = _select(
        "Nodes",
        [
            questionary.Choice("One node (no HA)", value=1),
            questionary.Choice("Three nodes (HA)", value=3),
        ],
        default=None,
    )
    return InstallConfig(
        name=name,
        palette_endpoint=endpoint,
        username=username,
        password=password,
        pairing_code=pairing_code,
        https_proxy=https_proxy,
        http_proxy=http_proxy,
        no_proxy=no_proxy,
        pod_cidr=pod_cidr,
        service_range=service_range,
        maas_endpoint=maas_endpoint,
        maas_api_key=api_key,
        domain=domain,
        zone=zone,
        resource_pool=pool,
        node_count=int(nodes),
        palette_ca_file=ca_file,
        install_type=install_type,
        cloud_type=cloud_type,
    )


def ask_passphrase(console: Console) -> str:
    console.print(
        "pcg.yaml keeps the Palette password and the MAAS API key encrypted with a passphrase "
        "(8-32 characters, upper and lower case, a digit, a special character). Keep it: a "
        "rerun needs it (--encryption-passphrase or PCG_ENCRYPTION_PASSPHRASE).",
        highlight=False,
    )
    while True:
        first = _secret("Encryption passphrase", check_passphrase)
        again: str = questionary.password("Passphrase again").unsafe_ask()
        if again == first:
            return first
        console.print("[red]The two passphrases differ; enter them again.[/red]")


def ask_new_secrets(console: Console) -> tuple[str, str]:
    console.print("Enter the new values (they are encrypted into pcg.yaml).", highlight=False)
    return _secret("Palette Password", fields.check_password), _secret(
        "MAAS API Key", fields.check_api_key
    )


def _keep(value: str, options: list[str]) -> str | None:
    return value if value in options else None


def _problem(console: Console, exc: Exception) -> None:
    console.print(f"[bold red]x[/bold red] {escape(str(exc))}", highlight=False)
    console.print("  Enter the details again.", highlight=False)
