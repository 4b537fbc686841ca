"""The capacity scheduler: one per engine, it owns the engine's slots and decides who runs next.

Order: performance > on_demand > flex > batch; FIFO within a tier for one project, round-robin across
projects within a tier, so one project's flood cannot starve another project's single request.
Flex never queues behind capacity for long: it gets a slot now or within `flex_wait`, else 498.
Batch waits for any slot nobody else wants. In `fifo` mode all tiers share one plain FIFO queue (the
baseline the tier benchmark compares against).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from tiergate.clock import Clock, SystemClock
from tiergate.errors import FlexCapacityExceeded

TIER_ORDER = ("performance", "on_demand", "flex", "batch")


@dataclass
class Lease:
    """A slot held by one request; release it exactly once (release is idempotent)."""

    slot: int
    tier: str
    project_id: str
    queue_time: float
    _scheduler: Scheduler | None = field(default=None, repr=False)
    # The task holding the slot; a batch lease's task is cancelled when it is preempted.
    task: asyncio.Task[object] | None = field(default=None, repr=False)
    preempted: bool = False
    # When the request is expected to give the slot back (clock.monotonic); None if unknown.
    expected_end: float | None = None

    def release(self) -> None:
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler._free(self)


@dataclass(eq=False)
class _Waiter:
    tier: str
    project_id: str
    future: asyncio.Future[int]
    enqueued_at: float


class _TierQueue:
    """Waiters of one tier: a FIFO per project, served round-robin across projects."""

    def __init__(self) -> None:
        self._by_project: OrderedDict[str, deque[_Waiter]] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(q) for q in self._by_project.values())

    def __bool__(self) -> bool:
        return bool(self._by_project)

    def push(self, waiter: _Waiter) -> None:
        self._by_project.setdefault(waiter.project_id, deque()).append(waiter)

    def pop(self) -> _Waiter:
        project_id, queue = next(iter(self._by_project.items()))
        waiter = queue.popleft()
        # The served project goes to the back of the rotation.
        del self._by_project[project_id]
        if queue:
            self._by_project[project_id] = queue
        return waiter

    def remove(self, waiter: _Waiter) -> None:
        queue = self._by_project.get(waiter.project_id)
        if queue is None:
            return
        try:
            queue.remove(waiter)
        except ValueError:
            return
        if not queue:
            del self._by_project[waiter.project_id]


class Scheduler:
    def __init__(
        self,
        slots: int,
        *,
        clock: Clock | None = None,
        flex_wait: float = 0.1,
        reserved_performance_slots: int = 0,
        fifo: bool = False,
        preempt_batch: bool = True,
    ) -> None:
        if slots < 1:
            raise ValueError("a scheduler needs at least one slot")
        self.slots = slots
        self.clock = clock or SystemClock()
        self.flex_wait = flex_wait
        self.reserved_performance = min(max(reserved_performance_slots, 0), slots)
        self.fifo = fifo
        self.preempt_batch = preempt_batch and not fifo
        self._batch_leases: list[Lease] = []
        self._running: dict[int, Lease] = {}
        self._free_slots: list[int] = list(range(slots - 1, -1, -1))
        self._busy: dict[str, int] = dict.fromkeys(TIER_ORDER, 0)
        self._queues: dict[str, _TierQueue] = {tier: _TierQueue() for tier in TIER_ORDER}
        self._fifo_queue: deque[_Waiter] = deque()

    # -- introspection (metrics, load-aware decisions) -------------------------------------------
    def busy(self, tier: str | None = None) -> int:
        return sum(self._busy.values()) if tier is None else self._busy[tier]

    def queued(self, tier: str | None = None) -> int:
        if self.fifo:
            return sum(1 for w in self._fifo_queue if tier is None or w.tier == tier)
        if tier is None:
            return sum(len(q) for q in self._queues.values())
        return len(self._queues[tier])

    @property
    def free(self) -> int:
        return len(self._free_slots)

    # -- admission ---------------------------------------------------------------------------
    async def acquire(self, tier: str, project_id: str, on_wait: Callable[[], None] | None = None) -> Lease:
        """Wait for a slot in `tier`'s turn. Cancelling the caller removes it from the queue at once.

        `on_wait` is called once if the request has to queue (not when it starts at once or is refused).
        """
        if tier not in self._busy:
            raise ValueError(f"unknown tier {tier!r}")
        start = self.clock.monotonic()
        if self._can_start_now(tier):
            self._busy[tier] += 1
            return self._lease(tier, project_id, self._free_slots.pop(), start)
        if tier == "flex" and self.flex_is_hopeless():
            raise self.flex_refusal()
        loop = asyncio.get_running_loop()
        waiter = _Waiter(tier, project_id, loop.create_future(), start)
        self._enqueue(waiter)
        if on_wait is not None:
            on_wait()
        if tier != "batch":
            self._preempt_one_batch_line()
        try:
            if tier == "flex" and not self.fifo:
                slot = await asyncio.wait_for(asyncio.shield(waiter.future), self.flex_wait)
            else:
                slot = await waiter.future
        except (TimeoutError, asyncio.CancelledError) as exc:
            self._abandon(waiter)
            if isinstance(exc, TimeoutError):
                raise self.flex_refusal() from None
            raise
        return self._lease(tier, project_id, slot, start)

    def flex_is_hopeless(self) -> bool:
        """True when a flex request arriving now cannot get a slot within flex_wait: refuse it at once.

        Callers may ask before doing any work for the request (templating, token counting).
        """
        if self.fifo or self._can_start_now("flex"):
            return False
        # Every slot would have to free within flex_wait just for those already waiting.
        if self.queued() - self.queued("batch") >= self.slots:
            return True
        return not self._a_slot_may_free_within(self.flex_wait)

    def _a_slot_may_free_within(self, seconds: float) -> bool:
        """False only when every running request is known to need longer (and none is preemptible)."""
        if len(self._running) < self.busy():
            return True  # a slot was just handed to a waiter that has not resumed yet: unknown
        now = self.clock.monotonic()
        for lease in self._running.values():
            if lease.tier == "batch" and self.preempt_batch:
                return True
            if lease.expected_end is None or lease.expected_end - now <= seconds:
                return True
        return False

    @staticmethod
    def flex_refusal() -> FlexCapacityExceeded:
        return FlexCapacityExceeded(
            "Flex Tier Capacity Exceeded: the flex tier is at capacity and the request "
            "won't be processed. You can try again later."
        )

    def _can_start_now(self, tier: str) -> bool:
        if not self._free_slots:
            return False
        if self.fifo:
            return not self._fifo_queue
        # Anyone of this tier or higher already waiting goes first.
        for other in TIER_ORDER[: TIER_ORDER.index(tier) + 1]:
            if self._queues[other]:
                return False
        return self._slot_allowed(tier)

    def _slot_allowed(self, tier: str) -> bool:
        """Reserved performance slots stay out of reach of every other tier."""
        if tier == "performance" or self.reserved_performance == 0:
            return True
        non_performance_busy = self.busy() - self._busy["performance"]
        return non_performance_busy < self.slots - self.reserved_performance

    def _enqueue(self, waiter: _Waiter) -> None:
        if self.fifo:
            self._fifo_queue.append(waiter)
        else:
            self._queues[waiter.tier].push(waiter)

    def _abandon(self, waiter: _Waiter) -> None:
        if waiter.future.done() and not waiter.future.cancelled():
            # The slot was handed over just as the caller left: give it to the next in line.
            self._busy[waiter.tier] -= 1
            self._free_slots.append(waiter.future.result())
            self._dispatch()
            return
        waiter.future.cancel()
        if self.fifo:
            with contextlib.suppress(ValueError):
                self._fifo_queue.remove(waiter)
        else:
            self._queues[waiter.tier].remove(waiter)

    def _lease(self, tier: str, project_id: str, slot: int, start: float) -> Lease:
        lease = Lease(slot, tier, project_id, self.clock.monotonic() - start, self, asyncio.current_task())
        self._running[id(lease)] = lease
        if tier == "batch":
            self._batch_leases.append(lease)
        return lease

    def _preempt_one_batch_line(self) -> None:
        """A synchronous request never waits behind batch work: the newest batch line gives way.

        Its task is cancelled (its `finally` frees the slot, which goes to the waiter); the batch runner
        sees `lease.preempted` and runs the line again later from scratch.
        """
        if not self.preempt_batch:
            return
        for lease in reversed(self._batch_leases):
            if not lease.preempted and lease.task is not None and not lease.task.done():
                lease.preempted = True
                lease.task.cancel()
                return

    def _free(self, lease: Lease) -> None:
        self._running.pop(id(lease), None)
        if lease.tier == "batch":
            with contextlib.suppress(ValueError):
                self._batch_leases.remove(lease)
        self._busy[lease.tier] -= 1
        self._free_slots.append(lease.slot)
        self._dispatch()

    def _dispatch(self) -> None:
        while self._free_slots:
            waiter = self._next_waiter()
            if waiter is None:
                return
            # Counted busy from the hand-over, so _slot_allowed sees it before the waiter resumes.
            self._busy[waiter.tier] += 1
            waiter.future.set_result(self._free_slots.pop())

    def _next_waiter(self) -> _Waiter | None:
        if self.fifo:
            while self._fifo_queue:
                waiter = self._fifo_queue.popleft()
                if not waiter.future.done():
                    return waiter
            return None
        for tier in TIER_ORDER:
            queue = self._queues[tier]
            while queue and self._slot_allowed(tier):
                waiter = queue.pop()
                if not waiter.future.done():
                    return waiter
        return None
