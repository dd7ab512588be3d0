"""The ``elasticsan-snapshotter`` command.

Each subcommand lives in the module that implements it; that module exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning an exit status. Modules are imported
lazily so that ``--help`` stays fast and one subcommand's dependencies never
slow another down.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence

from elasticsan_snapshotter import __version__

# Modules that register a subcommand, in the order --help lists them.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "elasticsan_snapshotter.operator_command",
    "elasticsan_snapshotter.emulator.cli",
    "elasticsan_snapshotter.csi_command",
    "elasticsan_snapshotter.freeze_agent_command",
    "elasticsan_snapshotter.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elasticsan-snapshotter",
        description="Snapshots, restores and exports for Azure Elastic SAN volumes on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            continue  # not shipped: the demo lives only in a checkout
        module = importlib.import_module(name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return func(args)
