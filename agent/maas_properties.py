"""``maas.zones``, ``maas.resource_pools``, ``maas.domains``, ``maas.subnets``: what MAAS offers,
read for Palette's cloud-account forms. Read-only, so they are not idempotent operations."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from agent.maas_access import OpenMaas
from agent.rpc import Progress
from protocol.maas.models import ResourcePool, Zone
from protocol.rpc import Request

__all__ = ["MaasProperties"]


@dataclass(eq=False, slots=True)
class MaasProperties:
    """The ``maas.*`` RPC methods; each opens its own MAAS client with ``open_maas``."""

    open_maas: OpenMaas

    async def zones(self, request: Request, progress: Progress) -> list[dict[str, Any]]:
        async with self.open_maas() as maas:
            zones = await maas.list_zones()
        return [_named(z) for z in zones]

    async def resource_pools(self, request: Request, progress: Progress) -> list[dict[str, Any]]:
        async with self.open_maas() as maas:
            pools = await maas.list_resource_pools()
        return [_named(p) for p in pools]

    async def domains(self, request: Request, progress: Progress) -> list[dict[str, Any]]:
        async with self.open_maas() as maas:
            domains = await maas.list_domains()
        return [
            {
                "id": d.id,
                "name": d.name,
                "authoritative": d.authoritative,
                "isDefault": d.is_default,
                "ttl": d.ttl,
            }
            for d in domains
        ]

    async def subnets(self, request: Request, progress: Progress) -> list[dict[str, Any]]:
        async with self.open_maas() as maas:
            subnets = await maas.list_subnets()
            limit = asyncio.Semaphore(8)

            async def unreserved(subnet_id: int) -> list[dict[str, Any]]:
                async with limit:
                    ranges = await maas.unreserved_ip_ranges(subnet_id)
                return [
                    {"start": r.start, "end": r.end, "numAddresses": r.num_addresses}
                    for r in ranges
                ]

            free = await asyncio.gather(*(unreserved(s.id) for s in subnets))
        return [
            {
                "id": s.id,
                "name": s.name,
                "cidr": s.cidr,
                "gatewayIp": s.gateway_ip,
                "dnsServers": list(s.dns_servers),
                "vid": s.vid,
                "fabric": s.fabric,
                "space": s.space,
                "managed": s.managed,
                "unreserved": ranges,
            }
            for s, ranges in zip(subnets, free, strict=True)
        ]


def _named(item: Zone | ResourcePool) -> dict[str, Any]:
    """A zone or resource pool as Palette lists it."""
    return {"id": item.id, "name": item.name, "description": item.description}
