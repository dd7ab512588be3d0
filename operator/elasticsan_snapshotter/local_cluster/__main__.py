"""Bring up the local control plane for a person to use: ``python -m elasticsan_snapshotter.local_cluster``.

It prints the kubeconfig path and how to use it, then serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from elasticsan_snapshotter.local_cluster import ArtifactsError, ClusterError, LocalCluster, discover


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m elasticsan_snapshotter.local_cluster", description=__doc__
    )
    parser.add_argument(
        "--workdir", type=Path, help="directory for certificates, data and logs (default: a temp dir)"
    )
    parser.add_argument("--port", type=int, default=0, help="kube-apiserver port (default: a free one)")
    parser.add_argument(
        "--no-snapshot-controller", action="store_true", help="do not run snapshot-controller"
    )
    args = parser.parse_args(argv)
    try:
        artifacts = discover()
        cluster = LocalCluster(
            artifacts,
            args.workdir,
            apiserver_port=args.port,
            snapshot_controller=not args.no_snapshot_controller,
            keep_workdir=args.workdir is not None,
        )
        cluster.start()
    except (ArtifactsError, ClusterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    kubectl = artifacts.binaries.get("kubectl", Path("kubectl"))
    print(
        f"Local control plane is up at {cluster.server} (Kubernetes {artifacts.versions['KUBERNETES_VERSION']})."
    )
    print(f"  export KUBECONFIG={cluster.kubeconfig}")
    print(f"  {kubectl} get volumesnapshotclasses,volumesnapshots,pv,pvc -A")
    print(f"Logs: {cluster.workdir}/*.log   Press Ctrl-C to stop.", flush=True)
    try:
        while not stop.wait(1.0):
            cluster.check_alive()
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
