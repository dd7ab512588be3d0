"""``elasticsan-snapshotter operator``: run the Kopf operator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import sys
from typing import Any

from elasticsan_snapshotter import DRIVER_NAME, metrics
from elasticsan_snapshotter.settings import Settings, SettingsError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "operator",
        help="run the operator (snapshotter, restore provisioner, exporter)",
        description="Reconcile VolumeSnapshotContents, restore claims and exports for Elastic SAN volumes.",
    )
    Settings.add_arguments(parser)
    parser.add_argument("--verbose", action="store_true", help="log debug messages")
    parser.set_defaults(func=run)


def quiet_per_event_logs(*, verbose: bool) -> None:
    """Keep per-event and per-request lines out of INFO; ``--verbose`` shows Kopf's again.

    Kopf logs "Handler ... succeeded." for every watch event (many per snapshot, thousands
    at start-up), and azure-core every HTTP exchange with its headers. Failures stay visible:
    both log those at WARNING or above.
    """
    logging.getLogger("kopf.objects").setLevel(logging.NOTSET if verbose else logging.WARNING)
    logging.getLogger("azure").setLevel(logging.WARNING)


def run(args: argparse.Namespace) -> int:
    import kopf
    from prometheus_client import start_http_server

    from elasticsan_snapshotter.kubernetes.handlers import Runtime, register
    from elasticsan_snapshotter.kubernetes.leader import LeaderElector
    from elasticsan_snapshotter.wiring import (
        azure_config,
        elects_leader,
        leader_elector,
        managed_sans,
        operator_runtime,
    )

    try:
        settings = Settings.load(args)
        azure_config(settings)
        managed_sans(settings)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kopf.configure(
        verbose=bool(args.verbose),
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
    )
    quiet_per_event_logs(verbose=bool(args.verbose))
    registry = kopf.OperatorRegistry()
    box: list[Runtime] = []
    electors: list[LeaderElector] = []
    tasks: list[asyncio.Task[None]] = []
    register(registry, box)

    @kopf.on.startup(registry=registry)
    async def startup(
        settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
    ) -> None:
        ours = Settings.load(args)
        # Our own names for Kopf's bookkeeping, should any handler ever need it.
        settings.persistence.finalizer = f"{DRIVER_NAME}/kopf-finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=DRIVER_NAME)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=DRIVER_NAME, key="last-handled-configuration"
        )
        # Events come from the reconcilers, once per change; Kopf only reports its own failures.
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        runtime = await operator_runtime(ours)
        box.append(runtime)
        runtime.watch()
        tasks.append(asyncio.create_task(runtime.check_azure(), name="azure-check"))
        if elects_leader(ours):
            elector = leader_elector(ours, runtime.api)
            electors.append(elector)

            async def lead() -> None:
                runtime.start()

            def lost() -> None:
                # Another replica may take over soon: stop at once, mid-operation or not.
                logging.getLogger(__name__).critical("lost the Lease; exiting")
                os._exit(1)

            tasks.append(asyncio.create_task(elector.run(lead, lost), name="leader-election"))
        else:
            runtime.start()
        if ours.metrics_port:
            start_http_server(ours.metrics_port, registry=metrics.REGISTRY)
        logger.info("operator settings: %s", ours.redacted())

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        for task in tasks:
            task.cancel()
        for elector in electors:
            await elector.release()
        if box:
            await box[0].close()

    namespaces = list(settings.namespaces)
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        kopf.run(
            registry=registry,
            # With the Lease, every replica watches and only the leader reconciles: no Kopf peering.
            standalone=settings.standalone or elects_leader(settings),
            # Naming a peering makes it mandatory in Kopf, even when standalone: name it only when used.
            peering_name=None if settings.standalone or elects_leader(settings) else settings.peering_name,
            # Peers of equal priority all pause; a random priority per process makes one active.
            priority=settings.peering_priority or secrets.randbelow(2**31 - 1) + 1,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz"
            if settings.health_port
            else None,
        )
    return 0
