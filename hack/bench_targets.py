"""The table rows of hack/bench.py, each with its target, from the runs of every trial."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from bench_figures import Row, p50

PLATFORM = ("emulator", "kube-apiserver", "etcd", "snapshot-controller")


def _median(
    runs: Sequence[Any], scenario: str, arm: str, measure: Callable[[Any], float | None]
) -> float | None:
    values = [v for r in runs if r.scenario == scenario and r.arm == arm if (v := measure(r)) is not None]
    return statistics.median(values) if values else None


def _driver_cpu_ms(run: Any) -> float:
    driver = sum(v for k, v in run.cpu_s.items() if k not in PLATFORM)
    return 1000 * driver / max(run.n, 1)


def _driver_memory(run: Any, key: str) -> float:
    return sum(m[key] for m in run.memory_mib.values())


def rows(profile: Any, runs: Sequence[Any]) -> list[Row]:
    def both(scenario: str, measure: Callable[[Any], float | None]) -> tuple[float | None, float | None]:
        return _median(runs, scenario, "operator", measure), _median(runs, scenario, "sidecar", measure)

    out: list[Row] = []

    def add(measure: str, scenario: str, fn: Callable[[Any], float | None], unit: str, target: str = "",
            check: Callable[[float, float | None], bool] | None = None) -> None:  # fmt: skip
        op, side = both(scenario, fn)
        met = check(op, side) if check is not None and op is not None else None
        out.append(Row(measure, op, side, unit, target, met))

    big, lro = profile.big_burst, profile.lro_seconds
    add("1 snapshot at a time, p50 create→ready", "singles", lambda r: p50(r.ready_s), "s")
    add(f"burst of {profile.burst}, makespan", "burst", lambda r: r.makespan_s, "s")
    add(
        f"burst of {big}, makespan", "big_burst", lambda r: r.makespan_s, "s",
        "≤ 0.8x sidecar and ≤ 60 s", lambda op, side: side is not None and op <= 0.8 * side and op <= 60,
    )  # fmt: skip
    add(f"burst of {big}, p50 VolumeSnapshot created → its content created", "big_burst",
        lambda r: p50(r.stages["content_created_s"]), "s")  # fmt: skip
    add(f"burst of {big}, share of the contents the driver made", "big_burst",
        lambda r: statistics.fmean(r.stages.get("made_by_driver") or [0.0]), "")  # fmt: skip
    for scenario, label in (
        ("singles", "1 at a time"),
        ("burst", f"burst {profile.burst}"),
        ("big_burst", f"burst {big}"),
        ("lro", f"LRO of {lro} s"),
        ("throttled", "20% injected 429s"),
    ):
        add(f"contents handed back to snapshot-controller, {label}", scenario,
            lambda r: sum(r.stages.get("remade") or [0.0]), "")  # fmt: skip
    add(f"burst of {big}, p50 content created → driver's first write after it", "big_burst",
        lambda r: p50(r.stages["driver_pickup_s"]), "s")  # fmt: skip
    for scenario, label in (
        ("singles", "1 at a time"),
        ("burst", f"burst {profile.burst}"),
        ("big_burst", f"burst {big}"),
    ):
        add(f"driver API writes per snapshot, {label}", scenario, lambda r: r.driver["writes"] / r.n, "",
            "≤ 3", lambda op, side: op <= 3)  # fmt: skip
        add(f"driver API reads per snapshot, {label}", scenario, lambda r: r.driver["reads"] / r.n, "",
            "≤ 1", lambda op, side: op <= 1)  # fmt: skip
    add("Azure snapshot PUTs accepted per snapshot (LRO 0)", "singles", lambda r: r.azure["puts_accepted"] / r.n, "",
        "1", lambda op, side: op == 1)  # fmt: skip
    add("Azure reads per snapshot (LRO 0)", "singles", lambda r: r.azure["reads"] / r.n, "",
        "≤ 2", lambda op, side: op <= 2)  # fmt: skip
    add("20% injected 429s: accepted PUTs per snapshot", "throttled", lambda r: r.azure["puts_accepted"] / r.n, "",
        "1", lambda op, side: op == 1)  # fmt: skip
    add("20% injected 429s: makespan", "throttled", lambda r: r.makespan_s, "s")
    allowed = max(0.05 * lro, 1.0)
    add(
        f"LRO of {lro:g} s: p50 time-to-ready - {lro:g} s", "lro", lambda r: (p50(r.ready_s) or 0) - lro, "s",
        f"≤ {allowed:g} s and ≤ sidecar", lambda op, side: op <= allowed and (side is None or op <= side),
    )  # fmt: skip
    add(f"burst of {big}: driver CPU per snapshot", "big_burst", _driver_cpu_ms, "ms",
        "≤ 25 ms", lambda op, side: op <= 25)  # fmt: skip
    op_cpu = _median(runs, "big_burst", "operator", _driver_cpu_ms)
    add(f"burst of {big}: emulator CPU per snapshot", "big_burst", lambda r: 1000 * r.cpu_s["emulator"] / r.n, "ms",
        "< operator's CPU", lambda op, side: op_cpu is not None and op < op_cpu)  # fmt: skip
    for name in ("kube-apiserver", "etcd", "snapshot-controller"):
        add(
            f"burst of {big}: {name} CPU per snapshot",
            "big_burst",
            lambda r, n=name: 1000 * r.cpu_s[n] / r.n,
            "ms",
        )
    add(f"burst of {big}: driver peak RSS", "big_burst", lambda r: _driver_memory(r, "peak"), "MiB")
    start = f"start-up with {profile.startup_objects} contents and PVs"
    add(f"{start}: time to the first snapshot", "startup", lambda r: r.extra.get("first_snapshot_after_start_s"), "s",
        "≤ sidecar", lambda op, side: side is not None and op <= side)  # fmt: skip
    add(f"{start}: time until the driver is idle", "singles", lambda r: r.extra.get("settle_s"), "s")
    add(f"{start}: steady RSS", "startup", lambda r: _driver_memory(r, "rss"), "MiB",
        "≤ 150 MiB", lambda op, side: op <= 150)  # fmt: skip
    add(f"{start}: peak RSS", "startup", lambda r: _driver_memory(r, "peak"), "MiB",
        "≤ 300 MiB", lambda op, side: op <= 300)  # fmt: skip
    errors_op = sum(r.azure["server_errors"] for r in runs if r.arm == "operator")
    errors_side = sum(r.azure["server_errors"] for r in runs if r.arm == "sidecar")
    out.append(
        Row("emulator 5xx answers, all runs", errors_op, errors_side, "", "0", errors_op + errors_side == 0)
    )
    return out
