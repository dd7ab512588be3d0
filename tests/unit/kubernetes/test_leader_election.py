"""One active replica through a Lease: fast takeover after a crash, never two at once."""

from __future__ import annotations

import pytest
from fake_kube import FakeKube, Request

from elasticsan_snapshotter.kubernetes.leader import LeaderElector
from elasticsan_snapshotter.kubernetes.resources import LEASE


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def elector(kube: FakeKube, identity: str, clock: Clock) -> LeaderElector:
    return LeaderElector(api=kube, name="ess", namespace="ops", identity=identity, clock=clock)


async def test_a_standby_takes_over_only_after_the_lease_went_unrenewed_for_its_duration() -> None:
    kube, clock = FakeKube(), Clock()
    active, standby = elector(kube, "a", clock), elector(kube, "b", clock)
    assert await active.try_acquire_or_renew()
    assert not await standby.try_acquire_or_renew()
    for _ in range(10):  # the active renews every retry period: the standby keeps waiting
        clock.now += 2.0
        assert await active.try_acquire_or_renew()
        assert not await standby.try_acquire_or_renew()
    # The active is SIGKILLed now: its record stops changing.
    killed_at = clock.now
    while not await standby.try_acquire_or_renew():
        clock.now += 2.0
    assert 10.0 <= clock.now - killed_at <= 12.0  # the defaults: well within client-go's 15 s
    lease = kube.get_object(LEASE, "ess", "ops")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    assert not await active.try_acquire_or_renew()  # a late renewal of the old holder fails


async def test_a_holder_that_cannot_renew_stops_before_anyone_may_take_over() -> None:
    kube, clock = FakeKube(), Clock()
    active, standby = elector(kube, "a", clock), elector(kube, "b", clock)
    events: list[str] = []

    async def sleep(seconds: float) -> None:
        clock.now += seconds
        if standby_ready := await standby.try_acquire_or_renew():
            events.append(f"standby took over at {clock.now}")
        assert not (standby_ready and active.leading), "two leaders at once"

    active.sleep = sleep

    async def started() -> None:
        events.append("active started")

        def api_down(request: Request) -> tuple[int, str] | None:
            return (503, "ServiceUnavailable") if request.method == "PATCH" else None

        kube.fail_when = api_down  # the holder's renewals fail from now on, the standby only reads

    await active.run(started, lambda: events.append(f"active stopped at {clock.now}"))
    assert events[0] == "active started"
    assert events[1].startswith("active stopped")
    kube.fail_when = None
    while not await standby.try_acquire_or_renew():
        clock.now += 2.0
    assert standby.identity == "b"


async def test_a_clean_stop_hands_over_at_once() -> None:
    kube, clock = FakeKube(), Clock()
    active, standby = elector(kube, "a", clock), elector(kube, "b", clock)
    assert await active.try_acquire_or_renew()
    active.leading = True
    await active.release()
    assert await standby.try_acquire_or_renew()


def test_the_timings_must_leave_room_between_giving_up_and_taking_over() -> None:
    with pytest.raises(ValueError, match="renew_deadline"):
        LeaderElector(api=FakeKube(), name="n", namespace="ns", identity="i", renew_deadline=12.0)
