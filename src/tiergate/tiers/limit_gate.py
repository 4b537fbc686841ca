"""The rate-limit side of admission: config defaults + store overrides -> RateLimiter.

Overrides come from the SQL store (`tiergate limits set`), cached per org/project for a short TTL so
the request path does not hit the database on every request, yet CLI changes apply within a second.
A flex override that is not set explicitly follows on_demand's override times the flex multiplier,
at project level too (flex is "10x the on-demand limits" wherever they are set).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tiergate.clock import Clock
from tiergate.store.limits_repo import limits_for
from tiergate.store.models import RateLimitOverride
from tiergate.tiers.admission import Who
from tiergate.tiers.defaults import LimitTable
from tiergate.tiers.headers import rate_limit_headers
from tiergate.tiers.limits import Cost, Denial, LimitSet, RateLimiter, Reservation, Scope, Unit

_UNITS = tuple(unit.value for unit in Unit)


def _apply(base: LimitSet, row: RateLimitOverride | None, factor: float = 1.0) -> LimitSet:
    if row is None:
        return base
    given = {u: getattr(row, u) for u in _UNITS if getattr(row, u) is not None}
    return replace(base, **{u: round(v * factor) for u, v in given.items()})


class RateLimitGate:
    def __init__(
        self,
        limiter: RateLimiter,
        table: LimitTable,
        sessions: sessionmaker[Session],
        clock: Clock,
        ttl: float,
        canonical: Callable[[str], str] = str,
    ) -> None:
        self.limiter = limiter
        # Overrides may name a model by an alias (`limits set --model qwen2.5-coder`); they apply to
        # the model the alias resolves to, which is what `who.model` always is.
        self._canonical = canonical
        self.table = table
        self.sessions = sessions
        self.clock = clock
        self.ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, list[RateLimitOverride]]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[list[RateLimitOverride]]] = {}

    async def _overrides(self, who: Who) -> list[RateLimitOverride]:
        key = (who.org_id, who.project_id)
        now = self.clock.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        # One store read per org/project at a time: when the entry expires under load, every request
        # in flight would otherwise start its own read (64 concurrent requests, 64 SQL queries).
        read = self._inflight.get(key)
        if read is None:
            read = asyncio.ensure_future(asyncio.to_thread(limits_for, self.sessions, *key))
            self._inflight[key] = read
            read.add_done_callback(lambda done: self._remember(key, now, done))
        # Shielded: one caller giving up (client disconnect) must not cancel the shared read.
        return await asyncio.shield(read)

    def _remember(self, key: tuple[str, str], started: float, done: asyncio.Future[Any]) -> None:
        self._inflight.pop(key, None)
        if not done.cancelled() and done.exception() is None:
            self._cache[key] = (started, done.result())

    async def limits(self, who: Who, tier: str) -> tuple[LimitSet, LimitSet | None]:
        """(organization limits, the project's own limits or None) for this model and tier."""
        rows = await self._overrides(who)
        model = who.model.lower()
        rows = [r for r in rows if self._canonical(r.model).lower() == model]

        def row(project: bool, row_tier: str) -> RateLimitOverride | None:
            for r in rows:
                if r.tier == row_tier and (r.project_id is not None) == project:
                    return r
            return None

        multiplier = self.table.for_model(who.model).flex_multiplier
        org = self.table.limits(who.model, tier)
        if tier == "flex" and row(False, "flex") is None:
            org = _apply(org, row(False, "on_demand"), multiplier)
        org = _apply(org, row(False, tier))
        project_row = row(True, tier)
        factor = 1.0
        if project_row is None and tier == "flex":
            project_row, factor = row(True, "on_demand"), multiplier
        project = _apply(LimitSet(), project_row, factor) if project_row is not None else None
        return org, project

    async def try_reserve(self, who: Who, tier: str, cost: Cost) -> Reservation:
        org, project = await self.limits(who, tier)
        scope = Scope(who.org_id, who.project_id, who.model, tier)
        outcome = await self.limiter.try_reserve(scope, cost, org=org, project=project)
        if isinstance(outcome, Denial):
            raise outcome.to_error()
        return outcome

    async def settle(self, reservation: Any, tokens: int, audio_seconds: float) -> None:
        await self.limiter.settle(reservation, tokens=tokens, audio_seconds=audio_seconds)

    async def release(self, reservation: Any) -> None:
        await self.limiter.release(reservation)

    async def headers(self, who: Who, tier: str) -> dict[str, str]:
        org, project = await self.limits(who, tier)
        scope = Scope(who.org_id, who.project_id, who.model, tier)
        return rate_limit_headers(await self.limiter.snapshot(scope, org=org, project=project))
