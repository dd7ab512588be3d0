"""Velero as a user runs it against the local control plane, with an S3 stand-in for its bucket.

- Object storage: moto's S3 server on 127.0.0.1; every request to it is signed.
- Velero's CRDs, namespace, service account, BackupStorageLocation and Deployment come from
  ``velero install --dry-run -o yaml`` of the pinned binary. The Deployment is kept with zero
  replicas (its image is what restores read); ``velero server`` itself runs here, outside the
  cluster, with the admin kubeconfig and a plugin folder holding the AWS object-store plugin.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import boto3
import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from elasticsan_snapshotter.local_cluster.cluster import Component, free_port
from waiting import wait_for

NAMESPACE = "velero"
BUCKET = "velero-backups"
REGION = "us-east-1"
ACCESS_KEY, SECRET_KEY = "test-access-key", "test-secret-key"
VELERO_GROUP, VELERO_VERSION = "velero.io", "v1"
FEATURES = "EnableCSI"
"""Velero 1.18 takes CSI snapshots of claims only with this feature flag."""


_SCOPES = ("cluster", "namespaces")


class ObjectStore:
    """moto's S3 server on 127.0.0.1 with one bucket; stop() ends the process."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Component(
            "moto",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            workdir / "moto.log",
        )

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def start(self) -> ObjectStore:
        self.process.start()

        def answering() -> bool:
            self.process.check_alive()
            try:
                self.client().list_buckets()
            except Exception:  # not listening yet
                return False
            return True

        wait_for("the S3 stand-in to answer", answering, timeout=60)
        self.client().create_bucket(Bucket=BUCKET)
        return self

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def backup_items(self, backup: str, resource: str) -> list[dict[str, Any]]:
        """The items of one resource in a backup's tarball (Velero uploads no separate content list)."""
        body = self.client().get_object(Bucket=BUCKET, Key=f"backups/{backup}/{backup}.tar.gz")["Body"]
        found = []
        with tarfile.open(fileobj=io.BytesIO(body.read()), mode="r:gz") as tar:
            for member in tar.getmembers():
                parts = member.name.split("/")
                # resources/<resource>/{cluster,namespaces/<ns>}/<name>.json; the same items are
                # repeated under resources/<resource>/v1-preferredversion/.
                if member.isfile() and parts[:2] == ["resources", resource] and parts[2] in _SCOPES:
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    found.append(json.loads(extracted.read()))
        return found

    def stop(self) -> None:
        self.process.stop()


