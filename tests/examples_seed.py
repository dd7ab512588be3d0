"""The Azure resources the manifests in examples/ name, as an emulator seed: both modes' example tests use it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "my-rg"
SAN = "my-elastic-san"
VOLUME_GROUP = "my-volume-group"
VOLUME = "my-volume"
SAN_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.ElasticSan/elasticSans/{SAN}"

EXAMPLE_SEED: dict[str, Any] = {
    "elasticSans": [
        {
            "resourceGroup": RESOURCE_GROUP,
            "name": SAN,
            "location": "westeurope",
            "baseSizeTiB": 1,
            "extendedCapacitySizeTiB": 0,
            "volumeGroups": [{"name": VOLUME_GROUP, "volumes": [{"name": VOLUME, "sizeGiB": 10}]}],
        }
    ]
}


def example(name: str) -> list[dict[str, Any]]:
    """The documents of ``examples/<name>``, as a user would apply them."""
    return [doc for doc in yaml.safe_load_all((EXAMPLES / name).read_text()) if doc]
