"""Building blocks for export tests: the CRD, export objects as users write them, and waits."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from operator_scenario import wait_for

from elasticsan_snapshotter.emulator.process import EmulatorProcess

REPO_ROOT = Path(__file__).resolve().parents[3]
EXPORT_CRD = REPO_ROOT / "crds" / "elasticsansnapshotexports.yaml"
GROUP, VERSION, PLURAL = "elasticsan.snapshotter.dev", "v1alpha1", "elasticsansnapshotexports"
KIND = "ElasticSanSnapshotExport"
DISK_SNAPSHOT_TYPE = "Microsoft.Compute/snapshots"


def install_crd(api: k8s.ApiClient, path: Path = EXPORT_CRD, timeout: float = 30.0) -> None:
    """Create (or update) a CRD from its file and wait until the API server serves it."""
    manifest = yaml.safe_load(path.read_text())
    extensions = k8s.ApiextensionsV1Api(api)
    name = manifest["metadata"]["name"]
    try:
        extensions.create_custom_resource_definition(manifest)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = extensions.read_custom_resource_definition(name)
        manifest["metadata"]["resourceVersion"] = current.metadata.resource_version
        extensions.replace_custom_resource_definition(name, manifest)

    def established() -> bool:
        crd = extensions.read_custom_resource_definition(name)
        conditions = (crd.status.conditions if crd.status else None) or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(f"CRD {name} to be established", established, timeout)


def create_ours(
    custom: k8s.CustomObjectsApi, plural: str, kind: str, namespace: str, name: str, spec: dict[str, Any]
) -> dict[str, Any]:
    """Create one of our custom objects (group elasticsan.snapshotter.dev)."""
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}
    created: dict[str, Any] = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
    return created


def get_ours(custom: k8s.CustomObjectsApi, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    """One of our custom objects, or None when it does not exist."""
    try:
        found: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return found


class Exports:
    """ElasticSanSnapshotExport objects through the custom objects API."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.custom = k8s.CustomObjectsApi(api)

    def create(
        self,
        namespace: str,
        name: str,
        *,
        volume_snapshot: str | None = None,
        content: str | None = None,
        handle: str | None = None,
        target: dict[str, Any] | None = None,
        deletion_policy: str | None = None,
    ) -> dict[str, Any]:
        source = {
            k: v
            for k, v in (
                ("volumeSnapshotName", volume_snapshot),
                ("volumeSnapshotContentName", content),
                ("snapshotHandle", handle),
            )
            if v
        }
        spec: dict[str, Any] = {"source": source}
        if target:
            spec["target"] = target
        if deletion_policy:
            spec["deletionPolicy"] = deletion_policy
        return create_ours(self.custom, PLURAL, KIND, namespace, name, spec)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return get_ours(self.custom, PLURAL, namespace, name)

    def list(self, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
        found = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, label_selector=label_selector
        )
        return list(found["items"])

    def delete(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def phase(self, namespace: str, name: str) -> str | None:
        export = self.get(namespace, name)
        return ((export or {}).get("status") or {}).get("phase")

    def wait_phase(self, namespace: str, name: str, phase: str, timeout: float = 60.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            export = self.get(namespace, name)
            current = ((export or {}).get("status") or {}).get("phase")
            if current in ("Succeeded", "Failed") and current != phase:
                raise AssertionError(f"export {namespace}/{name} ended {current}, not {phase}: {export}")
            return export if current == phase else None

        return wait_for(f"export {namespace}/{name} to be {phase}", reached, timeout)

    def follow(
        self, namespace: str, name: str, timeout: float = 60.0, interval: float = 0.1
    ) -> tuple[dict[str, Any], list[tuple[str, int | None]]]:
        """Poll until the export ends; returns its last state and every (phase, progress) seen, in order."""
        seen: list[tuple[str, int | None]] = []
        deadline = time.monotonic() + timeout
        while True:
            export = self.get(namespace, name) or {}
            status = export.get("status") or {}
            point = (str(status.get("phase")), status.get("progressPercent"))
            if status.get("phase") and (not seen or seen[-1] != point):
                seen.append(point)
            if status.get("phase") in ("Succeeded", "Failed"):
                return export, seen
            if time.monotonic() > deadline:
                raise AssertionError(f"export {namespace}/{name} did not end in {timeout:.0f}s; saw {seen}")
            time.sleep(interval)


def disk_snapshots(emulator: EmulatorProcess) -> list[dict[str, Any]]:
    """The managed-disk snapshots the emulator holds, as it renders them."""
    return [r for r in emulator.admin.resources() if r.get("type") == DISK_SNAPSHOT_TYPE]


def disk_snapshot(emulator: EmulatorProcess, arm_id: str) -> dict[str, Any] | None:
    return next((r for r in disk_snapshots(emulator) if str(r["id"]).lower() == arm_id.lower()), None)


def same_arm_id(a: str, b: str) -> bool:
    return a.strip("/").lower() == b.strip("/").lower()


def kubectl_apply(kubectl: Path, kubeconfig: Path, manifest: str) -> subprocess.CompletedProcess[str]:
    """``kubectl apply -f -`` with the pinned kubectl against the local cluster."""
    return subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), "apply", "-f", "-"],
        input=manifest,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def finalizers(body: dict[str, Any] | None) -> list[str]:
    return list(((body or {}).get("metadata") or {}).get("finalizers") or [])
