"""Resources to pre-create at start-up, from a JSON file (``--seed FILE``).

Format::

    {
      "elasticSans": [
        {"resourceGroup": "rg", "name": "san1", "location": "westeurope",
         "baseSizeTiB": 1, "extendedCapacitySizeTiB": 0, "sku": "Premium_LRS",
         "volumeGroups": [
           {"name": "vg1", "volumes": [{"name": "vol1", "sizeGiB": 10}]}
         ]}
      ],
      "diskSnapshots": [
        {"resourceGroup": "rg", "name": "disk-snap-1", "location": "westeurope", "diskSizeGB": 10}
      ]
    }

Seeding goes through the same validation as API calls, skips resources that already exist
(so a restart with the same file changes nothing) and finishes at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from elasticsan_snapshotter.emulator.calls import Call
from elasticsan_snapshotter.emulator.compute import ComputeService
from elasticsan_snapshotter.emulator.elasticsan import API_VERSION, ElasticSanService
from elasticsan_snapshotter.emulator.lro import Operations
from elasticsan_snapshotter.emulator.resources import parse_path
from elasticsan_snapshotter.emulator.state import Store
from elasticsan_snapshotter.emulator.tokens import CONTRIBUTOR, Principal

_SEEDER = Principal(client_id="seed", role=CONTRIBUTOR)


def apply_seed(
    path: Path, store: Store, operations: Operations, elasticsan: ElasticSanService, compute: ComputeService
) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ValueError(f"{path}: the seed must be a JSON object")
    sub = store.identity["subscription_id"]

    def put(resource_path: str, body: dict[str, Any]) -> None:
        route = parse_path(resource_path)
        if route is None:
            raise ValueError(f"seed: cannot place {resource_path}")
        call = Call(
            method="PUT",
            path=resource_path,
            route=route,
            query=MultiDictProxy(MultiDict({"api-version": API_VERSION})),
            headers=CIMultiDictProxy(CIMultiDict()),
            body=body,
            principal=_SEEDER,
            base_url="https://seed.invalid",
            api_version=API_VERSION,
            fault=None,
        )
        if store.get(resource_path) is None:
            elasticsan.handle(call)
        # Seeded resources are ready at once.
        for op in store.operations.values():
            op["done_at"] = 0.0
        operations.settle()

    for san in document.get("elasticSans", []):
        san_path = (
            f"/subscriptions/{sub}/resourceGroups/{san['resourceGroup']}/providers/"
            f"Microsoft.ElasticSan/elasticSans/{san['name']}"
        )
        put(
            san_path,
            {
                "location": san["location"],
                "properties": {
                    "sku": {"name": san.get("sku", "Premium_LRS")},
                    "baseSizeTiB": int(san.get("baseSizeTiB", 1)),
                    "extendedCapacitySizeTiB": int(san.get("extendedCapacitySizeTiB", 0)),
                },
            },
        )
        for group in san.get("volumeGroups", []):
            group_path = f"{san_path}/volumegroups/{group['name']}"
            put(group_path, {"properties": {"protocolType": "Iscsi"}})
            for volume in group.get("volumes", []):
                put(
                    f"{group_path}/volumes/{volume['name']}",
                    {"properties": {"sizeGiB": int(volume["sizeGiB"])}},
                )
    for snapshot in document.get("diskSnapshots", []):
        compute.seed(
            subscription=sub,
            resource_group=snapshot["resourceGroup"],
            name=snapshot["name"],
            location=snapshot["location"],
            size_gb=int(snapshot["diskSizeGB"]),
        )
    store.save()
