"""``elasticsan-snapshotter csi-controller --endpoint unix:///csi/csi.sock``: serve CSI over gRPC."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from elasticsan_snapshotter import wiring
from elasticsan_snapshotter.log_output import configure_logging
from elasticsan_snapshotter.settings import Settings, SettingsError

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "unix:///csi/csi.sock"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "csi-controller",
        help="serve the CSI Identity and Controller services on a unix socket",
        description="Serve the CSI Identity and Controller services (snapshots and volumes of Azure "
        "Elastic SAN) for the upstream csi-snapshotter and csi-provisioner sidecars. Never run it "
        "for the same driver name as the operator's snapshotter.",
    )
    parser.add_argument(
        "--endpoint",
        default=DEFAULT_ENDPOINT,
        help=f"unix:///path of the socket (default {DEFAULT_ENDPOINT})",
    )
    Settings.add_arguments(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        settings = Settings.load(args)
        managed = wiring.managed_sans(settings)
        wiring.azure_config(settings)  # fail on bad Azure settings before binding the socket
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format)
    log.info("starting csi-controller", extra={"settings": settings.redacted()})
    if settings.metrics_port:
        from prometheus_client import start_http_server

        from elasticsan_snapshotter import metrics

        start_http_server(settings.metrics_port, registry=metrics.REGISTRY)
    asyncio.run(_run(settings, args.endpoint, managed))
    return 0


async def _run(settings: Settings, endpoint: str, managed: list[Any]) -> None:
    # Imported here so that `--help` never loads gRPC or the generated stubs.
    from elasticsan_snapshotter.csi.server import build_server, serve, stop_on_signals

    stop = asyncio.Event()
    stop_on_signals(stop)
    azure = wiring.open_azure(settings)
    try:
        server = build_server(
            azure,
            driver_name=settings.driver_name,
            subscription_id=settings.subscription_id,
            managed_sans=managed,
        )
        await serve(server, endpoint, stop)
    finally:
        await azure.close()


__all__ = ["register"]
