"""Admission: tier choice, rate-limit reservation and a slot, decided before the first byte.

`auto` tries each candidate tier's limits in order and takes the first that allows the request; the
last candidate's denial is the one the client sees. A flex refusal (498) gives its reservation back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from tiergate.errors import APIError, FlexCapacityExceeded
from tiergate.observability.metrics import Metrics
from tiergate.tiers.limits import Cost
from tiergate.tiers.scheduler import Lease, Scheduler


@dataclass(frozen=True)
class Who:
    org_id: str
    org_name: str
    project_id: str
    model: str


class LimitGate(Protocol):
    """The rate-limit side of admission (tiers/limit_gate.py): reserve, settle, and headers."""

    async def try_reserve(self, who: Who, tier: str, cost: Cost) -> object:
        """A reservation handle, or raise the APIError (429/413) this tier's limits give."""
        ...

    async def settle(self, reservation: object, tokens: int, audio_seconds: float) -> None: ...

    async def release(self, reservation: object) -> None: ...

    async def headers(self, who: Who, tier: str) -> dict[str, str]: ...


@dataclass
class Admitted:
    tier: str
    lease: Lease
    reservation: object | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def queue_time(self) -> float:
        return self.lease.queue_time


class Admission:
    def __init__(self, schedulers: dict[str, Scheduler], limits: LimitGate | None, metrics: Metrics) -> None:
        self.schedulers = schedulers
        self.limits = limits
        self.metrics = metrics

    async def admit(self, who: Who, tiers: tuple[str, ...], cost: Cost) -> Admitted:
        tier, reservation = await self._reserve(who, tiers, cost)
        scheduler = self.schedulers[who.model]
        try:
            lease = await scheduler.acquire(tier, who.project_id, self.metrics.queued.labels(tier).inc)
        except FlexCapacityExceeded:
            self.metrics.rejected.labels(tier, "498").inc()
            if reservation is not None and self.limits is not None:
                await self.limits.release(reservation)
            raise
        except BaseException:
            if reservation is not None and self.limits is not None:
                await self.limits.release(reservation)
            raise
        self.metrics.admitted.labels(tier).inc()
        self.metrics.queue_time.labels(tier).observe(lease.queue_time)
        self.metrics.slots_busy.labels(who.model, tier).inc()
        headers = getattr(reservation, "headers", None) or {}
        return Admitted(tier, lease, reservation, headers)

    def flex_refusal(self) -> FlexCapacityExceeded:
        """The 498 for a flex request refused before admission (counted like any other refusal)."""
        self.metrics.rejected.labels("flex", "498").inc()
        return Scheduler.flex_refusal()

    async def _reserve(self, who: Who, tiers: tuple[str, ...], cost: Cost) -> tuple[str, object | None]:
        if self.limits is None:
            return tiers[0], None
        for index, tier in enumerate(tiers):
            try:
                return tier, await self.limits.try_reserve(who, tier, cost)
            except APIError as denial:
                if index == len(tiers) - 1:
                    self.metrics.rejected.labels(tier, str(denial.status)).inc()
                    raise
        raise AssertionError("candidate tier list is never empty")

    async def headers(self, who: Who, tier: str) -> dict[str, str]:
        """Rate-limit headers for a response that reserved nothing (an error before admission)."""
        return await self.limits.headers(who, tier) if self.limits is not None else {}

    @asynccontextmanager
    async def headers_on_error(self, who: Who, tier: str = "on_demand") -> AsyncIterator[None]:
        """Every response carries the rate-limit headers, errors included: an APIError raised inside
        leaves with `who`'s headers in `tier` added (its own headers win)."""
        try:
            yield
        except APIError as error:
            error.headers = {**await self.headers(who, tier), **error.headers}
            raise

    async def withdraw(self, who: Who, admitted: Admitted) -> None:
        """Undo an admission whose request never ran (a late 498, an upstream that failed before the
        first byte): free the slot and give the whole reservation back, as if it was never admitted."""
        reservation, admitted.reservation = admitted.reservation, None
        await self.finish(who, admitted, 0)
        if reservation is not None and self.limits is not None:
            await self.limits.release(reservation)

    async def finish(self, who: Who, admitted: Admitted, tokens: int, audio_seconds: float = 0.0) -> None:
        """Free the slot and settle the reservation to what was really used. Safe to call once."""
        if admitted.lease._scheduler is not None:
            self.metrics.slots_busy.labels(who.model, admitted.tier).dec()
        admitted.lease.release()
        if admitted.reservation is not None and self.limits is not None:
            reservation, admitted.reservation = admitted.reservation, None
            await self.limits.settle(reservation, tokens, audio_seconds)
