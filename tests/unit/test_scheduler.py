"""The capacity scheduler: tier order, fairness across projects, flex fail-fast, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from tiergate.clock import FakeClock
from tiergate.errors import FlexCapacityExceeded
from tiergate.tiers.scheduler import Lease, Scheduler
from tiergate.tiers.speed import ServiceSpeed


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def acquire_in_order(
    scheduler: Scheduler, requests: list[tuple[str, str]]
) -> list[asyncio.Task[Lease]]:
    tasks = []
    for tier, project in requests:
        tasks.append(asyncio.create_task(scheduler.acquire(tier, project)))
        await settle()
    return tasks


async def drain(scheduler: Scheduler, first: Lease, tasks: list[asyncio.Task[Lease]]) -> list[int]:
    """Release slots one at a time and record which waiting task got each."""
    order: list[int] = []
    held = first
    for _ in tasks:
        held.release()
        await settle()
        done = [i for i, t in enumerate(tasks) if t.done() and i not in order]
        assert len(done) == 1
        order.append(done[0])
        held = tasks[done[0]].result()
    held.release()
    return order


async def test_free_slot_is_granted_at_once_with_zero_queue_time() -> None:
    scheduler = Scheduler(2)
    lease = await scheduler.acquire("on_demand", "p")
    assert lease.queue_time < 0.01
    assert scheduler.busy() == 1 and scheduler.free == 1
    lease.release()
    lease.release()  # idempotent
    assert scheduler.busy() == 0 and scheduler.free == 2


async def test_higher_tiers_overtake_queued_lower_tiers() -> None:
    scheduler = Scheduler(1, flex_wait=10)
    first = await scheduler.acquire("on_demand", "p")
    tasks = await acquire_in_order(
        scheduler, [("batch", "p"), ("flex", "p"), ("on_demand", "p"), ("performance", "p")]
    )
    order = await drain(scheduler, first, tasks)
    assert order == [3, 2, 1, 0]


async def test_fifo_within_a_tier_for_one_project() -> None:
    scheduler = Scheduler(1)
    first = await scheduler.acquire("on_demand", "p")
    tasks = await acquire_in_order(scheduler, [("on_demand", "p")] * 4)
    assert await drain(scheduler, first, tasks) == [0, 1, 2, 3]


async def test_one_projects_flood_does_not_starve_another_project() -> None:
    scheduler = Scheduler(1)
    first = await scheduler.acquire("on_demand", "flood")
    requests = [("on_demand", "flood")] * 5 + [("on_demand", "single")]
    tasks = await acquire_in_order(scheduler, requests)
    order = await drain(scheduler, first, tasks)
    # Round-robin: the single request is served second, not after all five flood requests.
    assert order.index(5) <= 1


async def test_flex_fails_fast_with_498_when_all_slots_are_busy() -> None:
    scheduler = Scheduler(1, flex_wait=0.05)
    held = await scheduler.acquire("on_demand", "p")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(FlexCapacityExceeded) as info:
        await scheduler.acquire("flex", "p")
    assert info.value.status == 498
    assert loop.time() - started < 0.5
    assert scheduler.queued() == 0
    held.release()
    assert scheduler.free == 1


async def test_flex_gets_a_slot_freed_within_its_short_wait() -> None:
    scheduler = Scheduler(1, flex_wait=1.0)
    held = await scheduler.acquire("on_demand", "p")
    waiter = asyncio.create_task(scheduler.acquire("flex", "p"))
    await settle()
    held.release()
    lease = await waiter
    assert lease.tier == "flex"


async def test_flex_never_takes_a_slot_an_on_demand_request_waits_for() -> None:
    scheduler = Scheduler(2, flex_wait=1.0)
    held = [await scheduler.acquire("on_demand", "p") for _ in range(2)]
    on_demand = asyncio.create_task(scheduler.acquire("on_demand", "q"))
    await settle()
    flex = asyncio.create_task(scheduler.acquire("flex", "r"))
    await settle()
    held[0].release()
    await settle()
    assert on_demand.done() and not flex.done()
    held[1].release()
    assert (await flex).tier == "flex"
    on_demand.result().release()


async def test_cancelled_waiter_leaves_the_queue_at_once() -> None:
    scheduler = Scheduler(1)
    held = await scheduler.acquire("on_demand", "p")
    leaving = asyncio.create_task(scheduler.acquire("on_demand", "p"))
    staying = asyncio.create_task(scheduler.acquire("on_demand", "p"))
    await settle()
    leaving.cancel()
    await settle()
    assert scheduler.queued() == 1
    held.release()
    await settle()
    assert staying.done()
    staying.result().release()
    assert scheduler.free == 1 and scheduler.busy() == 0


async def test_reserved_performance_slots_stay_free_for_performance() -> None:
    scheduler = Scheduler(2, reserved_performance_slots=1)
    first = await scheduler.acquire("on_demand", "p")
    blocked = asyncio.create_task(scheduler.acquire("on_demand", "p"))
    await settle()
    assert not blocked.done()
    performance = await scheduler.acquire("performance", "p")
    assert performance.tier == "performance"
    first.release()
    await settle()
    assert blocked.done()
    blocked.result().release()
    performance.release()


async def test_fifo_mode_ignores_tiers() -> None:
    scheduler = Scheduler(1, fifo=True)
    first = await scheduler.acquire("on_demand", "p")
    tasks = await acquire_in_order(scheduler, [("batch", "p"), ("flex", "p"), ("performance", "p")])
    assert await drain(scheduler, first, tasks) == [0, 1, 2]


async def test_queue_time_measures_the_wait() -> None:
    scheduler = Scheduler(1)
    held = await scheduler.acquire("on_demand", "p")
    waiter = asyncio.create_task(scheduler.acquire("on_demand", "p"))
    await asyncio.sleep(0.05)
    held.release()
    lease = await waiter
    assert lease.queue_time >= 0.04


async def test_a_waiting_synchronous_request_preempts_a_running_batch_line() -> None:
    scheduler = Scheduler(1)
    granted = asyncio.Event()

    async def batch_line() -> None:
        lease = await scheduler.acquire("batch", "p")
        try:
            granted.set()
            await asyncio.sleep(60)
        finally:
            lease.release()

    line = asyncio.create_task(batch_line())
    await granted.wait()
    started = asyncio.get_running_loop().time()
    lease = await asyncio.wait_for(scheduler.acquire("on_demand", "q"), 5)
    assert asyncio.get_running_loop().time() - started < 1
    assert line.cancelled()
    lease.release()


async def test_batch_lines_are_not_preempted_by_other_batch_lines_or_in_fifo_mode() -> None:
    for scheduler, tier in ((Scheduler(1), "batch"), (Scheduler(1, fifo=True), "on_demand")):
        leases: list[Lease] = []
        release = asyncio.Event()

        async def batch_line(
            scheduler: Scheduler = scheduler, leases: list[Lease] = leases, release: asyncio.Event = release
        ) -> None:
            lease = await scheduler.acquire("batch", "p")
            leases.append(lease)
            try:
                await release.wait()
            finally:
                lease.release()

        line = asyncio.create_task(batch_line())
        await settle()
        waiter = asyncio.create_task(scheduler.acquire(tier, "q"))
        await settle()
        assert not leases[0].preempted and not line.done() and not waiter.done()
        release.set()
        (await waiter).release()
        await line


async def test_flex_is_refused_at_once_when_the_queue_ahead_fills_every_slot() -> None:
    scheduler = Scheduler(1, flex_wait=5.0)
    held = await scheduler.acquire("on_demand", "p")
    queued = asyncio.create_task(scheduler.acquire("on_demand", "q"))
    await settle()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(FlexCapacityExceeded):
        await scheduler.acquire("flex", "r")
    assert loop.time() - started < 0.5, "no point waiting flex_wait when others are ahead"
    held.release()
    (await queued).release()


async def test_a_cancelled_waiter_does_not_hand_its_tiers_turn_to_a_lower_tier() -> None:
    scheduler = Scheduler(1)
    held = await scheduler.acquire("on_demand", "p")
    first = asyncio.create_task(scheduler.acquire("performance", "a"))
    await settle()
    second = asyncio.create_task(scheduler.acquire("performance", "b"))
    low = asyncio.create_task(scheduler.acquire("on_demand", "c"))
    await settle()
    # Mark the first waiter done without removing it from the queue, as a race would leave it.
    waiter = next(iter(scheduler._queues["performance"]._by_project["a"]))
    waiter.future.cancel()
    first.cancel()
    await settle()
    held.release()
    await settle()
    assert second.done() and not low.done()
    second.result().release()
    await settle()
    low.result().release()


async def test_flex_is_refused_at_once_when_no_running_request_can_end_within_the_wait() -> None:
    clock = FakeClock()
    scheduler = Scheduler(1, clock=clock, flex_wait=0.1)
    held = await scheduler.acquire("on_demand", "p")
    held.expected_end = clock.monotonic() + 5.0
    with pytest.raises(FlexCapacityExceeded):
        await asyncio.wait_for(scheduler.acquire("flex", "q"), 0.05)  # no waiting at all
    held.release()


async def test_flex_waits_when_a_running_request_should_end_within_the_wait() -> None:
    clock = FakeClock()
    scheduler = Scheduler(1, clock=clock, flex_wait=1.0)
    for expected_end in (clock.monotonic() + 0.5, None):  # ending soon, or unknown: worth waiting
        held = await scheduler.acquire("on_demand", "p")
        held.expected_end = expected_end
        flex = asyncio.create_task(scheduler.acquire("flex", "q"))
        await settle()
        assert not flex.done()
        held.release()
        (await flex).release()


def test_service_speed_learns_seconds_per_token_and_predicts_remaining_time() -> None:
    speed = ServiceSpeed(weight=0.5)
    assert speed.remaining(10, 10) is None
    speed.observe(prompt_tokens=100, prompt_time=1.0, completion_tokens=11, completion_time=2.0)
    assert speed.remaining(0, 10) == pytest.approx(2.0)
    assert speed.remaining(100, 0) == pytest.approx(1.0)
    speed.observe(prompt_tokens=100, prompt_time=1.0, completion_tokens=11, completion_time=4.0)
    assert speed.remaining(0, 10) == pytest.approx(3.0)


async def test_on_wait_is_called_only_for_requests_that_really_queue() -> None:
    scheduler = Scheduler(1, flex_wait=0.0)
    waits: list[str] = []
    held = await scheduler.acquire("on_demand", "p", on_wait=lambda: waits.append("first"))
    assert waits == []  # started at once
    with pytest.raises(FlexCapacityExceeded):
        # No running request is known to end within flex_wait = 0: refused, never queued.
        held.expected_end = scheduler.clock.monotonic() + 60
        await scheduler.acquire("flex", "p", on_wait=lambda: waits.append("flex"))
    assert waits == []
    queued = asyncio.create_task(scheduler.acquire("on_demand", "p", on_wait=lambda: waits.append("second")))
    await settle()
    assert waits == ["second"]
    held.release()
    (await queued).release()
    assert waits == ["second"]
