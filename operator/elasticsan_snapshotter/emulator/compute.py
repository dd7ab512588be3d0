"""Microsoft.Compute snapshots exported from Elastic SAN volume snapshots.

Only what an export needs: PUT with ``createOption: CopyFromSanSnapshot``, GET, DELETE and a
list per resource group. azure-mgmt-compute accepts only 200/202 from the PUT, so a new
snapshot is answered 202. The copy runs after the operation has finished:
``completionPercent`` climbs from 0 to 100 over ``--export-seconds``; the snapshot's content
is copied when the PUT is accepted.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from aiohttp import web

from elasticsan_snapshotter.emulator.calls import Call, get_dict
from elasticsan_snapshotter.emulator.config import EmulatorConfig
from elasticsan_snapshotter.emulator.contents import GIB, Contents
from elasticsan_snapshotter.emulator.errors import ArmError, invalid, json_response, not_found
from elasticsan_snapshotter.emulator.lro import SUCCEEDED, Operations
from elasticsan_snapshotter.emulator.paging import page
from elasticsan_snapshotter.emulator.resources import (
    COMPUTE_PROVIDER,
    DISK_SNAPSHOTS,
    ELASTIC_SANS,
    TYPES,
    VOLUME_SNAPSHOTS,
    check_name,
    disk_snapshot_id,
    normalize_location,
    now_iso,
    parse_id,
    system_data,
)
from elasticsan_snapshotter.emulator.state import Record, Store

# Disk RP api-versions all end in "-02" (2026-03-02 is what azure-mgmt-compute 39 sends).
API_VERSION_PATTERN = re.compile(r"^\d{4}-\d{2}-02$")
API_VERSION = "2026-03-02"

EXPORT_LIMIT_GIB = 4 * 1024
_SKUS = {"Standard_LRS": "Standard", "Premium_LRS": "Premium", "Standard_ZRS": "Standard"}


class ComputeService:
    def __init__(
        self, store: Store, operations: Operations, config: EmulatorConfig, contents: Contents
    ) -> None:
        self.store = store
        self.operations = operations
        self.config = config
        self.contents = contents

    def handle(self, call: Call) -> web.Response:
        if call.route.collection:
            if call.method != "GET":
                raise ArmError(405, "MethodNotAllowed", f"{call.method} is not supported on a collection.")
            rg = (call.route.resource_group or "").lower()
            items = [r for r in self.store.of_kind(DISK_SNAPSHOTS) if r["resource_group"].lower() == rg]
            return page(call, [self.render(r) for r in items], self.config.page_size, {})
        if call.method == "GET":
            record = self._existing(call)
            if record is None:
                raise not_found(TYPES[DISK_SNAPSHOTS], call.route.name)
            return json_response(self.render(record))
        if call.method == "PUT":
            return self._put(call)
        if call.method == "DELETE":
            return self._delete(call)
        raise ArmError(405, "MethodNotAllowed", f"{call.method} is not supported on snapshots.")

    def _id(self, call: Call) -> str:
        rg = call.route.resource_group or ""
        existing = self.store.get(disk_snapshot_id(call.route.subscription, rg, call.route.name))
        if existing is not None:
            return str(existing["id"])
        return disk_snapshot_id(self.store.identity["subscription_id"], rg, call.route.name)

    def _existing(self, call: Call) -> Record | None:
        return self.store.get(self._id(call))

    def progress(self, record: Record) -> float:
        """Copy progress in percent; the copy starts when the create operation has finished."""
        if record["state"] != SUCCEEDED and record.get("copy_started") is None:
            return 0.0
        started = float(record.get("copy_started") or record["created_ts"])
        seconds = float(record["export_seconds"])
        if seconds <= 0:
            return 100.0
        return round(min(100.0, 100.0 * (time.time() - started) / seconds), 1)

    def render(self, record: Record) -> dict[str, Any]:
        if record["state"] == SUCCEEDED and record.get("copy_started") is None:
            # Remembered so that a restart does not restart the copy.
            record["copy_started"] = time.time()
            self.store.mark_dirty()
        percent = self.progress(record)
        size = int(record["disk_size_gb"])
        properties: dict[str, Any] = {
            "creationData": record["creation_data"],
            "diskSizeGB": size,
            "diskSizeBytes": size * 1024**3,
            "timeCreated": record["time_created"],
            "provisioningState": record["state"],
            "incremental": bool(record["incremental"]),
            "uniqueId": record["unique_id"],
            "diskState": "Unattached",
            "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
            "networkAccessPolicy": "AllowAll",
            "publicNetworkAccess": "Enabled",
            "completionPercent": percent,
            "snapshotAccessState": "Available" if percent >= 100.0 else "Pending",
        }
        body: dict[str, Any] = {
            "id": record["id"],
            "name": record["name"],
            "type": TYPES[DISK_SNAPSHOTS],
            "location": record["location"],
            "sku": record["sku"],
            "properties": properties,
        }
        if record.get("tags"):
            body["tags"] = record["tags"]
        return body

    def _put(self, call: Call) -> web.Response:
        name = call.route.name
        check_name(DISK_SNAPSHOTS, name)
        body = call.body_object()
        location = body.get("location")
        if not isinstance(location, str) or not location.strip():
            raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
        props = get_dict(body, "properties", "properties")
        creation = get_dict(props, "creationData", "properties.creationData")
        tags = get_dict(body, "tags", "tags")
        existing = self._existing(call)
        if existing is not None:
            if creation and creation.get("elasticSanResourceId") != existing["creation_data"].get(
                "elasticSanResourceId"
            ):
                raise ArmError(
                    409,
                    "PropertyChangeNotAllowed",
                    "Changing property 'creationData' is not allowed.",
                    target="creationData",
                )
            existing["tags"] = tags
            self.store.mark_dirty()
            op = self.operations.in_progress(existing)
            headers = self.operations.headers(op, call.base_url) if op is not None else {}
            return json_response(self.render(existing), status=200, headers=headers)
        option = creation.get("createOption")
        if option != "CopyFromSanSnapshot":
            raise invalid(
                f"createOption '{option}' is not supported by the emulator; use CopyFromSanSnapshot.",
                "properties.creationData.createOption",
            )
        source, size = self._export_source(creation, location)
        sku_name = get_dict(body, "sku", "sku").get("name", "Standard_LRS")
        if sku_name not in _SKUS:
            raise invalid(f"sku.name must be one of {', '.join(_SKUS)}.", "sku.name")
        incremental = props.get("incremental", False)
        if not isinstance(incremental, bool):
            raise invalid("properties.incremental must be a boolean.", "properties.incremental")
        record: Record = {
            "id": self._id(call),
            "kind": DISK_SNAPSHOTS,
            # The copy's bytes are taken now; completionPercent only models how long Azure takes.
            "content": self.contents.clone(source["content"], size * GIB),
            "name": name,
            "parent": None,
            "state": "Updating",
            "system_data": system_data(call.principal.client_id),
            "resource_group": call.route.resource_group,
            "location": location,
            "tags": tags,
            "sku": {"name": sku_name, "tier": _SKUS[sku_name]},
            "creation_data": {
                "createOption": "CopyFromSanSnapshot",
                "elasticSanResourceId": creation["elasticSanResourceId"],
            },
            "source": source["id"].lower(),
            "incremental": incremental,
            "disk_size_gb": size,
            "unique_id": str(uuid.uuid4()),
            "time_created": now_iso(),
            "created_ts": time.time(),
            "export_seconds": self.config.export_seconds,
        }
        self.store.put(record)
        op = self.operations.start(
            provider=COMPUTE_PROVIDER,
            api_version=call.api_version,
            location=location,
            action="create",
            resource=record,
            fault=call.fault,
        )
        return json_response(
            self.render(record), status=202, headers=self.operations.headers(op, call.base_url)
        )

    def _export_source(self, creation: dict[str, Any], location: str) -> tuple[Record, int]:
        target = "properties.creationData.elasticSanResourceId"
        source_id = creation.get("elasticSanResourceId")
        if not isinstance(source_id, str) or not source_id:
            raise invalid(
                "elasticSanResourceId is required when createOption is CopyFromSanSnapshot.", target
            )
        route = parse_id(source_id)
        if route is None or route.kind != VOLUME_SNAPSHOTS:
            raise invalid(f"'{source_id}' is not the id of an Elastic SAN volume snapshot.", target)
        source = self.store.get(source_id if source_id.startswith("/") else "/" + source_id)
        if source is None:
            raise ArmError(
                404, "NotFound", f"Elastic SAN snapshot '{source_id}' was not found.", target=target
            )
        if source["state"] != SUCCEEDED:
            raise ArmError(409, "OperationNotAllowed", f"Elastic SAN snapshot '{source_id}' is not ready.")
        san = self._san_of(source)
        if normalize_location(san["location"]) != normalize_location(location):
            raise invalid(
                f"An Elastic SAN snapshot in '{san['location']}' can only be exported to the same region, "
                f"not to '{location}'.",
                "location",
            )
        size = int(source["source_size_gib"])
        if size > EXPORT_LIMIT_GIB:
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"Snapshots of volumes larger than 4 TiB cannot be exported; the volume has {size} GiB.",
                target=target,
            )
        return source, size

    def _san_of(self, snapshot: Record) -> Record:
        group = self.store.resources[snapshot["parent"]]
        san = self.store.resources[group["parent"]]
        assert san["kind"] == ELASTIC_SANS
        return san

    def _delete(self, call: Call) -> web.Response:
        record = self._existing(call)
        if record is None:
            return web.Response(status=204)
        if self.operations.in_progress(record) is not None:
            raise ArmError(
                409, "OperationNotAllowed", f"Another operation is in progress on '{record['name']}'."
            )
        record["state"] = "Deleting"
        self.store.put(record)
        op = self.operations.start(
            provider=COMPUTE_PROVIDER,
            api_version=call.api_version,
            location=record["location"],
            action="delete",
            resource=record,
            fault=call.fault,
        )
        headers = self.operations.headers(op, call.base_url) | {"Content-Length": "0"}
        return web.Response(status=202, headers=headers)

    def seed(self, *, subscription: str, resource_group: str, name: str, location: str, size_gb: int) -> None:
        """Create a ready managed-disk snapshot (for volumes created from a disk snapshot)."""
        check_name(DISK_SNAPSHOTS, name)
        resource_id = disk_snapshot_id(subscription, resource_group, name)
        if self.store.get(resource_id) is not None:
            return
        self.store.put(
            {
                "id": resource_id,
                "kind": DISK_SNAPSHOTS,
                "content": self.contents.create(size_gb * GIB),
                "name": name,
                "parent": None,
                "state": SUCCEEDED,
                "system_data": system_data("seed"),
                "resource_group": resource_group,
                "location": location,
                "tags": {},
                "sku": {"name": "Standard_LRS", "tier": "Standard"},
                "creation_data": {"createOption": "Import", "sourceUri": f"https://seed.invalid/{name}.vhd"},
                "source": None,
                "incremental": False,
                "disk_size_gb": size_gb,
                "unique_id": str(uuid.uuid4()),
                "time_created": now_iso(),
                "created_ts": time.time(),
                "copy_started": time.time(),
                "export_seconds": 0,
            }
        )
