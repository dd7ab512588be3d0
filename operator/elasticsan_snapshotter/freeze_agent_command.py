"""``elasticsan-snapshotter freeze-agent``: the node agent that freezes file systems under leases."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from elasticsan_snapshotter.domain.freeze import MAX_TTL_SECONDS
from elasticsan_snapshotter.log_output import configure_logging

log = logging.getLogger(__name__)

DEFAULT_KUBELET_ROOT = "/var/lib/kubelet"
DEFAULT_STATE_DIR = "/var/lib/elasticsan-snapshotter/freeze-agent"
DEFAULT_LOCAL_SOCKET = "/run/elasticsan-snapshotter/freeze-agent.sock"
DEFAULT_TLS_DIR = "/etc/elasticsan-snapshotter/freeze-agent-tls"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "freeze-agent",
        help="freeze and thaw the file systems of mounted volumes on this node, under leases",
        description="Serve Freeze, GetLease and Thaw over mutual TLS to the operator. Every freeze is a "
        "lease, journaled before it is set and thawed by the agent at its TTL; on start the agent thaws "
        "whatever its journal lists. With --thaw-all it asks the running agent to thaw everything now "
        "(the pod's preStop hook).",
    )
    env = os.environ.get
    parser.add_argument(
        "--listen", default=env("ESS_FREEZE_LISTEN", ""), help="host:port for the mutual-TLS API"
    )
    parser.add_argument(
        "--node-name", default=env("NODE_NAME", ""), help="this node's name (default $NODE_NAME)"
    )
    parser.add_argument("--kubelet-root", default=DEFAULT_KUBELET_ROOT, help="the kubelet's root directory")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="where the lease journal lives")
    parser.add_argument("--host-root", default="/", help="the host's root file system as the agent sees it")
    parser.add_argument("--local-socket", default=DEFAULT_LOCAL_SOCKET, help="unix socket for --thaw-all")
    parser.add_argument(
        "--tls-dir", default=DEFAULT_TLS_DIR, help="directory with tls.crt, tls.key and ca.crt"
    )
    parser.add_argument("--client-name", default=None, help="the one client certificate name accepted")
    parser.add_argument(
        "--max-ttl",
        type=float,
        default=MAX_TTL_SECONDS,
        help=f"hard cap on a lease's TTL in seconds ({MAX_TTL_SECONDS:g})",
    )
    parser.add_argument(
        "--keep-results", type=float, default=3600.0, help="seconds ended leases stay readable"
    )
    parser.add_argument("--metrics-port", type=int, default=0, help="serve /metrics on this port (0: off)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--thaw-all", action="store_true", help="ask the running agent to thaw every lease, then exit"
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    configure_logging(args.log_format)
    # Imported here so that `--help` never loads gRPC or the generated stubs.
    from elasticsan_snapshotter.freeze.agent import AgentConfig, thaw_all_through
    from elasticsan_snapshotter.freeze.tls import CLIENT_NAME, TlsFiles

    if args.thaw_all:
        thawed = asyncio.run(thaw_all_through(Path(args.local_socket)))
        print(f"thawed {len(thawed)} lease(s): {' '.join(thawed)}".rstrip(), file=sys.stderr)
        return 0
    if not args.listen or not args.node_name:
        print("error: --listen and --node-name (or $NODE_NAME) are required", file=sys.stderr)
        return 2
    if not 0 < args.max_ttl <= 3600:
        print("error: --max-ttl must be more than 0 and at most 3600 seconds", file=sys.stderr)
        return 2
    config = AgentConfig(
        listen=args.listen,
        node_name=args.node_name,
        kubelet_root=Path(args.kubelet_root),
        state_dir=Path(args.state_dir),
        local_socket=Path(args.local_socket),
        tls=TlsFiles.in_directory(Path(args.tls_dir)),
        client_name=args.client_name or CLIENT_NAME,
        host_root=Path(args.host_root),
        max_ttl=args.max_ttl,
        keep_results=args.keep_results,
    )
    if args.metrics_port:
        from prometheus_client import start_http_server

        from elasticsan_snapshotter import metrics

        start_http_server(args.metrics_port, registry=metrics.REGISTRY)
    asyncio.run(_serve(config))
    return 0


async def _serve(config: Any) -> None:
    from elasticsan_snapshotter.freeze.agent import run

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):  # both thaw every lease before the exit
        loop.add_signal_handler(signum, stop.set)
    await run(config, stop)


__all__ = ["register"]
