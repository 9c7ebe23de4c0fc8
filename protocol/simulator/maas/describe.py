"""``GET describe/``: the document python-libmaas builds its whole API from.

python-libmaas (maas/client/bones) reads ``resources[]``; each has ``name`` and an ``anon`` and/or
``auth`` handler with ``name`` ("MachinesHandler" becomes ``client.machines``' backing
``Machines``), ``params`` (URI placeholders), ``path``, absolute ``uri`` and ``actions`` (``name``,
``method``, ``op``, ``restful``, ``doc``). Only what the simulator serves is described, so
python-libmaas finds no method the simulator would answer with 404.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from protocol.simulator.maas.render import API_PREFIX

__all__ = ["HANDLERS", "api_hash", "describe"]

# (handler name, anonymous?, path under /MAAS/api/2.0/, params, doc, actions)
# action: (name, HTTP method, op or None, doc)
Action = tuple[str, str, str | None, str]
Handler = tuple[str, bool, str, tuple[str, ...], str, tuple[Action, ...]]

_READ: Action = ("read", "GET", None, "Read.")

HANDLERS: tuple[Handler, ...] = (
    (
        "VersionHandler",
        True,
        "version/",
        (),
        "Information about this MAAS instance.",
        (("read", "GET", None, "Version and capabilities of this MAAS instance."),),
    ),
    (
        "MachinesHandler",
        False,
        "machines/",
        (),
        "Manage the collection of all the machines in the MAAS.",
        (
            ("read", "GET", None, "List machines, filtered by zone, pool, status, hostname..."),
            ("allocate", "POST", "allocate", "Allocate an available machine for deployment."),
            ("release", "POST", "release", "Release multiple machines."),
        ),
    ),
    (
        "MachineHandler",
        False,
        "machines/{system_id}/",
        ("system_id",),
        "Manage an individual machine.",
        (
            ("read", "GET", None, "Read a machine."),
            ("deploy", "POST", "deploy", "Deploy an operating system to a machine."),
            ("release", "POST", "release", "Release a machine."),
        ),
    ),
    ("ZonesHandler", False, "zones/", (), "Manage physical zones.", (_READ,)),
    ("ZoneHandler", False, "zones/{name}/", ("name",), "Manage a physical zone.", (_READ,)),
    ("ResourcePoolsHandler", False, "resourcepools/", (), "Manage resource pools.", (_READ,)),
    (
        "ResourcePoolHandler",
        False,
        "resourcepool/{id}/",
        ("id",),
        "Manage a resource pool.",
        (_READ,),
    ),
    ("DomainsHandler", False, "domains/", (), "Manage domains.", (_READ,)),
    ("DomainHandler", False, "domains/{id}/", ("id",), "Manage domain.", (_READ,)),
    ("SubnetsHandler", False, "subnets/", (), "Manage subnets.", (_READ,)),
    (
        "SubnetHandler",
        False,
        "subnets/{id}/",
        ("id",),
        "Manage subnet.",
        (
            _READ,
            (
                "unreserved_ip_ranges",
                "GET",
                "unreserved_ip_ranges",
                "Lists IP ranges currently unreserved in the subnet.",
            ),
        ),
    ),
    ("IPRangesHandler", False, "ipranges/", (), "Manage IP ranges.", (_READ,)),
)


def describe(base_url: str) -> dict[str, Any]:
    """The document, with absolute URIs under ``base_url`` (``http://host:port``)."""
    resources = []
    for name, anonymous, path, params, doc, actions in HANDLERS:
        handler = {
            "name": name,
            "doc": doc,
            "params": list(params),
            "path": f"{API_PREFIX}{path}",
            "uri": f"{base_url}{API_PREFIX}{path}",
            "actions": [
                {
                    "name": action,
                    "method": method,
                    "op": op,
                    "restful": op is None,
                    "doc": action_doc,
                }
                for action, method, op, action_doc in actions
            ],
        }
        resources.append(
            {
                "name": name,
                "anon": handler if anonymous else None,
                "auth": None if anonymous else handler,
            }
        )
    return {"doc": "MAAS API (simulated)", "hash": api_hash(), "resources": resources}


def api_hash() -> str:
    """Stands for MAAS's X-MAAS-API-Hash: changes only when the described API changes."""
    return hashlib.sha1(json.dumps(HANDLERS).encode(), usedforsecurity=False).hexdigest()
