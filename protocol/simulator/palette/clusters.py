"""MAAS cluster requests: validate Palette's shape, and flatten it for the gateway's RPC."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocol.simulator.palette.model import Cluster


def _bad(message: str) -> Exception:
    from protocol.simulator.palette.server import PaletteError

    return PaletteError(400, "InvalidClusterSpec", message)


def validate_cluster(body: Any) -> tuple[str, dict[str, Any]]:
    """(name, spec) of a valid `POST /v1/spectroclusters/maas` body, or a 400 saying what."""
    if not isinstance(body, Mapping):
        raise _bad("the body must be a JSON object with metadata and spec")
    name = (body.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name.strip():
        raise _bad("metadata.name is required: the cluster's name")
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        raise _bad("spec is required")
    if not isinstance(spec.get("cloudAccountUid"), str):
        raise _bad("spec.cloudAccountUid is required: the MAAS cloud account to use")
    pools = spec.get("machinepoolconfig")
    if not isinstance(pools, list) or not pools:
        raise _bad("spec.machinepoolconfig must list at least one machine pool")
    names = set()
    control_planes = 0
    for index, pool in enumerate(pools):
        where = f"spec.machinepoolconfig[{index}]"
        pool_config = (pool or {}).get("poolConfig") if isinstance(pool, Mapping) else None
        cloud = (pool or {}).get("cloudConfig") if isinstance(pool, Mapping) else None
        if not isinstance(pool_config, Mapping) or not isinstance(cloud, Mapping):
            raise _bad(f"{where} needs poolConfig and cloudConfig")
        pool_name = pool_config.get("name")
        size = pool_config.get("size")
        if not isinstance(pool_name, str) or not pool_name:
            raise _bad(f"{where}.poolConfig.name is required")
        if pool_name in names:
            raise _bad(f"two machine pools are named {pool_name!r}; pool names must differ")
        names.add(pool_name)
        if type(size) is not int or size < 1:
            raise _bad(f"{where}.poolConfig.size={size!r} must be a whole number >= 1")
        control_planes += bool(pool_config.get("isControlPlane"))
        instance = cloud.get("instanceType") or {}
        for key in ("minCPU", "minMemInMB", "minDiskSizeInGB"):
            value = instance.get(key, 0)
            if type(value) is not int or value < 0:
                raise _bad(f"{where}.cloudConfig.instanceType.{key}={value!r} must be >= 0")
        if not isinstance(cloud.get("azs", []), list):
            raise _bad(f"{where}.cloudConfig.azs must be a list of zone names")
    if control_planes != 1:
        raise _bad(
            f"exactly one machine pool must have isControlPlane true, found {control_planes}"
        )
    return name.strip(), dict(spec)


def rpc_params(cluster: Cluster) -> dict[str, Any]:
    """The `cluster.create` params for the gateway (the contract in README.md)."""
    spec = cluster.spec
    pools = []
    for pool in spec["machinepoolconfig"]:
        cloud, config = pool["cloudConfig"], pool["poolConfig"]
        instance = cloud.get("instanceType") or {}
        pools.append(
            {
                "name": config["name"],
                "size": config["size"],
                "isControlPlane": bool(config.get("isControlPlane")),
                "azs": list(cloud.get("azs") or []),
                "resourcePool": cloud.get("resourcePool") or "",
                "minCPU": instance.get("minCPU", 0),
                "minMemInMB": instance.get("minMemInMB", 0),
                "minDiskSizeInGB": instance.get("minDiskSizeInGB", 0),
                "tags": list(cloud.get("tags") or []),
            }
        )
    domain = (spec.get("cloudConfig") or {}).get("domain") or "maas"
    return {
        "clusterUid": cluster.uid,
        "name": cluster.name,
        "domain": domain,
        "machinePools": pools,
    }
