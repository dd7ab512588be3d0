"""Microsoft.ElasticSan: Elastic SANs, volume groups, volumes and volume snapshots."""

from __future__ import annotations

import math
import re
import secrets
import string
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from elasticsan_snapshotter.emulator.calls import Call, get_dict, get_int
from elasticsan_snapshotter.emulator.config import EmulatorConfig, format_seconds
from elasticsan_snapshotter.emulator.contents import GIB, Contents
from elasticsan_snapshotter.emulator.errors import ArmError, invalid, json_response, not_found
from elasticsan_snapshotter.emulator.lro import SUCCEEDED, Operations
from elasticsan_snapshotter.emulator.paging import page
from elasticsan_snapshotter.emulator.resources import (
    DISK_SNAPSHOTS,
    ELASTIC_SANS,
    ELASTICSAN_PROVIDER,
    PRE_BACKUP,
    PRE_RESTORE,
    TYPES,
    VOLUME_GROUPS,
    VOLUME_SNAPSHOTS,
    VOLUMES,
    check_name,
    elasticsan_id,
    normalize_location,
    parse_id,
    system_data,
)
from elasticsan_snapshotter.emulator.state import Record, Store

API_VERSION = "2025-09-01"
# Earlier stable versions have the same shapes for everything the emulator serves.
API_VERSIONS = frozenset({"2025-09-01", "2024-05-01", "2023-01-01"})

_GIB_PER_TIB = 1024
_MAX_VOLUME_GIB = 64 * _GIB_PER_TIB
_GROUPS_PER_SAN = 200
_VOLUMES_PER_GROUP = 1000
_SKUS = ("Premium_LRS", "Premium_ZRS")
_FILTER = re.compile(r"^\s*volumeName\s+eq\s+(?:'([^']*)'|\"([^\"]*)\"|(\S+))\s*$", re.IGNORECASE)
_ID_ALPHABET = string.ascii_lowercase + string.digits
_PORTAL_PORT = 3260


def _busy(record: Record) -> ArmError:
    return ArmError(
        409,
        "AnotherOperationInProgress",
        f"Another operation is in progress on '{record['name']}' (provisioningState {record['state']}).",
    )


def _quota(message: str) -> ArmError:
    return ArmError(409, "QuotaExceeded", message)


def _iqn(volume: Record) -> str:
    target = volume["target"]
    return f"iqn.{target['month']}.net.windows.core.blob.ElasticSan.es-{target['id']}:{volume['name']}"


def _portal_host(volume: Record) -> str:
    target = volume["target"]
    return f"es-{target['id']}.z{target['zone']}.blob.storage.azure.net"


