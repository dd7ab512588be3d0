"""Every example operation of the Elastic SAN REST specification, replayed against the emulator.

Each response body must validate against the schema the specification declares for its status
code, and carry no property the schema does not declare. The specification lives outside the
repository (``../shared/azure-specs``); without it these tests are skipped, and with ``CI=true`` they
fail. Its references to
ARM's common types are not part of that copy, so a minimal rendering of those few types
(resource envelope, systemData, error response) is defined here.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.rest import HttpRequest
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from emulator_sdk import export_body, make_san, snapshot_body
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from capabilities import missing
from elasticsan_snapshotter.emulator.process import EmulatorInfo

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
SPECS = REPO_ROOT.parent / "shared" / "azure-specs"
ELASTICSAN = SPECS / "specification/elasticsan/resource-manager/Microsoft.ElasticSan/ElasticSan"
SWAGGER = ELASTICSAN / "stable/2025-09-01/elasticsan.json"
BASE_URI = "https://specs.invalid/specification/elasticsan/resource-manager/Microsoft.ElasticSan/ElasticSan/stable/2025-09-01/elasticsan.json"
COMMON_REF = "../../../../../../common-types/resource-management/v3/types.json"

_STRING = {"type": "string"}
COMMON_TYPES: dict[str, Any] = {
    "definitions": {
        "Resource": {
            "type": "object",
            "properties": {
                "id": _STRING,
                "name": _STRING,
                "type": _STRING,
                "systemData": {"$ref": "#/definitions/systemData"},
            },
        },
        "ProxyResource": {"type": "object", "allOf": [{"$ref": "#/definitions/Resource"}]},
        "TrackedResource": {
            "type": "object",
            "properties": {"tags": {"type": "object", "additionalProperties": _STRING}, "location": _STRING},
            "required": ["location"],
            "allOf": [{"$ref": "#/definitions/Resource"}],
        },
        "systemData": {
            "type": "object",
            "properties": {
                "createdBy": _STRING,
                "createdByType": {
                    "type": "string",
                    "enum": ["User", "Application", "ManagedIdentity", "Key"],
                },
                "createdAt": {"type": "string", "format": "date-time"},
                "lastModifiedBy": _STRING,
                "lastModifiedByType": {
                    "type": "string",
                    "enum": ["User", "Application", "ManagedIdentity", "Key"],
                },
                "lastModifiedAt": {"type": "string", "format": "date-time"},
            },
        },
        "ErrorResponse": {"type": "object", "properties": {"error": {"$ref": "#/definitions/ErrorDetail"}}},
        "ErrorDetail": {
            "type": "object",
            "properties": {
                "code": _STRING,
                "message": _STRING,
                "target": _STRING,
                "details": {"type": "array", "items": {"$ref": "#/definitions/ErrorDetail"}},
                "additionalInfo": {"type": "array", "items": {"type": "object"}},
            },
        },
    }
}

# Placeholders in example bodies and the values they stand for in this run.
SAN, GROUP, VOLUME, SNAPSHOT, LOCATION = (
    "elasticsanname",
    "volumegroupname",
    "volumename",
    "snapshotname",
    "francecentral",
)


def _spec() -> dict[str, Any]:
    if not SWAGGER.is_file():
        missing(f"the REST specification is not available at {SWAGGER} (../shared is absent)")
    return dict(json.loads(SWAGGER.read_text()))


def _examples() -> list[Path]:
    found = (
        sorted(ELASTICSAN.rglob("examples/**/*.json"), key=lambda p: p.name) if ELASTICSAN.is_dir() else []
    )
    # Without the specification one placeholder case remains; it skips with the reason (fails under CI=true).
    return found or [ELASTICSAN / "examples" / "absent.json"]


def _registry(spec: dict[str, Any]) -> Registry[Any]:
    common_uri = urllib.parse.urljoin(BASE_URI, COMMON_REF)
    return Registry().with_resources(
        [
            (BASE_URI, Resource(contents=spec, specification=DRAFT4)),
            (common_uri, Resource(contents=COMMON_TYPES, specification=DRAFT4)),
        ]
    )


def _operation(spec: dict[str, Any], operation_id: str) -> tuple[str, str, dict[str, Any]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                return method.upper(), path, operation
    raise AssertionError(f"operation {operation_id} is not in the specification")


def _declared(schema: dict[str, Any], resolver: Any) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """Every property a schema declares (through $ref and allOf), with its schema and resolver."""
    if "$ref" in schema:
        resolved = resolver.lookup(schema["$ref"])
        yield from _declared(resolved.contents, resolved.resolver)
        return
    for name, sub in schema.get("properties", {}).items():
        yield name, sub, resolver
    for part in schema.get("allOf", []):
        yield from _declared(part, resolver)


def _undeclared(schema: dict[str, Any], instance: Any, resolver: Any, where: str) -> list[str]:
    """Paths of properties in ``instance`` that its schema does not declare."""
    while "$ref" in schema:
        resolved = resolver.lookup(schema["$ref"])
        schema, resolver = resolved.contents, resolved.resolver
    if isinstance(instance, list) and "items" in schema:
        return [
            p
            for i, item in enumerate(instance)
            for p in _undeclared(schema["items"], item, resolver, f"{where}[{i}]")
        ]
    if not isinstance(instance, dict) or schema.get("additionalProperties") not in (None, False):
        return []
    declared = {name: (sub, res) for name, sub, res in _declared(schema, resolver)}
    if not declared:
        return []
    problems = []
    for key, value in instance.items():
        if key not in declared:
            problems.append(f"{where}.{key}")
        else:
            sub, res = declared[key]
            problems.extend(_undeclared(sub, value, res, f"{where}.{key}"))
    return problems


def _fill(value: Any, info: EmulatorInfo, rg: str) -> Any:
    """Replace the placeholders of example bodies with this run's names."""
    text = json.dumps(value)
    for placeholder, real in {
        "{subscriptionId}": info.subscription_id,
        "{subscriptionid}": info.subscription_id,
        "{resourceGroupName}": rg,
        "{resourcegroupname}": rg,
        "{elasticSanName}": SAN,
        "{volumeGroupName}": GROUP,
        "{volumeName}": VOLUME,
        "<volume name>": VOLUME,
    }.items():
        text = text.replace(placeholder, real)
    return json.loads(text)