class Velero:
    """The pinned ``velero`` binary: install objects, the server process, and its CLI."""

    def __init__(
        self, velero: Path, plugin: Path, kubectl: Path, kubeconfig: Path, store: ObjectStore, workdir: Path
    ) -> None:
        self.velero, self.kubectl, self.kubeconfig, self.store = velero, kubectl, kubeconfig, store
        self.workdir = workdir
        self.plugin_dir = workdir / "plugins"
        self.plugin_dir.mkdir()
        (self.plugin_dir / plugin.name).symlink_to(plugin)
        credentials = workdir / "aws-credentials"
        credentials.write_text(
            f"[default]\naws_access_key_id={ACCESS_KEY}\naws_secret_access_key={SECRET_KEY}\n"
        )
        # Velero keeps credential files under the temporary folder; the CLI reads its config
        # from $HOME. Both stay in this run's folder.
        self.env = {
            "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
            "TMPDIR": str(workdir),
            "HOME": str(workdir),
        }
        self.server: Component | None = None

    def cli(self, *args: str, timeout: float = 120) -> str:
        proc = subprocess.run(
            [str(self.velero), f"--kubeconfig={self.kubeconfig}", f"--namespace={NAMESPACE}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **self.env},
        )
        if proc.returncode != 0:
            raise AssertionError(f"velero {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout}")
        return proc.stdout

    def install_manifests(self, plugin_image: str, image: str) -> list[dict[str, Any]]:
        out = self.cli(
            "install",
            "--dry-run",
            "--output=yaml",
            "--provider=aws",
            f"--plugins={plugin_image}",
            f"--image={image}",
            f"--bucket={BUCKET}",
            f"--backup-location-config=region={REGION},s3ForcePathStyle=true,s3Url={self.store.url}",
            "--no-secret",
            "--use-volume-snapshots=false",
            f"--features={FEATURES}",
        )
        listed = yaml.safe_load(out)
        items: list[dict[str, Any]] = listed["items"]
        return items

    def install(self, plugin_image: str, image: str) -> None:
        """What ``velero install`` creates, with the Deployment at zero replicas."""
        items = self.install_manifests(plugin_image, image)
        for item in items:
            if item["kind"] == "Deployment":
                item["spec"]["replicas"] = 0
        crds = [i for i in items if i["kind"] == "CustomResourceDefinition"]
        rest = [i for i in items if i["kind"] != "CustomResourceDefinition"]
        self._apply(crds)
        self._kubectl(
            "wait", "--for=condition=Established", "--timeout=120s", "crd", "-l", "component=velero"
        )
        self._apply(rest)

    def _apply(self, items: list[dict[str, Any]]) -> None:
        manifest = self.workdir / f"install-{len(items)}-{time.monotonic_ns()}.yaml"
        manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
        self._kubectl("apply", "--server-side", "-f", str(manifest))

    def _kubectl(self, *args: str) -> None:
        subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            check=True,
            capture_output=True,
            timeout=180,
        )

    def start_server(self) -> None:
        env = [f"{k}={v}" for k, v in self.env.items()]
        self.server = Component(
            "velero",
            [
                "env",
                *env,
                # Velero's CSI plugin polls every second for the first ten instead of every five.
                "CSI_SNAPSHOT_EARLY_FREQUENT_POLLING=true",
                str(self.velero),
                "server",
                f"--kubeconfig={self.kubeconfig}",
                f"--namespace={NAMESPACE}",
                f"--plugin-dir={self.plugin_dir}",
                f"--features={FEATURES}",
                f"--metrics-address=127.0.0.1:{free_port()}",
                f"--profiler-address=127.0.0.1:{free_port()}",
                "--item-operation-sync-frequency=1s",
                "--store-validation-frequency=5s",
                "--log-level=debug",
            ],
            self.workdir / "velero-server.log",
        )
        self.server.start()

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()

    def log(self) -> str:
        return (self.workdir / "velero-server.log").read_text(errors="replace")


class VeleroObjects:
    """Velero's own objects (Backup, Restore, BackupStorageLocation) read through the API."""

    def __init__(self, api: k8s.ApiClient, stack: Velero) -> None:
        self.custom = k8s.CustomObjectsApi(api)
        self.stack = stack

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                VELERO_GROUP, VELERO_VERSION, NAMESPACE, plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def wait_phase(self, plural: str, name: str, final: set[str], timeout: float = 240) -> dict[str, Any]:
        """The object once its phase is one of ``final`` (or any phase Velero never leaves)."""
        ended = final | {"Failed", "FailedValidation", "PartiallyFailed"}

        def done() -> dict[str, Any] | None:
            assert self.stack.server is not None
            self.stack.server.check_alive()
            found = self.get(plural, name)
            return found if found and (found.get("status") or {}).get("phase") in ended else None

        return wait_for(f"{plural} {name} to finish", done, timeout=timeout, interval=1.0)

    def backup(self, name: str, namespace: str) -> dict[str, Any]:
        self.stack.cli(
            "backup", "create", name, f"--include-namespaces={namespace}", "--snapshot-volumes=true"
        )
        return self.wait_phase("backups", name, {"Completed"})

    def restore(self, name: str, backup: str, *extra: str) -> dict[str, Any]:
        self.stack.cli("restore", "create", name, f"--from-backup={backup}", *extra)
        return self.wait_phase("restores", name, {"Completed"})
