"""ARM resource ids, the URL shapes the emulator serves, name rules and common fields."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from elasticsan_snapshotter.emulator.errors import ArmError

ELASTICSAN_PROVIDER = "Microsoft.ElasticSan"
COMPUTE_PROVIDER = "Microsoft.Compute"

# Resource kinds, as counters and fault rules name them.
ELASTIC_SANS = "elasticSans"
VOLUME_GROUPS = "volumeGroups"
VOLUMES = "volumes"
VOLUME_SNAPSHOTS = "volumeSnapshots"
DISK_SNAPSHOTS = "diskSnapshots"
OPERATIONS = "operations"
PRE_BACKUP = "preBackup"
PRE_RESTORE = "preRestore"

TYPES = {
    ELASTIC_SANS: "Microsoft.ElasticSan/elasticSans",
    VOLUME_GROUPS: "Microsoft.ElasticSan/elasticSans/volumeGroups",
    VOLUMES: "Microsoft.ElasticSan/elasticSans/volumeGroups/volumes",
    VOLUME_SNAPSHOTS: "Microsoft.ElasticSan/elasticSans/volumeGroups/snapshots",
    DISK_SNAPSHOTS: "Microsoft.Compute/snapshots",
}


@dataclass(frozen=True)
class Route:
    """What a request path (or an ARM id) points at."""

    kind: str
    subscription: str
    resource_group: str | None
    names: tuple[str, ...]
    collection: bool = False
    # For OPERATIONS: the provider namespace, and "status" or "result".
    provider: str = ""
    variant: str = ""

    @property
    def name(self) -> str:
        return self.names[-1]


def parse_path(path: str) -> Route | None:
    segs = [s for s in path.split("/") if s]
    low = [s.lower() for s in segs]
    if len(segs) < 4 or low[0] != "subscriptions":
        return None
    sub = segs[1]
    if low[2] == "providers":
        provider, tail, ltail = segs[3], segs[4:], low[4:]
        if low[3] == "microsoft.elasticsan" and ltail == ["elasticsans"]:
            return Route(ELASTIC_SANS, sub, None, (), collection=True)
        if len(tail) == 4 and ltail[0] == "locations" and ltail[2] in ("asyncoperations", "operationresults"):
            variant = "status" if ltail[2] == "asyncoperations" else "result"
            return Route(OPERATIONS, sub, None, (tail[1], tail[3]), provider=provider, variant=variant)
        return None
    if low[2] != "resourcegroups" or len(segs) < 6 or low[4] != "providers":
        return None
    rg, provider, tail, ltail = segs[3], low[5], segs[6:], low[6:]
    if provider == "microsoft.elasticsan" and ltail[:1] == ["elasticsans"]:
        return _elasticsan_route(sub, rg, tail, ltail)
    if provider == "microsoft.compute" and ltail[:1] == ["snapshots"]:
        if len(tail) == 1:
            return Route(DISK_SNAPSHOTS, sub, rg, (), collection=True)
        if len(tail) == 2:
            return Route(DISK_SNAPSHOTS, sub, rg, (tail[1],))
    return None


def _elasticsan_route(sub: str, rg: str, tail: list[str], ltail: list[str]) -> Route | None:
    n = len(tail)
    if n == 1:
        return Route(ELASTIC_SANS, sub, rg, (), collection=True)
    if n == 2:
        return Route(ELASTIC_SANS, sub, rg, (tail[1],))
    if ltail[2] != "volumegroups":
        return None
    if n == 3:
        return Route(VOLUME_GROUPS, sub, rg, (tail[1],), collection=True)
    if n == 4:
        return Route(VOLUME_GROUPS, sub, rg, (tail[1], tail[3]))
    child = {"volumes": VOLUMES, "snapshots": VOLUME_SNAPSHOTS}.get(ltail[4])
    if n == 5:
        if child is not None:
            return Route(child, sub, rg, (tail[1], tail[3]), collection=True)
        action = {"prebackup": PRE_BACKUP, "prerestore": PRE_RESTORE}.get(ltail[4])
        return None if action is None else Route(action, sub, rg, (tail[1], tail[3]))
    if n == 6 and child is not None:
        return Route(child, sub, rg, (tail[1], tail[3], tail[5]))
    return None


def parse_id(resource_id: str) -> Route | None:
    """Parse an ARM id given in a request body (a missing leading slash is tolerated)."""
    if not resource_id.startswith("/"):
        resource_id = "/" + resource_id
    route = parse_path(resource_id)
    if route is None or route.collection or route.kind == OPERATIONS:
        return None
    return route


def elasticsan_id(sub: str, rg: str, san: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{ELASTICSAN_PROVIDER}/elasticSans/{san}"


def disk_snapshot_id(sub: str, rg: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{COMPUTE_PROVIDER}/snapshots/{name}"


def normalize_location(location: str) -> str:
    return location.replace(" ", "").lower()


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def system_data(client_id: str, created: dict[str, str] | None = None) -> dict[str, str]:
    now = now_iso()
    data = {
        "createdBy": client_id,
        "createdByType": "Application",
        "createdAt": now,
        "lastModifiedBy": client_id,
        "lastModifiedByType": "Application",
        "lastModifiedAt": now,
    }
    if created is not None:
        for key in ("createdBy", "createdByType", "createdAt"):
            data[key] = created[key]
    return data


# Name rules of the 2025-09-01 swagger (path parameter patterns) and of Compute snapshots.
_NAME_RULES: dict[str, tuple[int, int, re.Pattern[str]]] = {
    ELASTIC_SANS: (3, 24, re.compile(r"^[A-Za-z0-9]+((-|_)[a-z0-9A-Z]+)*$")),
    VOLUME_GROUPS: (3, 63, re.compile(r"^[A-Za-z0-9]+((-|_)[a-z0-9A-Z]+)*$")),
    VOLUMES: (3, 63, re.compile(r"^[a-z0-9]+(-[a-z0-9A-Z]+)*$")),
    VOLUME_SNAPSHOTS: (1, 80, re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")),
    DISK_SNAPSHOTS: (1, 80, re.compile(r"^[A-Za-z0-9_-]+$")),
}


def check_name(kind: str, name: str) -> None:
    low, high, pattern = _NAME_RULES[kind]
    if not low <= len(name) <= high or not pattern.match(name):
        raise ArmError(
            400,
            "InvalidResourceName",
            f"Resource name '{name}' is invalid: a {kind} name must have {low} to {high} characters "
            f"and match {pattern.pattern}.",
            target="name",
        )