def _prepare(client: ElasticSanMgmtClient, info: EmulatorInfo, rg: str, operation_id: str) -> None:
    """Create what the example operation needs: its parents, and itself unless it creates it."""
    group, action = operation_id.split("_", 1)
    order = ["ElasticSans", "VolumeGroups", "Volumes", "VolumeSnapshots"]
    depth = order.index(group) + (0 if action == "Create" else 1)
    if group == "VolumeSnapshots":
        depth = max(depth, 3)  # a snapshot needs its volume even when it is being created
    if action == "ListBySubscription":
        depth = 1
    if depth >= 1:
        make_san(client, rg, san=SAN, location=LOCATION, base_tib=1)
    if depth >= 2:
        client.volume_groups.begin_create(rg, SAN, GROUP, {}).result()
    if depth >= 3:
        client.volumes.begin_create(rg, SAN, GROUP, VOLUME, {"properties": {"sizeGiB": 5}}).result()
    if depth >= 4 or action == "PreRestore":
        volume_id = client.volumes.get(rg, SAN, GROUP, VOLUME).id
        assert volume_id is not None
        snapshot = client.volume_snapshots.begin_create(
            rg, SAN, GROUP, SNAPSHOT, snapshot_body(volume_id)
        ).result()
        if action == "PreRestore":
            assert snapshot.id is not None
            body = json.dumps(export_body(snapshot.id, location=LOCATION)).encode()
            url = f"/subscriptions/{info.subscription_id}/resourceGroups/{rg}/providers/Microsoft.Compute/snapshots/disksnapshot1?api-version=2026-03-02"
            response = client.send_request(
                HttpRequest("PUT", url, content=body, headers={"Content-Type": "application/json"})
            )
            assert response.status_code == 202


@pytest.mark.parametrize("example", _examples(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_example_responses_match_the_schema(
    example: Path, info: EmulatorInfo, esan: ElasticSanMgmtClient, rg: str
) -> None:
    spec = _spec()
    document = json.loads(example.read_text())
    operation_id = document["operationId"]
    method, template, operation = _operation(spec, operation_id)
    params = document["parameters"]
    _prepare(esan, info, rg, operation_id)

    path = template
    query: dict[str, str] = {"api-version": "2025-09-01"}
    headers: dict[str, str] = {}
    body: Any = None
    for parameter in operation["parameters"]:
        if "$ref" in parameter:
            name = parameter["$ref"].rsplit("/", 1)[-1]
            name = {
                "SubscriptionIdParameter": "subscriptionId",
                "ResourceGroupNameParameter": "resourceGroupName",
                "ApiVersionParameter": "api-version",
            }[name]
            where = "query" if name == "api-version" else "path"
        else:
            name, where = parameter["name"], parameter["in"]
        if name == "subscriptionId":
            value: Any = info.subscription_id
        elif name == "resourceGroupName":
            value = rg
        elif name == "api-version" or name not in params:
            continue
        else:
            value = _fill(params[name], info, rg)
        if where == "path":
            path = path.replace("{" + name + "}", urllib.parse.quote(str(value)))
        elif where == "query":
            query[name] = str(value)
        elif where == "header":
            headers[name] = str(value)
        elif where == "body":
            body = value
    url = f"{path}?{urllib.parse.urlencode(query)}"
    content = json.dumps(body).encode() if body is not None else None
    if content is not None:
        headers["Content-Type"] = "application/json"
    response = esan.send_request(HttpRequest(method, url, content=content, headers=headers))

    expected = set(document["responses"])
    assert str(response.status_code) in expected, f"{operation_id}: {response.status_code} {response.text()}"
    declared = operation["responses"][str(response.status_code)]
    if "schema" not in declared:
        assert not response.content, f"{operation_id}: {response.status_code} must have no body"
        return
    instance = response.json()
    registry = _registry(spec)
    # Response schemas are references into the specification; anchor them to its URI.
    schema = {"$ref": urllib.parse.urljoin(BASE_URI, declared["schema"]["$ref"])}
    validator = Draft4Validator(schema, registry=registry)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]
    assert errors == [], f"{operation_id}: {errors}"
    assert _undeclared(schema, instance, registry.resolver(BASE_URI), "$") == [], operation_id
