"""``elasticsan-snapshotter emulator``: serve the Azure emulator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "emulator",
        help="serve the local Azure emulator (Elastic SAN, Compute snapshots, tokens)",
        description="Serve a local HTTPS emulator of the Azure Resource Manager endpoints the "
        "project uses. Prints one JSON line with the connection details when ready.",
    )
    parser.add_argument(
        "--listen", type=_listen, default=("127.0.0.1", 0), help="HOST:PORT (port 0: any free port)"
    )
    parser.add_argument("--state-dir", type=Path, required=True, help="directory for state and certificates")
    parser.add_argument("--seed", type=Path, help="JSON file of resources to pre-create")
    parser.add_argument("--latency-ms", type=int, default=0, help="extra latency for every ARM request")
    parser.add_argument("--faults", default="", help="fault spec string or JSON file (see docs/emulator.md)")
    parser.add_argument("--fault-seed", type=int, default=0, help="seed for fault probabilities")
    parser.add_argument("--subscription-id")
    parser.add_argument("--tenant-id")
    parser.add_argument("--client-id")
    parser.add_argument("--client-secret")
    parser.add_argument("--reader-client-id", help="a principal allowed to read only")
    parser.add_argument("--reader-client-secret")
    parser.add_argument(
        "--federated-token", help="expected workload-identity assertion (default: any non-empty one)"
    )
    parser.add_argument("--federated-token-file", type=Path, help="read the expected assertion from a file")
    parser.add_argument("--token-lifetime", type=int, default=3600, help="seconds an access token is valid")
    parser.add_argument("--lro-seconds", type=float, default=0.0, help="duration of long-running operations")
    parser.add_argument("--lro-retry-after", type=int, default=1, help="Retry-After sent while polling")
    parser.add_argument("--throttle-retry-after", type=int, default=1, help="Retry-After of injected 429/503")
    parser.add_argument("--export-seconds", type=float, default=5.0, help="time for an export to reach 100%%")
    parser.add_argument("--page-size", type=int, default=100, help="items per list page")
    parser.add_argument(
        "--snapshot-rate-limit", type=int, default=7, help="new snapshots per volume per window"
    )
    parser.add_argument("--snapshot-rate-window", type=float, default=300.0, help="window in seconds")
    parser.add_argument("--max-snapshots-per-volume", type=int, default=200)
    parser.add_argument(
        "--sans-per-region", type=int, default=5, help="Elastic SANs per subscription and region"
    )
    parser.add_argument(
        "--volume-delete-with-snapshots",
        choices=("refuse", "delete"),
        default="refuse",
        help="refuse: needs x-ms-delete-snapshots: true (default); delete: snapshots always go too",
    )
    parser.add_argument(
        "--access-log", type=Path, help="write one JSON line per request (times, user agent, peer) here"
    )
    parser.add_argument("--log-level", default="WARNING")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so that other subcommands never pay for aiohttp and cryptography.
    from elasticsan_snapshotter.emulator.config import EmulatorConfig
    from elasticsan_snapshotter.emulator.server import serve

    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    federated = args.federated_token
    if args.federated_token_file is not None:
        federated = args.federated_token_file.read_text(encoding="utf-8")
    host, port = args.listen
    config = EmulatorConfig(
        state_dir=args.state_dir,
        host=host,
        port=port,
        seed_file=args.seed,
        latency_ms=args.latency_ms,
        faults=args.faults,
        fault_seed=args.fault_seed,
        subscription_id=args.subscription_id,
        tenant_id=args.tenant_id,
        client_id=args.client_id,
        client_secret=args.client_secret,
        reader_client_id=args.reader_client_id,
        reader_client_secret=args.reader_client_secret,
        federated_token=federated,
        token_lifetime=args.token_lifetime,
        lro_seconds=args.lro_seconds,
        lro_retry_after=args.lro_retry_after,
        throttle_retry_after=args.throttle_retry_after,
        export_seconds=args.export_seconds,
        page_size=args.page_size,
        snapshot_rate_limit=args.snapshot_rate_limit,
        snapshot_rate_window=args.snapshot_rate_window,
        max_snapshots_per_volume=args.max_snapshots_per_volume,
        sans_per_region=args.sans_per_region,
        volume_delete_with_snapshots=args.volume_delete_with_snapshots,
        access_log=args.access_log,
    )

    def ready(info: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()

    try:
        asyncio.run(serve(config, ready))
    except (ValueError, OSError) as error:
        # Bad fault specs, seed files or state, or a port in use: a message, not a traceback.
        sys.stderr.write(f"elasticsan-snapshotter emulator: {error}\n")
        return 2
    return 0
