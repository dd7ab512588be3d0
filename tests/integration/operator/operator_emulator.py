"""The emulator the operator tests share: seeded with the Elastic SAN and volume group they use."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from operator_scenario import FAST, RESOURCE_GROUP, SAN, VOLUME_GROUP

from elasticsan_snapshotter.emulator.process import EmulatorProcess


def seeded_emulator(state: Path, *, extra_args: Sequence[str] = ()) -> EmulatorProcess:
    """An emulator (started) whose state lives in ``state``, seeded with the SAN and group the tests use."""
    state.mkdir(parents=True, exist_ok=True)
    seed = state / "seed.json"
    seed.write_text(
        json.dumps(
            {
                "elasticSans": [
                    {
                        "resourceGroup": RESOURCE_GROUP,
                        "name": SAN,
                        "location": "westeurope",
                        "baseSizeTiB": 4,
                        "extendedCapacitySizeTiB": 0,
                        "volumeGroups": [{"name": VOLUME_GROUP, "volumes": []}],
                    }
                ]
            }
        )
    )
    process = EmulatorProcess(state / "state", seed=seed, extra_args=(*FAST, *extra_args))
    process.start()
    return process
