"""How long a group stays frozen, and how much of that is ours rather than Azure's.

For groups of 2, 5 and 10 members (ext4 on loop devices, spread over two node stand-ins with
one real freeze agent each), the cut creates every member's snapshot in parallel through the
Azure adapter against the emulator, with 0 or 200 ms of latency on every ARM request. Prints the
freeze window (first freeze sent to last thaw answered), the cut (Azure's own time, measured)
and the operator's share: the window minus the cut. Needs root and loop devices.

Usage: ``python hack/bench_freeze.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from elasticsan_snapshotter.azure.client import ElasticSanAzure  # noqa: E402
from elasticsan_snapshotter.azure.config import PacingConfig  # noqa: E402
from elasticsan_snapshotter.domain.freeze import FILESYSTEM_CONSISTENT, FreezePolicy, MemberMount  # noqa: E402
from elasticsan_snapshotter.domain.identity import ElasticSanId, VolumeGroupId  # noqa: E402
from elasticsan_snapshotter.emulator.process import EmulatorInfo, EmulatorProcess  # noqa: E402
from elasticsan_snapshotter.freeze.client import connect  # noqa: E402
from elasticsan_snapshotter.freeze_window import FreezeCoordinator  # noqa: E402
from freeze_support import AgentProcess, make_pki, node, pod_uid  # noqa: E402

SIZES = (2, 5, 10)
LATENCIES = (0, 200)
RG, SAN, VG = "rg-bench", "san-bench", "vg-bench"


def seed(path: Path) -> Path:
    volumes = [{"name": f"vol-{n}", "sizeGiB": 1} for n in range(max(SIZES))]
    san = {"resourceGroup": RG, "name": SAN, "location": "westeurope", "baseSizeTiB": 1,
           "extendedCapacitySizeTiB": 0, "volumeGroups": [{"name": VG, "volumes": volumes}]}  # fmt: skip
    path.write_text(json.dumps({"elasticSans": [san]}))
    return path


def azure(info: EmulatorInfo) -> ElasticSanAzure:
    # The measuring script's adapter, without client-side pacing: the group path reserves first.
    spec = importlib.util.spec_from_file_location("measure_arm_calls", ROOT / "hack" / "measure_arm_calls.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    pacing = PacingConfig(snapshots_per_volume=100000, write_rate_per_second=1000.0, write_burst=1000)
    adapter: ElasticSanAzure = module.adapter_for(info, pacing, polling_interval=0.05)
    return adapter


async def bench(rounds: int) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="ess-bench-"))
    pki = make_pki(scratch / "pki")
    print(f"{'members':>7} {'latency ms':>10} {'window ms':>10} {'cut ms':>8} {'ours ms':>8} {'ours max':>9}")
    print("(medians over the rounds; ours = window - cut)")
    with node("bench-a") as node_a, node("bench-b") as node_b:
        stand_ins = [node_a, node_b]
        members: list[MemberMount] = []
        for n in range(max(SIZES)):
            stand_in = stand_ins[n % 2]
            uid, pv = pod_uid(), f"pv-{n}"
            stand_in.mount_volume(uid, pv)
            members.append(MemberMount(f"vol-{n}", pv, ((stand_in.name, uid),)))
        agents = [AgentProcess(s, pki) for s in stand_ins]
        for agent in agents:
            await agent.start()
        clients = connect({s.name: a.address for s, a in zip(stand_ins, agents, strict=True)}, pki.operator)
        coordinator = FreezeCoordinator(clients)
        policy = FreezePolicy(FILESYSTEM_CONSISTENT, budget_seconds=30)
        try:
            for latency in LATENCIES:
                emulator = EmulatorProcess(
                    scratch / f"emulator-{latency}",
                    seed=seed(scratch / "seed.json"),
                    latency_ms=latency,
                    extra_args=(  # the group path reserves Azure's snapshot budget before it freezes
                        "--lro-retry-after",
                        "0",
                        "--snapshot-rate-limit",
                        "100000",
                        "--max-snapshots-per-volume",
                        "100000",
                    ),
                )
                emulator.start()
                port = azure(emulator.info)
                group_id = ElasticSanId(emulator.info.subscription_id, RG, SAN).volume_group(VG)
                try:
                    for size in SIZES:
                        await measure(coordinator, policy, members[:size], port, group_id, latency, rounds)
                finally:
                    await port.close()
                    emulator.stop()
        finally:
            for client in clients.values():
                await client.close()


async def measure(
    coordinator: FreezeCoordinator,
    policy: FreezePolicy,
    group: list[MemberMount],
    port: ElasticSanAzure,
    volume_group: VolumeGroupId,
    latency: int,
    rounds: int,
) -> None:
    windows, cuts = [], []
    for r in range(rounds):
        name = f"bench-{len(group)}-{latency}-{r}"

        async def cut(name: str = name) -> None:
            started = time.monotonic()
            await asyncio.gather(
                *(
                    port.create_snapshot(
                        volume_group.snapshot(f"{name}-{m.volume_handle}"),
                        volume_group.volume(m.volume_handle),
                    )
                    for m in group
                )
            )
            cuts.append(time.monotonic() - started)

        async def nothing() -> None:
            return None

        async def pods() -> list[tuple[str, str, str]]:
            return [(n, uid, m.pv_name) for m in group for n, uid in m.mounts]

        result = await coordinator.run(name, policy, group, reserve=nothing, cut=cut, pods_after=pods)
        assert result.outcome.level == FILESYSTEM_CONSISTENT, result.outcome.message
        windows.append(result.frozen_seconds)
    ours = [w - c for w, c in zip(windows, cuts, strict=True)]
    ms = 1000
    print(
        f"{len(group):>7} {latency:>10} {statistics.median(windows) * ms:>10.1f} {statistics.median(cuts) * ms:>8.1f} "
        f"{statistics.median(ours) * ms:>8.1f} {max(ours) * ms:>9.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    asyncio.run(bench(parser.parse_args().rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
