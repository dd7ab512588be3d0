#!/usr/bin/env python3
"""Side-by-side benchmark: the operator against csi-snapshotter + our CSI controller.

One local control plane (kube-apiserver with its audit log on, etcd, kube-controller-manager,
snapshot-controller at 1000 QPS) and one emulator (LRO 0 unless a scenario says otherwise,
no throttling unless injected) serve both arms. For every trial and scenario each arm is
started fresh with a driver name of its own, the arms alternate (operator, sidecar, operator,
...), and the figures come from the audit log (driver reads and writes), the emulator's access
log (Azure requests), /proc (CPU and memory) and a watch on the VolumeSnapshots (ready times).

    .venv/bin/python hack/bench.py            # the full profile: prints a table, exits 1 on a missed target
    .venv/bin/python hack/bench.py --quick    # a smoke run of a few minutes; targets are not enforced
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import bench_cluster as bc
import bench_figures as bf
import bench_targets
from elasticsan_snapshotter.domain.identity import VolumeId
from elasticsan_snapshotter.emulator.process import EmulatorProcess
from elasticsan_snapshotter.local_cluster import Artifacts, LocalCluster, discover

NAMESPACE = "bench"
RESOURCE_GROUP, SAN = "rg-bench", "san-bench"
STARTUP_DRIVER = "startup.bench.elasticsan.snapshotter.dev"
SETTLE_SECONDS = 3.0
"""Least pause after an arm starts, so that its watches are established before a scenario begins."""
IDLE_CPU = 0.1
"""An arm counts as settled once it uses less than this share of a core for two seconds in a row."""
SETTLE_LIMIT = 300.0
SCENARIOS = ("singles", "burst", "big_burst", "lro", "throttled", "startup")


@dataclass(frozen=True)
class Profile:
    name: str
    trials: int
    singles: int
    burst: int
    big_burst: int
    lro_seconds: float
    lro_snapshots: int
    throttled_burst: int
    startup_objects: int
    volumes: int


FULL = Profile("full", 3, 20, 100, 1000, 10.0, 5, 100, 10_000, 200)
QUICK = Profile("quick", 1, 3, 20, 50, 2.0, 3, 20, 300, 20)


@dataclass
class Run:
    """One scenario of one trial for one arm: what was asked and what was seen."""

    scenario: str
    arm: str
    trial: int
    n: int
    completed: int
    makespan_s: float
    ready_s: list[float]
    driver: dict[str, Any]
    azure: dict[str, Any]
    stages: dict[str, list[float]]
    cpu_s: dict[str, float]
    memory_mib: dict[str, dict[str, float]]
    extra: dict[str, float]


class Bench:
    def __init__(
        self,
        profile: Profile,
        workdir: Path,
        artifacts: Artifacts,
        python: str,
        only: list[str] | None = None,
    ) -> None:
        self.profile = profile
        self.only = only
        self.python = python
        self.workdir = workdir
        self.artifacts = artifacts
        self.runs: list[Run] = []
        self.ready: dict[str, float] = {}
        self.uids: dict[str, str] = {}
        self._claim_cursor = 0

    # -- set-up ----------------------------------------------------------------------

    async def setup(self) -> None:
        p = self.profile
        seed = self.workdir / "seed.json"
        seed.write_text(json.dumps(bc.seed_document(RESOURCE_GROUP, SAN, p.volumes)))
        self.access_log = self.workdir / "emulator-access.jsonl"
        self.emulator = EmulatorProcess(
            self.workdir / "emulator",
            seed=seed,
            extra_args=[
                "--access-log", str(self.access_log),
                "--snapshot-rate-limit", "1000000",
                "--max-snapshots-per-volume", "1000",
                "--lro-retry-after", "1",
                "--throttle-retry-after", "1",
            ],
            startup_timeout=300,
        )  # fmt: skip
        self.emulator.start()
        info = self.emulator.info
        self.san_id = (
            f"/subscriptions/{info.subscription_id}/resourceGroups/{RESOURCE_GROUP}"
            f"/providers/Microsoft.ElasticSan/elasticSans/{SAN}"
        )
        args, self.audit_path = bc.audit_args(self.workdir)
        self.cluster = LocalCluster(
            self.artifacts,
            self.workdir / "cluster",
            snapshot_controller_args=bc.SNAPSHOT_CONTROLLER_FLAGS,
            apiserver_args=args,
            keep_workdir=True,
        )
        self.cluster.start(timeout=300)
        self.api = bc.Api(self.cluster, concurrency=32)
        self.watch = asyncio.create_task(self.api.watch_ready(NAMESPACE, self.ready, self.uids))
        await self.api.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        handles = [self._handle(i) for i in range(p.volumes)]
        await self.api.all(
            [("POST", "/api/v1/persistentvolumes", bc.static_pv(f"bench-pv-{i:04d}", h)) for i, h in enumerate(handles)]
            + [
                ("POST", f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims", bc.claim(f"data-{i:04d}", NAMESPACE, f"bench-pv-{i:04d}"))
                for i in range(p.volumes)
            ]
        )  # fmt: skip
        await self._wait_claims_bound()
        await self.api.request(
            "POST", f"{bc.SNAPSHOTS}/volumesnapshotclasses", bc.snapshot_class(STARTUP_DRIVER)
        )
        await self._startup_objects()
        self.audit = bf.TailReader(self.audit_path)
        self.access = bf.TailReader(self.access_log)
        self.arms: dict[str, bc.Arm] = {
            "operator": bc.OperatorArm(info, self.cluster, self.san_id, self.workdir, self.python),
            "sidecar": bc.SidecarArm(
                info, self.cluster, self.artifacts, self.san_id, self.workdir, self.python
            ),
        }
        comp = {c.name: c.proc.pid if c.proc else None for c in self.cluster.components}
        self.platform_pids = {
            "emulator": self.emulator.pid,
            "kube-apiserver": comp.get("kube-apiserver"),
            "etcd": comp.get("etcd"),
            "snapshot-controller": comp.get("snapshot-controller"),
        }
        # snapshot-controller patches each start-up content and kube-controller-manager updates
        # each PV's status for minutes after they are made: the first runs must not share that.
        self.setup_settle_s = await self._quiet(
            {"snapshot-controller": comp.get("snapshot-controller"), "kube-controller-manager": comp.get("kube-controller-manager")}
        )  # fmt: skip

    def _handle(self, i: int) -> str:
        info = self.emulator.info
        arm_id = f"{self.san_id}/volumegroups/vg1/volumes/vol-{i:04d}"
        return VolumeId.parse(arm_id, info.subscription_id).handle(info.subscription_id)

    async def _wait_claims_bound(self) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            claims = await self.api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims")
            phases = [(c.get("status") or {}).get("phase") for c in claims.get("items", [])]
            if len(phases) == self.profile.volumes and all(phase == "Bound" for phase in phases):
                return
            await asyncio.sleep(1)
        raise RuntimeError("the bench claims did not bind")

    async def _startup_objects(self) -> None:
        """Existing PVs and ready contents of the start-up driver, as a long-running cluster has."""
        count = self.profile.startup_objects
        handle = self._handle(0)
        for start in range(0, count, 500):
            batch = range(start, min(start + 500, count))
            await self.api.all(
                [("POST", "/api/v1/persistentvolumes", bc.static_pv(f"idle-pv-{i:05d}", f"{handle}-idle{i}")) for i in batch]
                + [
                    ("POST", f"{bc.SNAPSHOTS}/volumesnapshotcontents", bc.ready_content(f"idle-{i:05d}", STARTUP_DRIVER, handle, NAMESPACE, str(uuid.uuid4())))
                    for i in batch
                ]
            )  # fmt: skip
            status = {
                "status": {
                    "readyToUse": True,
                    "snapshotHandle": f"{handle.rsplit('#', 1)[0]}#idle-snapshot",
                    "creationTime": time.time_ns(),
                    "restoreSize": 1024**3,
                }
            }
            await self.api.all(
                [
                    ("PATCH", f"{bc.SNAPSHOTS}/volumesnapshotcontents/idle-{i:05d}/status", status)
                    for i in batch
                ]
            )

    # -- scenarios ---------------------------------------------------------------------

    def _claims(self, n: int) -> list[str]:
        names = [f"data-{(self._claim_cursor + i) % self.profile.volumes:04d}" for i in range(n)]
        self._claim_cursor += n
        return names

    async def _create(self, prefix: str, n: int, class_name: str) -> dict[str, float]:
        created: dict[str, float] = {}

        async def one(name: str, claim_name: str) -> None:
            created[name] = time.time()
            await self.api.request(
                "POST",
                f"{bc.SNAPSHOTS}/namespaces/{NAMESPACE}/volumesnapshots",
                bc.volume_snapshot(name, claim_name, class_name),
            )

        claims = self._claims(n)
        await asyncio.gather(*(one(f"{prefix}-{i:04d}", claims[i]) for i in range(n)))
        return created

    async def _wait_ready(self, names: list[str], within: float) -> None:
        deadline = time.monotonic() + within
        # The watch task fills self.ready; a 50 ms look is finer than any figure reported.
        while time.monotonic() < deadline and not all(n in self.ready for n in names):  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def _settle(self, arm: bc.Arm) -> float:
        """Wait until the freshly started arm is done with its start-up (the initial lists)."""
        await asyncio.sleep(SETTLE_SECONDS)
        return SETTLE_SECONDS + await self._quiet(arm.pids())

    async def _quiet(self, pids: dict[str, int | None], limit: float = SETTLE_LIMIT) -> float:
        """Seconds until these processes together use under IDLE_CPU of a core for two seconds."""
        began = time.monotonic()
        quiet = 0
        while quiet < 2 and time.monotonic() - began < limit:
            meter = bf.CpuMeter(pids)
            meter.start()
            await asyncio.sleep(1.0)
            quiet = quiet + 1 if sum(meter.stop().values()) < IDLE_CPU else 0
        return time.monotonic() - began

    async def scenario(self, key: str, arm: bc.Arm, trial: int) -> Run:
        p = self.profile
        # Names end up in DNS-style fields (class names, CSI driver names): no underscores.
        slug = key.replace("_", "-")
        driver = f"{slug}-{arm.name}-{trial}.{uuid.uuid4().hex[:6]}.bench.dev"
        if key == "startup":
            driver = STARTUP_DRIVER
        else:
            await self.api.request("POST", f"{bc.SNAPSHOTS}/volumesnapshotclasses", bc.snapshot_class(driver))
        n = {
            "singles": p.singles,
            "burst": p.burst,
            "big_burst": p.big_burst,
            "lro": p.lro_snapshots,
            "throttled": p.throttled_burst,
            "startup": 1,
        }[key]
        # Blocking calls run in threads, so that the watch keeps stamping ready times as they come.
        admin = self.emulator.admin
        if key == "lro":
            await asyncio.to_thread(admin.update_settings, lroSeconds=p.lro_seconds)
        if key == "throttled":
            # The same seed for both arms of a trial: the same PUTs (by order) meet a 429.
            await asyncio.to_thread(admin.set_faults, "put:volumeSnapshots:429:0.2", seed=trial)
        spawned = time.time()
        await asyncio.to_thread(arm.start, driver)
        # The machine may be shared: the 1-minute load average says how much CPU the run had.
        extra: dict[str, float] = {"load_at_start": _load()}
        try:
            if key != "startup":
                extra["settle_s"] = await self._settle(arm)
            meter = bf.CpuMeter({**arm.pids(), **self.platform_pids})
            meter.start()
            started = time.time()
            prefix = f"{slug[:5]}-{arm.name[:4]}-{trial}-{uuid.uuid4().hex[:4]}"
            timeout = 120 + n * 1.0
            if key == "singles":
                created: dict[str, float] = {}
                for i in range(n):
                    created |= await self._create(f"{prefix}-{i}", 1, driver)
                    await self._wait_ready(list(created)[-1:], timeout)
            else:
                created = await self._create(prefix, n, driver)
                await self._wait_ready(list(created), timeout)
            if key == "startup":
                extra["first_snapshot_after_start_s"] = max(
                    self.ready.get(next(iter(created)), 0) - spawned, 0
                )
                await asyncio.sleep(5)  # settled: the steady memory figure
            ended = time.time()
            extra["load_at_end"] = _load()
            cpu = meter.stop()
            memory = {name: bf.memory_mib(pid) for name, pid in arm.pids().items()}
        finally:
            await asyncio.to_thread(arm.stop)
            if key == "lro":
                await asyncio.to_thread(admin.update_settings, lroSeconds=0)
            if key == "throttled":
                await asyncio.to_thread(admin.clear_faults)
        done = {name: self.ready[name] - t for name, t in created.items() if name in self.ready}
        last = max((self.ready[name] for name in created if name in self.ready), default=ended)
        await asyncio.sleep(1.5)  # let the audit log and the access log catch up
        await asyncio.to_thread(admin.counters)  # the emulator flushes its access log on admin calls
        events = bf.audit_events(self.audit.read())
        window_end = last + 1.0
        contents = {f"snapcontent-{self.uids[name]}": created[name] for name in created if name in self.uids}
        return Run(
            scenario=key,
            arm=arm.name,
            trial=trial,
            n=n,
            completed=len(done),
            makespan_s=last - started,
            ready_s=sorted(done.values()),
            driver=bf.driver_calls(events, arm.name, started, window_end),
            azure=bf.azure_calls(self.access.read(), started, window_end),
            stages=bf.content_stages(events, arm.name, contents),
            cpu_s=cpu,
            memory_mib=memory,
            extra=extra,
        )

    async def run(self) -> None:
        p = self.profile
        order = [key for key in SCENARIOS if not self.only or key in self.only]
        for trial in range(1, p.trials + 1):
            for key in order:
                arms = ["operator", "sidecar"] if trial % 2 else ["sidecar", "operator"]
                for arm_name in arms:
                    run = await self.scenario(key, self.arms[arm_name], trial)
                    self.runs.append(run)
                    print(
                        f"trial {trial} {key:>9} {arm_name:>8}: {run.completed}/{run.n} ready, "
                        f"makespan {run.makespan_s:.2f}s, driver writes {run.driver['writes']} "
                        f"reads {run.driver['reads']}, azure {run.azure['requests']} requests, "
                        f"settled in {run.extra.get('settle_s', 0):.1f}s, load {run.extra['load_at_start']:.1f}"
                        f"-{run.extra.get('load_at_end', 0):.1f}",
                        flush=True,
                    )

    async def close(self) -> None:
        for arm in getattr(self, "arms", {}).values():
            arm.stop()
        if hasattr(self, "watch"):
            self.watch.cancel()
        if hasattr(self, "api"):
            await self.api.close()
        if hasattr(self, "cluster"):
            self.cluster.stop()
        if hasattr(self, "emulator"):
            self.emulator.stop()


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def machine() -> dict[str, Any]:
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    mem = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
    import os

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem.split(":", 1)[1].strip(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="the smoke profile; targets are reported, not enforced"
    )
    parser.add_argument("--trials", type=int, help="override the profile's trial count")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=N",
        help="override a profile field, e.g. big_burst=200",
    )
    parser.add_argument(
        "--json", type=Path, default=Path("bench-results.json"), help="where to write the figures"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS,
        help="run only this scenario (repeatable); rows of the others stay empty, for profiling",
    )
    parser.add_argument("--workdir", type=Path, help="keep logs here (default: a temporary directory)")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter of both arms' Python processes: a virtual environment with the runtime "
        "dependencies only, as the image has (make bench builds .venv-runtime)",
    )
    args = parser.parse_args()
    profile = QUICK if args.quick else FULL
    overrides: dict[str, Any] = {"trials": args.trials} if args.trials else {}
    for item in args.set:
        name, _, value = item.partition("=")
        overrides[name] = type(getattr(profile, name))(value)
    if overrides:
        profile = Profile(**{**asdict(profile), **overrides})
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ess-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    artifacts = discover()
    info = machine()
    started = time.time()
    bench = Bench(profile, workdir, artifacts, args.python, args.only)

    async def go() -> None:
        try:
            await bench.setup()
            await bench.run()
        finally:
            await bench.close()

    # SIGTERM ends the run like Ctrl-C: every process it started is stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    asyncio.run(go())
    info["load_average_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    rows = bench_targets.rows(profile, bench.runs)
    flags = {
        "emulator": "LRO 0 s (lro scenario: PATCHed), Retry-After 1, no throttling (throttled scenario: 20% 429 on snapshot PUTs)",
        "snapshot-controller": " ".join(bc.SNAPSHOT_CONTROLLER_FLAGS),
        "csi-snapshotter": " ".join(bc.SIDECAR_FLAGS),
        "both arms": " ".join(f"{k}={v}" for k, v in bc.AZURE_SETTINGS.items()) + ", ESS_CA_BUNDLE set",
        "kube-apiserver": "audit log: Metadata level, blocking, leases excluded",
        "python of both arms": args.python,
    }
    print()
    print(f"profile {profile.name}: {profile.trials} trial(s), arms alternated; medians over trials")
    print(f"N: singles {profile.singles}, bursts {profile.burst} and {profile.big_burst}, LRO {profile.lro_seconds:g} s x {profile.lro_snapshots}, "
          f"throttled burst {profile.throttled_burst}, start-up with {profile.startup_objects} contents and PVs")  # fmt: skip
    print(
        f"machine: {info['cores']} cores ({info['cpu']}), {info['memory']}, load at start {' '.join(info['load_average_at_start'])}, at the end {' '.join(info['load_average_at_end'])}"
    )
    for name, value in flags.items():
        print(f"flags, {name}: {value}")
    print()
    print(bf.table(rows))
    missed = [row.measure for row in rows if row.met is False]
    incomplete = [f"{r.scenario}/{r.arm}/{r.trial}" for r in bench.runs if r.completed < r.n]
    document = {
        "profile": asdict(profile),
        "machine": info,
        "versions": artifacts.versions,
        "flags": flags,
        "seconds": round(time.time() - started, 1),
        "setup_settle_s": round(getattr(bench, "setup_settle_s", 0.0), 1),
        "rows": [asdict(row) | {"ratio": row.ratio} for row in rows],
        "runs": [asdict(run) for run in bench.runs],
        "missed": missed,
        "incomplete": incomplete,
        "workdir": str(workdir),
    }
    args.json.write_text(json.dumps(document, indent=1))
    keep = args.workdir is not None or bool(incomplete)
    kept = f"logs in {workdir}" if keep else "logs removed (--workdir keeps them)"
    print(f"\nfigures in {args.json}, {kept}; {document['seconds']:.0f} s in all")
    if incomplete:
        print(f"snapshots that never became ready: {', '.join(incomplete)}", file=sys.stderr)
        return 1
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)  # a run that completed needs no logs kept
    if missed and not args.quick and not args.only:
        print(f"targets missed: {'; '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
