"""Mutual TLS for the freeze agent: it serves with its certificate and accepts one client name only.

The CA given to the agent signs the operator's client certificate; a certificate from any
other CA fails the handshake, and one from that CA under another name is refused per call.
The agent re-reads its files when they change (the chart rotates them), so a rotation needs
no restart; the operator reads its own files each time it opens a channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

SERVER_NAME = "elasticsan-snapshotter-freeze-agent"
"""The name in the agent's serving certificate; the operator checks it whatever address it dials."""
CLIENT_NAME = "elasticsan-snapshotter-operator"
"""The common name (or DNS name) of the one client certificate the agent accepts."""


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path
    """The CA that signs the other side's certificate."""

    @classmethod
    def in_directory(cls, directory: Path) -> TlsFiles:
        """The layout of a ``kubernetes.io/tls`` Secret with ``ca.crt``, as the chart mounts it."""
        return cls(directory / "tls.crt", directory / "tls.key", directory / "ca.crt")

    def read(self) -> tuple[bytes, bytes, bytes]:
        return self.cert.read_bytes(), self.key.read_bytes(), self.ca.read_bytes()

    def stamp(self) -> tuple[float, ...]:
        return tuple(p.stat().st_mtime_ns for p in (self.cert, self.key, self.ca))


def server_credentials(files: TlsFiles) -> Any:
    """Credentials that demand a client certificate from ``files.ca`` and reload on change."""
    seen = [files.stamp()]
    initial = config_from(files)

    def fetch() -> Any:
        try:
            stamp = files.stamp()
            if stamp == seen[0]:
                return None  # unchanged: keep the current configuration
            fresh = config_from(files)
        except (OSError, ValueError):
            return None  # half-written during a rotation: keep the current one
        seen[0] = stamp
        return fresh

    return grpc.dynamic_ssl_server_credentials(initial, fetch, require_client_authentication=True)


def config_from(files: TlsFiles) -> Any:
    cert, key, ca = files.read()
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)


def channel_credentials(files: TlsFiles) -> Any:
    cert, key, ca = files.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def peer_names(auth_context: dict[str, list[bytes]]) -> set[str]:
    names = auth_context.get("x509_common_name", []) + auth_context.get("x509_subject_alternative_name", [])
    return {n.decode() for n in names}


__all__ = [
    "CLIENT_NAME",
    "SERVER_NAME",
    "TlsFiles",
    "channel_credentials",
    "peer_names",
    "server_credentials",
]
