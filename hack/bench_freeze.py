"""How long a group stays frozen, and how much of that is ours rather than Azure's.

For groups of 2, 5 and 10 members (ext4 on loop devices, spread over two node stand-ins with
one real freeze agent each) and a cut that takes 0 or 200 ms (Azure's own time, the same for
every member, in parallel), prints the freeze window (first freeze sent to last thaw answered)
and the operator's share: the window minus the cut. Needs root and loop devices.

Usage: ``python hack/bench_freeze.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration" / "freeze"))

from freeze_support import AgentProcess, make_pki, node, pod_uid  # noqa: E402

from elasticsan_snapshotter.domain.freeze import FILESYSTEM_CONSISTENT, FreezePolicy, MemberMount  # noqa: E402
from elasticsan_snapshotter.freeze_window import FreezeCoordinator  # noqa: E402

SIZES = (2, 5, 10)
LATENCIES = (0.0, 0.2)


async def bench(rounds: int) -> None:
    pki = make_pki(Path(tempfile.mkdtemp(prefix="ess-bench-pki-")))
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
        clients = {s.name: a.client() for s, a in zip(stand_ins, agents, strict=True)}
        coordinator = FreezeCoordinator(clients)
        policy = FreezePolicy(FILESYSTEM_CONSISTENT, budget_seconds=30)
        print(
            f"{'members':>7} {'cut ms':>6} {'window ms (median)':>19} {'ours ms (median)':>17} {'ours ms (max)':>14}"
        )
        try:
            for size in SIZES:
                group = members[:size]
                for latency in LATENCIES:

                    async def cut(latency: float = latency, count: int = size) -> None:
                        await asyncio.gather(*(asyncio.sleep(latency) for _ in range(count)))

                    async def nothing() -> None:
                        return None

                    async def pods(group: list[MemberMount] = group) -> list[tuple[str, str, str]]:
                        return [(n, uid, m.pv_name) for m in group for n, uid in m.mounts]

                    windows = []
                    for r in range(rounds):
                        result = await coordinator.run(
                            f"bench-{size}-{int(latency * 1000)}-{r}",
                            policy,
                            group,
                            reserve=nothing,
                            cut=cut,
                            pods_after=pods,
                        )
                        assert result.outcome.level == FILESYSTEM_CONSISTENT, result.outcome.message
                        windows.append(result.frozen_seconds)
                    ours = [w - latency for w in windows]
                    print(
                        f"{size:>7} {latency * 1000:>6.0f} {statistics.median(windows) * 1000:>19.1f} "
                        f"{statistics.median(ours) * 1000:>17.1f} {max(ours) * 1000:>14.1f}"
                    )
        finally:
            for client in clients.values():
                await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    asyncio.run(bench(parser.parse_args().rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