class ElasticSanService:
    def __init__(
        self, store: Store, operations: Operations, config: EmulatorConfig, contents: Contents
    ) -> None:
        self.store = store
        self.operations = operations
        self.config = config
        self.contents = contents
        # Filled in by the server: reads a managed-disk snapshot record for DiskSnapshot sources.
        self.disk_snapshot_progress: Callable[[Record], float] = lambda record: 100.0

    # Dispatch --------------------------------------------------------------------------

    def handle(self, call: Call) -> web.Response:
        route = call.route
        method = call.method
        if route.collection:
            if method != "GET":
                raise ArmError(405, "MethodNotAllowed", f"{method} is not supported on a collection.")
            return self._list(call)
        handlers: dict[tuple[str, str], Callable[[Call], web.Response]] = {
            (ELASTIC_SANS, "GET"): self._get,
            (ELASTIC_SANS, "PUT"): self._put_san,
            (ELASTIC_SANS, "PATCH"): self._patch_san,
            (ELASTIC_SANS, "DELETE"): self._delete,
            (VOLUME_GROUPS, "GET"): self._get,
            (VOLUME_GROUPS, "PUT"): self._put_group,
            (VOLUME_GROUPS, "PATCH"): self._patch_group,
            (VOLUME_GROUPS, "DELETE"): self._delete,
            (VOLUMES, "GET"): self._get,
            (VOLUMES, "PUT"): self._put_volume,
            (VOLUMES, "PATCH"): self._patch_volume,
            (VOLUMES, "DELETE"): self._delete,
            (VOLUME_SNAPSHOTS, "GET"): self._get,
            (VOLUME_SNAPSHOTS, "PUT"): self._put_snapshot,
            (VOLUME_SNAPSHOTS, "DELETE"): self._delete,
            (PRE_BACKUP, "POST"): self._pre_backup,
            (PRE_RESTORE, "POST"): self._pre_restore,
        }
        handler = handlers.get((route.kind, method))
        if handler is None:
            raise ArmError(405, "MethodNotAllowed", f"{method} is not supported on {route.kind}.")
        return handler(call)

    # Ids and lookups -------------------------------------------------------------------

    def _id(self, call: Call, kind: str, names: tuple[str, ...]) -> str:
        """The id a resource of ``kind`` with these names has, built on its parent's stored id."""
        rg = call.route.resource_group or ""
        if kind == ELASTIC_SANS:
            san = self.store.get(elasticsan_id(call.route.subscription, rg, names[0]))
            return san["id"] if san else elasticsan_id(self.store.identity["subscription_id"], rg, names[0])
        parent = self._parent(call, kind, names)
        segment = {VOLUME_GROUPS: "volumegroups", VOLUMES: "volumes", VOLUME_SNAPSHOTS: "snapshots"}[kind]
        own = self.store.get(f"{parent['id']}/{segment}/{names[-1]}")
        return own["id"] if own else f"{parent['id']}/{segment}/{names[-1]}"

    def _parent(self, call: Call, kind: str, names: tuple[str, ...]) -> Record:
        rg = call.route.resource_group or ""
        san = self.store.get(elasticsan_id(call.route.subscription, rg, names[0]))
        if san is None:
            raise ArmError(
                404, "ParentResourceNotFound", f"The parent resource 'elasticSans/{names[0]}' was not found."
            )
        if kind == VOLUME_GROUPS:
            return san
        group = self.store.get(f"{san['id']}/volumegroups/{names[1]}")
        if group is None:
            raise ArmError(
                404,
                "ParentResourceNotFound",
                f"The parent resource 'elasticSans/{names[0]}/volumegroups/{names[1]}' was not found.",
            )
        return group

    def _existing(self, call: Call) -> Record | None:
        return self.store.get(self._id(call, call.route.kind, call.route.names))

    def _require(self, call: Call) -> Record:
        record = self._existing(call)
        if record is None:
            raise not_found(TYPES[call.route.kind], "/".join(call.route.names))
        return record

    def _san_of(self, record: Record) -> Record:
        key = record["parent"]
        while True:
            parent = self.store.resources[key]
            if parent["kind"] == ELASTIC_SANS:
                return parent
            key = parent["parent"]

    def _groups(self, san: Record) -> list[Record]:
        return self.store.children(san["id"], VOLUME_GROUPS)

    def _san_volumes(self, san: Record) -> list[Record]:
        groups = self.store.children(san["id"], VOLUME_GROUPS, ordered=False)
        return [v for g in groups for v in self.store.children(g["id"], VOLUMES, ordered=False)]

    def _san_snapshots(self, san: Record) -> list[Record]:
        groups = self.store.children(san["id"], VOLUME_GROUPS, ordered=False)
        return [s for g in groups for s in self.store.children(g["id"], VOLUME_SNAPSHOTS, ordered=False)]

    def _volume_snapshots(self, volume: Record) -> list[Record]:
        group = volume["parent"]
        return [
            s
            for s in self.store.of_source(volume["id"])
            if s["kind"] == VOLUME_SNAPSHOTS and s["parent"] == group
        ]

    def used_gib(self, san: Record) -> int:
        volumes = sum(int(v["props"]["sizeGiB"]) for v in self._san_volumes(san))
        return volumes + sum(int(s["consumed_gib"]) for s in self._san_snapshots(san))

    @staticmethod
    def total_gib(san: Record) -> int:
        props = san["props"]
        return (int(props["baseSizeTiB"]) + int(props["extendedCapacitySizeTiB"])) * _GIB_PER_TIB

    def _fits(self, san: Record, extra_gib: int, what: str) -> None:
        used, total = self.used_gib(san), self.total_gib(san)
        if used + extra_gib > total:
            raise _quota(
                f"Elastic SAN '{san['name']}' has {total - used} GiB free of {total} GiB; {what} needs "
                f"{extra_gib} GiB."
            )

    # Rendering -------------------------------------------------------------------------

    def render(self, record: Record) -> dict[str, Any]:
        kind = record["kind"]
        body: dict[str, Any] = {
            "id": record["id"],
            "name": record["name"],
            "type": TYPES[kind],
            "systemData": record["system_data"],
        }
        if kind == ELASTIC_SANS:
            body["location"] = record["location"]
            body["tags"] = record.get("tags") or {}
            body["properties"] = self._san_properties(record)
        elif kind == VOLUME_GROUPS:
            if record.get("identity") is not None:
                body["identity"] = record["identity"]
            body["properties"] = dict(record["props"]) | {
                "provisioningState": record["state"],
                "privateEndpointConnections": [],
            }
        elif kind == VOLUMES:
            body["properties"] = self._volume_properties(record)
        else:
            body["properties"] = {
                "creationData": {"sourceId": record["props"]["creationData"]["sourceId"]},
                "provisioningState": record["state"],
                "sourceVolumeSizeGiB": record["source_size_gib"],
                "volumeName": record["volume_name"],
            }
        return body

    def _san_properties(self, san: Record) -> dict[str, Any]:
        props = san["props"]
        base = int(props["baseSizeTiB"])
        out: dict[str, Any] = {
            "sku": props["sku"],
            "baseSizeTiB": base,
            "extendedCapacitySizeTiB": int(props["extendedCapacitySizeTiB"]),
            "totalVolumeSizeGiB": sum(int(v["props"]["sizeGiB"]) for v in self._san_volumes(san)),
            "volumeGroupCount": len(self._groups(san)),
            "totalIops": base * 5000,
            "totalMBps": base * 200,
            "totalSizeTiB": base + int(props["extendedCapacitySizeTiB"]),
            "provisioningState": san["state"],
            "privateEndpointConnections": [],
            "publicNetworkAccess": props.get("publicNetworkAccess", "Enabled"),
        }
        for key in ("availabilityZones", "autoScaleProperties"):
            if props.get(key) is not None:
                out[key] = props[key]
        return out

    def _volume_properties(self, volume: Record) -> dict[str, Any]:
        props = volume["props"]
        state = volume["state"]
        out: dict[str, Any] = {
            "volumeId": volume["volume_id"],
            "creationData": props["creationData"],
            "sizeGiB": int(props["sizeGiB"]),
            "storageTarget": {
                "targetIqn": _iqn(volume),
                "targetPortalHostname": _portal_host(volume),
                "targetPortalPort": _PORTAL_PORT,
                "provisioningState": state,
                "status": "Running" if state == SUCCEEDED else "Updating",
            },
            "provisioningState": state,
        }
        if props.get("managedBy") is not None:
            out["managedBy"] = props["managedBy"]
        return out

    def _answer(self, call: Call, record: Record, status: int, op: Record | None) -> web.Response:
        headers = self.operations.headers(op, call.base_url) if op is not None else {}
        return json_response(self.render(record), status=status, headers=headers)

    def _begin(self, call: Call, record: Record, action: str, cascade: list[str] | None = None) -> Record:
        record["state"] = {"create": "Creating", "update": "Updating", "delete": "Deleting"}[action]
        self.store.put(record)
        location = self._san_of(record)["location"] if record["kind"] != ELASTIC_SANS else record["location"]
        return self.operations.start(
            provider=ELASTICSAN_PROVIDER,
            api_version=call.api_version,
            location=location,
            action=action,
            resource=record,
            fault=call.fault,
            cascade=cascade,
        )

    def _new_record(self, call: Call, kind: str, parent: Record | None) -> Record:
        route = call.route
        return {
            "id": self._id(call, kind, route.names),
            "kind": kind,
            "name": route.name,
            "parent": parent["id"].lower() if parent is not None else None,
            "state": "Creating",
            "system_data": system_data(call.principal.client_id),
        }

    @staticmethod
    def _touch(call: Call, record: Record) -> None:
        record["system_data"] = system_data(call.principal.client_id, record["system_data"])

    # Generic GET / DELETE / list -------------------------------------------------------

    def _get(self, call: Call) -> web.Response:
        return json_response(self.render(self._require(call)))

    def _delete(self, call: Call) -> web.Response:
        kind = call.route.kind
        if kind != ELASTIC_SANS:
            self._parent(call, kind, call.route.names)
        record = self._existing(call)
        if record is None:
            return web.Response(status=204)
        if self.operations.in_progress(record) is not None:
            raise _busy(record)
        cascade: list[str] = []
        if kind == ELASTIC_SANS and self._groups(record):
            raise ArmError(
                409, "Conflict", f"Elastic SAN '{record['name']}' still has volume groups; delete them first."
            )
        if kind == VOLUME_GROUPS and (
            self.store.children(record["id"], VOLUMES) or self.store.children(record["id"], VOLUME_SNAPSHOTS)
        ):
            raise ArmError(
                409, "Conflict", f"Volume group '{record['name']}' still has volumes; delete them first."
            )
        if kind == VOLUMES:
            cascade = self._volume_delete_cascade(call, record)
        op = self._begin(call, record, "delete", cascade)
        headers = self.operations.headers(op, call.base_url) | {"Content-Length": "0"}
        return web.Response(status=202, headers=headers)

    def _volume_delete_cascade(self, call: Call, volume: Record) -> list[str]:
        snapshots = self._volume_snapshots(volume)
        flag = call.headers.get("x-ms-delete-snapshots", "false").strip().lower()
        force = call.headers.get("x-ms-force-delete", "false").strip().lower()
        for name, value in (("x-ms-delete-snapshots", flag), ("x-ms-force-delete", force)):
            if value not in ("true", "false"):
                raise invalid(f"Header '{name}' allows only 'true' or 'false'.", target=name)
        if snapshots and flag != "true" and self.config.volume_delete_with_snapshots == "refuse":
            raise ArmError(
                409,
                "Conflict",
                f"Volume '{volume['name']}' has {len(snapshots)} snapshot(s); set header "
                "'x-ms-delete-snapshots: true' to delete them with the volume.",
            )
        for snapshot in snapshots:
            if self.operations.in_progress(snapshot) is not None:
                raise _busy(snapshot)
        return [s["id"].lower() for s in snapshots]

    def _list(self, call: Call) -> web.Response:
        route = call.route
        kind = route.kind
        items: list[Record]
        if kind == ELASTIC_SANS:
            sub = self.store.identity["subscription_id"].lower()
            items = [
                r
                for r in self.store.of_kind(ELASTIC_SANS)
                if r["subscription"].lower() == sub
                and (
                    route.resource_group is None
                    or r["resource_group"].lower() == route.resource_group.lower()
                )
            ]
        else:
            parent = self._parent(call, kind, route.names)
            items = self.store.children(parent["id"], kind)
        extra: dict[str, str] = {}
        if kind == VOLUME_SNAPSHOTS and call.query.get("$filter"):
            wanted = self._filter_volume(call.query["$filter"])
            items = [s for s in items if s["volume_name"].lower() == wanted.lower()]
            extra["$filter"] = call.query["$filter"]
        elif call.query.get("$filter"):
            raise invalid(f"$filter is not supported on {kind}.", target="$filter")
        return page(call, [self.render(r) for r in items], self.config.page_size, extra)

    @staticmethod
    def _filter_volume(expression: str) -> str:
        match = _FILTER.match(expression)
        if match is None:
            raise invalid(
                f"Unsupported $filter '{expression}'; only \"volumeName eq <name>\" is supported.",
                target="$filter",
            )
        return next(g for g in match.groups() if g is not None)

    # Elastic SANs ----------------------------------------------------------------------

    def _put_san(self, call: Call) -> web.Response:
        name = call.route.name
        check_name(ELASTIC_SANS, name)
        body = call.body_object()
        location = body.get("location")
        if not isinstance(location, str) or not location.strip():
            raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
        props = get_dict(body, "properties", "properties")
        sku = get_dict(props, "sku", "properties.sku")
        if sku.get("name") not in _SKUS:
            raise invalid(
                f"properties.sku.name must be one of {', '.join(_SKUS)}.", target="properties.sku.name"
            )
        base = get_int(props, "baseSizeTiB", "properties.baseSizeTiB", minimum=1, maximum=400)
        extended = get_int(
            props, "extendedCapacitySizeTiB", "properties.extendedCapacitySizeTiB", minimum=0, maximum=600
        )
        if base is None or extended is None:
            raise invalid("properties.baseSizeTiB and properties.extendedCapacitySizeTiB are required.")
        stored = {
            "sku": {"name": sku["name"], "tier": "Premium"},
            "baseSizeTiB": base,
            "extendedCapacitySizeTiB": extended,
        }
        for key in ("availabilityZones", "publicNetworkAccess", "autoScaleProperties"):
            if props.get(key) is not None:
                stored[key] = props[key]
        tags = get_dict(body, "tags", "tags")
        existing = self._existing(call)
        if existing is not None:
            if self.operations.in_progress(existing) is not None:
                raise _busy(existing)
            if normalize_location(existing["location"]) != normalize_location(location):
                raise ArmError(
                    409,
                    "InvalidResourceLocation",
                    f"The resource '{name}' already exists in location '{existing['location']}'.",
                )
            self._resize_check(existing, stored)
            existing["props"] = stored
            existing["tags"] = tags
            self._touch(call, existing)
            op = self._begin(call, existing, "update")
            return self._answer(call, existing, 200, op)
        same_region = [
            s
            for s in self.store.of_kind(ELASTIC_SANS)
            if normalize_location(s["location"]) == normalize_location(location)
        ]
        if len(same_region) >= self.config.sans_per_region:
            raise _quota(f"At most {self.config.sans_per_region} Elastic SANs per subscription and region.")
        record = self._new_record(call, ELASTIC_SANS, None)
        record |= {
            "location": location,
            "tags": tags,
            "props": stored,
            "subscription": self.store.identity["subscription_id"],
            "resource_group": call.route.resource_group,
        }
        op = self._begin(call, record, "create")
        return self._answer(call, record, 201, op)

    def _resize_check(self, san: Record, new_props: dict[str, Any]) -> None:
        total = (int(new_props["baseSizeTiB"]) + int(new_props["extendedCapacitySizeTiB"])) * _GIB_PER_TIB
        used = self.used_gib(san)
        if total < used:
            raise invalid(f"The new capacity ({total} GiB) is below the capacity in use ({used} GiB).")

    def _patch_san(self, call: Call) -> web.Response:
        san = self._require(call)
        if self.operations.in_progress(san) is not None:
            raise _busy(san)
        body = call.body_object()
        props = get_dict(body, "properties", "properties")
        stored = dict(san["props"])
        base = get_int(props, "baseSizeTiB", "properties.baseSizeTiB", minimum=1, maximum=400)
        extended = get_int(
            props, "extendedCapacitySizeTiB", "properties.extendedCapacitySizeTiB", minimum=0, maximum=600
        )
        if base is not None:
            stored["baseSizeTiB"] = base
        if extended is not None:
            stored["extendedCapacitySizeTiB"] = extended
        for key in ("publicNetworkAccess", "autoScaleProperties"):
            if props.get(key) is not None:
                stored[key] = props[key]
        self._resize_check(san, stored)
        san["props"] = stored
        if body.get("tags") is not None:
            san["tags"] = get_dict(body, "tags", "tags")
        self._touch(call, san)
        op = self._begin(call, san, "update")
        headers = self.operations.headers(op, call.base_url) | {"Content-Length": "0"}
        return web.Response(status=202, headers=headers)

    # Volume groups ---------------------------------------------------------------------

    @staticmethod
    def _group_fields(body: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
        props = get_dict(body, "properties", "properties")
        out = dict(stored)
        enums = {
            "protocolType": ("Iscsi", "None"),
            "encryption": ("EncryptionAtRestWithPlatformKey", "EncryptionAtRestWithCustomerManagedKey"),
        }
        for key, allowed in enums.items():
            if props.get(key) is not None:
                if props[key] not in allowed:
                    raise invalid(
                        f"properties.{key} must be one of {', '.join(allowed)}.", f"properties.{key}"
                    )
                out[key] = props[key]
        for key in ("encryptionProperties", "networkAcls"):
            if props.get(key) is not None:
                out[key] = get_dict(props, key, f"properties.{key}")
        if props.get("enforceDataIntegrityCheckForIscsi") is not None:
            if not isinstance(props["enforceDataIntegrityCheckForIscsi"], bool):
                raise invalid("properties.enforceDataIntegrityCheckForIscsi must be a boolean.")
            out["enforceDataIntegrityCheckForIscsi"] = props["enforceDataIntegrityCheckForIscsi"]
        return out

    @staticmethod
    def _identity(body: dict[str, Any], tenant_id: str) -> dict[str, Any] | None:
        identity = get_dict(body, "identity", "identity")
        if not identity:
            return None
        kind = identity.get("type")
        if kind not in ("None", "SystemAssigned", "UserAssigned"):
            raise invalid("identity.type must be None, SystemAssigned or UserAssigned.", "identity.type")
        out: dict[str, Any] = {"type": kind}
        if kind == "SystemAssigned":
            out |= {"principalId": str(uuid.uuid4()), "tenantId": tenant_id}
        if kind == "UserAssigned":
            assigned = get_dict(identity, "userAssignedIdentities", "identity.userAssignedIdentities")
            out["userAssignedIdentities"] = {
                key: {"principalId": str(uuid.uuid4()), "clientId": str(uuid.uuid4())} for key in assigned
            }
        return out

    def _put_group(self, call: Call) -> web.Response:
        check_name(VOLUME_GROUPS, call.route.name)
        san = self._parent(call, VOLUME_GROUPS, call.route.names)
        body = call.body_object()
        existing = self._existing(call)
        defaults = {"protocolType": "Iscsi", "encryption": "EncryptionAtRestWithPlatformKey"}
        fields = self._group_fields(body, defaults)
        identity = self._identity(body, self.store.identity["tenant_id"])
        if existing is not None:
            if self.operations.in_progress(existing) is not None:
                raise _busy(existing)
            existing["props"] = fields
            existing["identity"] = identity
            self._touch(call, existing)
            op = self._begin(call, existing, "update")
            return self._answer(call, existing, 200, op)
        if len(self._groups(san)) >= _GROUPS_PER_SAN:
            raise _quota(f"An Elastic SAN holds at most {_GROUPS_PER_SAN} volume groups.")
        record = self._new_record(call, VOLUME_GROUPS, san)
        record |= {"props": fields, "identity": identity}
        op = self._begin(call, record, "create")
        return self._answer(call, record, 201, op)

    def _patch_group(self, call: Call) -> web.Response:
        group = self._require(call)
        if self.operations.in_progress(group) is not None:
            raise _busy(group)
        body = call.body_object()
        group["props"] = self._group_fields(body, group["props"])
        if body.get("identity") is not None:
            group["identity"] = self._identity(body, self.store.identity["tenant_id"])
        self._touch(call, group)
        op = self._begin(call, group, "update")
        headers = self.operations.headers(op, call.base_url) | {"Content-Length": "0"}
        return web.Response(status=202, headers=headers)

    # Volumes ---------------------------------------------------------------------------

    def _put_volume(self, call: Call) -> web.Response:
        check_name(VOLUMES, call.route.name)
        group = self._parent(call, VOLUMES, call.route.names)
        san = self._san_of(group)
        body = call.body_object()
        props = get_dict(body, "properties", "properties")
        size = get_int(props, "sizeGiB", "properties.sizeGiB", minimum=1, maximum=_MAX_VOLUME_GIB)
        if size is None:
            raise invalid("properties.sizeGiB is required.", "properties.sizeGiB")
        creation = get_dict(props, "creationData", "properties.creationData")
        managed_by = get_dict(props, "managedBy", "properties.managedBy") or None
        existing = self._existing(call)
        if existing is not None:
            if self.operations.in_progress(existing) is not None:
                raise _busy(existing)
            if creation and creation != existing["props"]["creationData"]:
                raise ArmError(
                    409,
                    "PropertyChangeNotAllowed",
                    "properties.creationData cannot be changed on an existing volume.",
                    target="properties.creationData",
                )
            self._resize_volume(existing, san, size)
            if managed_by is not None:
                existing["props"]["managedBy"] = managed_by
            self._touch(call, existing)
            op = self._begin(call, existing, "update")
            return self._answer(call, existing, 200, op)
        stored_creation, source = self._creation_source(creation, san, size)
        if len(self.store.children(group["id"], VOLUMES, ordered=False)) >= _VOLUMES_PER_GROUP:
            raise _quota(f"A volume group holds at most {_VOLUMES_PER_GROUP} volumes.")
        self._fits(san, size, f"volume '{call.route.name}'")
        record = self._new_record(call, VOLUMES, group)
        # The volume starts with its source's content, as the source is now.
        if source is None:
            content = self.contents.create(size * GIB)
        else:
            content = self.contents.clone(source["content"], size * GIB)
        record |= {
            "content": content,
            "props": {"sizeGiB": size, "creationData": stored_creation}
            | ({"managedBy": managed_by} if managed_by else {}),
            "volume_id": str(uuid.uuid4()),
            "target": {
                "id": "".join(secrets.choice(_ID_ALPHABET) for _ in range(12)),
                "zone": secrets.randbelow(50) + 1,
                "month": time.strftime("%Y-%m", time.gmtime()),
            },
            # Set through the admin API to override the measured change; None: measure.
            "written_gib": None,
            "snapshot_times": [],
        }
        op = self._begin(call, record, "create")
        return self._answer(call, record, 201, op)

    def _resize_volume(self, volume: Record, san: Record, size: int) -> None:
        current = int(volume["props"]["sizeGiB"])
        if size < current:
            raise invalid(
                f"Volume '{volume['name']}' cannot shrink from {current} GiB to {size} GiB.",
                "properties.sizeGiB",
            )
        if size > current:
            self._fits(san, size - current, f"growing volume '{volume['name']}'")
        volume["props"]["sizeGiB"] = size
        self.contents.grow(volume["content"], size * GIB)

    def _creation_source(
        self, creation: dict[str, Any], san: Record, size: int
    ) -> tuple[dict[str, Any], Record | None]:
        """The ``creationData`` to store, and the record whose content the volume starts with."""
        source = creation.get("createSource", "None")
        source_id = creation.get("sourceId")
        if source == "None":
            return {"createSource": "None"} | ({"sourceId": source_id} if source_id else {}), None
        if source not in ("VolumeSnapshot", "DiskSnapshot"):
            raise invalid(
                f"createSource '{source}' is not supported; use None, VolumeSnapshot or DiskSnapshot.",
                "properties.creationData.createSource",
            )
        target = "properties.creationData.sourceId"
        if not isinstance(source_id, str) or not source_id:
            raise invalid(f"sourceId is required when createSource is {source}.", target)
        route = parse_id(source_id)
        expected = VOLUME_SNAPSHOTS if source == "VolumeSnapshot" else DISK_SNAPSHOTS
        if route is None or route.kind != expected:
            raise invalid(f"sourceId '{source_id}' is not the id of a {TYPES[expected]} resource.", target)
        source_record = self.store.get(source_id if source_id.startswith("/") else "/" + source_id)
        if source_record is None:
            raise ArmError(404, "ResourceNotFound", f"The source '{source_id}' was not found.", target=target)
        if source_record["state"] != SUCCEEDED:
            raise ArmError(
                409, "OperationNotAllowed", f"The source '{source_id}' is not ready.", target=target
            )
        if source == "VolumeSnapshot":
            source_location = self._san_of(source_record)["location"]
            source_size = int(source_record["source_size_gib"])
        else:
            source_location = source_record["location"]
            source_size = int(source_record["disk_size_gb"])
            if self.disk_snapshot_progress(source_record) < 100.0:
                raise ArmError(
                    409,
                    "OperationNotAllowed",
                    f"The disk snapshot '{source_id}' has not finished copying.",
                    target=target,
                )
        if normalize_location(source_location) != normalize_location(san["location"]):
            raise invalid(
                f"The source is in '{source_location}' but the Elastic SAN is in '{san['location']}'; "
                "they must be in the same region.",
                target,
            )
        if size < source_size:
            raise invalid(
                f"sizeGiB {size} is smaller than the source ({source_size} GiB).", "properties.sizeGiB"
            )
        return {"createSource": source, "sourceId": source_record["id"]}, source_record

    def _patch_volume(self, call: Call) -> web.Response:
        volume = self._require(call)
        if self.operations.in_progress(volume) is not None:
            raise _busy(volume)
        props = get_dict(call.body_object(), "properties", "properties")
        size = get_int(props, "sizeGiB", "properties.sizeGiB", minimum=1, maximum=_MAX_VOLUME_GIB)
        if size is not None:
            self._resize_volume(volume, self._san_of(volume), size)
        if props.get("managedBy") is not None:
            volume["props"]["managedBy"] = get_dict(props, "managedBy", "properties.managedBy")
        self._touch(call, volume)
        op = self._begin(call, volume, "update")
        headers = self.operations.headers(op, call.base_url) | {"Content-Length": "0"}
        return web.Response(status=202, headers=headers)

    def set_written(self, volume_id: str, written_gib: int) -> Record:
        """Admin hook: how much of the volume changed since its last snapshot (else measured)."""
        volume = self.store.get(volume_id)
        if volume is None or volume["kind"] != VOLUMES:
            raise not_found(TYPES[VOLUMES], volume_id)
        if written_gib < 0 or written_gib > int(volume["props"]["sizeGiB"]):
            raise invalid(f"writtenGiB must be between 0 and the volume size ({volume['props']['sizeGiB']}).")
        volume["written_gib"] = written_gib
        self.store.mark_dirty()
        return volume

    def login(self, iqn: str, portal: str | None) -> dict[str, Any]:
        """Admin hook standing in for an iSCSI login: the file that holds the target's volume."""
        volume = next((v for v in self.store.of_kind(VOLUMES) if _iqn(v).lower() == iqn.lower()), None)
        if volume is None:
            raise ArmError(404, "NotFound", f"No volume has the iSCSI target '{iqn}'.")
        expected = f"{_portal_host(volume)}:{_PORTAL_PORT}"
        if portal is not None and portal.lower() not in (expected.lower(), _portal_host(volume).lower()):
            raise ArmError(404, "NotFound", f"Target '{iqn}' is served at '{expected}', not at '{portal}'.")
        if volume["state"] != SUCCEEDED:
            raise _busy(volume)
        path = self.contents.path(volume["content"]).resolve()
        return {"volumeId": volume["id"], "path": str(path), "sizeBytes": path.stat().st_size}

    # Volume snapshots ------------------------------------------------------------------

    def _put_snapshot(self, call: Call) -> web.Response:
        check_name(VOLUME_SNAPSHOTS, call.route.name)
        group = self._parent(call, VOLUME_SNAPSHOTS, call.route.names)
        props = get_dict(call.body_object(), "properties", "properties")
        creation = get_dict(props, "creationData", "properties.creationData")
        source_id = creation.get("sourceId")
        target = "properties.creationData.sourceId"
        if not isinstance(source_id, str) or not source_id:
            raise invalid("properties.creationData.sourceId is required.", target)
        route = parse_id(source_id)
        if route is None or route.kind != VOLUMES:
            raise invalid(f"sourceId '{source_id}' is not the id of a volume.", target)
        volume = self.store.get(source_id if source_id.startswith("/") else "/" + source_id)
        if volume is None:
            raise ArmError(
                404, "ResourceNotFound", f"The source volume '{source_id}' was not found.", target=target
            )
        if volume["parent"] != group["id"].lower():
            raise invalid("The source volume must be in the snapshot's volume group.", target)
        existing = self._existing(call)
        if existing is not None:
            # A repeated PUT (a client retry) must not create a second snapshot.
            if existing["source"] != volume["id"].lower():
                raise ArmError(
                    409,
                    "Conflict",
                    f"Snapshot '{existing['name']}' already exists for another volume.",
                    target=target,
                )
            op = self.operations.in_progress(existing)
            return self._answer(call, existing, 200, op)
        if self.operations.in_progress(volume) is not None or volume["state"] != SUCCEEDED:
            raise _busy(volume)
        self._snapshot_limits(volume)
        # The content is captured now, when the PUT is accepted (see docs/emulator.md).
        content = self.contents.clone(volume["content"], 0)
        try:
            consumed = self._snapshot_cost(volume, content)
            self._fits(self._san_of(group), consumed, f"snapshot '{call.route.name}'")
        except BaseException:
            self.contents.delete(content)
            raise
        record = self._new_record(call, VOLUME_SNAPSHOTS, group)
        record |= {
            "content": content,
            "props": {"creationData": {"sourceId": volume["id"]}},
            "source": volume["id"].lower(),
            "volume_name": volume["name"],
            "source_size_gib": int(volume["props"]["sizeGiB"]),
            "consumed_gib": consumed,
        }
        volume["written_gib"] = None
        volume["snapshot_times"] = [*volume["snapshot_times"], time.time()]
        op = self._begin(call, record, "create")
        return self._answer(call, record, 201, op)

    def _snapshot_cost(self, volume: Record, content: str) -> int:
        """GiB a new snapshot consumes: nothing for the first, else what changed since the latest."""
        previous = self._volume_snapshots(volume)
        if not previous:
            return 0
        if volume.get("written_gib") is not None:
            return int(volume["written_gib"])
        latest = max(previous, key=lambda s: str(s["system_data"]["createdAt"]))
        return math.ceil(self.contents.changed_bytes(content, latest["content"]) / GIB)

    def _snapshot_limits(self, volume: Record) -> None:
        limit = self.config.max_snapshots_per_volume
        if len(self._volume_snapshots(volume)) >= limit:
            raise _quota(f"Volume '{volume['name']}' already has the maximum of {limit} snapshots.")
        now = time.time()
        window = self.config.snapshot_rate_window
        recent = sorted(t for t in volume["snapshot_times"] if t > now - window)
        volume["snapshot_times"] = recent
        rate = self.config.snapshot_rate_limit
        if len(recent) >= rate:
            wait = max(1, math.ceil(recent[-rate] + window - now))
            raise ArmError(
                429,
                "TooManyRequests",
                f"Volume '{volume['name']}' already had {rate} snapshots in the last {format_seconds(window)} "
                f"seconds; retry after {wait} seconds.",
                headers={"Retry-After": str(wait)},
            )

    # Pre-backup / pre-restore ----------------------------------------------------------

    def _pre_backup(self, call: Call) -> web.Response:
        group = self._parent(call, VOLUMES, call.route.names)
        names = call.body_object().get("volumeNames")
        if not isinstance(names, list) or len(names) != 1 or not isinstance(names[0], str):
            raise invalid("volumeNames must list exactly one volume.", "volumeNames")
        if self.store.get(f"{group['id']}/volumes/{names[0]}") is None:
            raise not_found(TYPES[VOLUMES], names[0])
        return json_response({"validationStatus": "success"})

    def _pre_restore(self, call: Call) -> web.Response:
        group = self._parent(call, VOLUMES, call.route.names)
        ids = call.body_object().get("diskSnapshotIds")
        if not isinstance(ids, list) or len(ids) != 1 or not isinstance(ids[0], str):
            raise invalid("diskSnapshotIds must list exactly one disk snapshot.", "diskSnapshotIds")
        route = parse_id(ids[0])
        snapshot = self.store.get(ids[0] if ids[0].startswith("/") else "/" + ids[0])
        if route is None or route.kind != DISK_SNAPSHOTS or snapshot is None:
            raise ArmError(404, "ResourceNotFound", f"The disk snapshot '{ids[0]}' was not found.")
        san = self._san_of(group)
        if normalize_location(snapshot["location"]) != normalize_location(san["location"]):
            raise invalid(
                "The disk snapshot must be in the same region as the Elastic SAN.", "diskSnapshotIds"
            )
        return json_response({"validationStatus": "success"})
