"""Rate limits: which windows a request must pass, atomic reservation, settlement, headers.

GroqCloud limits requests, tokens and audio seconds per minute, hour and day (RPM, RPD, TPM,
TPD, ASH, ASD) per model and service tier. The organization's limits are a ceiling shared by
all its projects; a project may set its own, lower, limits (seed 003, "Projects"):

    org 100 RPM; prod 80; staging 30; dev has no custom limit and inherits 100.
    prod uses 80 and staging 15 -> dev gets 5, because every request also counts
    against the organization's window.

So a request passes every organization window of its (model, tier) AND, when its project has
custom limits, that project's own windows; it is admitted into all of them or none. Projects
without custom limits have no windows of their own: they only share the organization's.

Tokens are reserved at admission as prompt tokens + max completion tokens (the most the request
can use), then `settle` gives back what generation did not use. Requests count 1 at admission.

The limiter is policy-free: callers pass limits already resolved (config defaults + database
overrides, see defaults.py) and choose the tier. `try_reserve` never raises, so the `auto` tier
can try performance -> on_demand -> flex and raise only the last denial (`Denial.to_error()`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from functools import lru_cache
from typing import Literal
from urllib.parse import quote

from tiergate.clock import Clock
from tiergate.errors import APIError, PayloadTooLarge, RateLimited
from tiergate.tiers.headers import (
    RateLimitSnapshot,
    WindowStatus,
    rate_limit_headers,
    rate_limited_message,
    request_too_large_message,
)
from tiergate.tiers.limit_store import EPSILON, LimitStore, WindowSpec

Measure = Literal["requests", "tokens", "audio_seconds"]
Level = Literal["organization", "project"]


class Unit(StrEnum):
    """A limit kind; its value is the LimitSet field name."""

    RPM = "rpm"
    RPD = "rpd"
    TPM = "tpm"
    TPD = "tpd"
    ASH = "ash"
    ASD = "asd"

    @property
    def measure(self) -> Measure:
        return _UNIT_INFO[self][0]

    @property
    def period(self) -> float:
        """Seconds for an empty window to refill completely."""
        return _UNIT_INFO[self][1]

    @property
    def label(self) -> str:
        """The wording GroqCloud's 429 messages use, e.g. "tokens per minute (TPM)"."""
        return _UNIT_INFO[self][2]


_UNIT_INFO: dict[Unit, tuple[Measure, float, str]] = {
    Unit.RPM: ("requests", 60.0, "requests per minute (RPM)"),
    Unit.RPD: ("requests", 86_400.0, "requests per day (RPD)"),
    Unit.TPM: ("tokens", 60.0, "tokens per minute (TPM)"),
    Unit.TPD: ("tokens", 86_400.0, "tokens per day (TPD)"),
    Unit.ASH: ("audio_seconds", 3_600.0, "audio seconds per hour (ASH)"),
    Unit.ASD: ("audio_seconds", 86_400.0, "audio seconds per day (ASD)"),
}

# GroqCloud's headers always describe these two windows, whichever one refused a request.
_HEADER_UNITS = {"requests": Unit.RPD, "tokens": Unit.TPM}


@dataclass(frozen=True)
class LimitSet:
    """Limits of one (model, tier) at one level; None means "no limit of this kind"."""

    rpm: int | None = None
    rpd: int | None = None
    tpm: int | None = None
    tpd: int | None = None
    ash: int | None = None
    asd: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value < 0:
                raise ValueError(f"{f.name} limit must be >= 0, got {value}")

    def get(self, unit: Unit) -> int | None:
        return getattr(self, unit.value)

    def capped_by(self, ceiling: LimitSet) -> LimitSet:
        """Each limit lowered to the ceiling's; a project can never exceed its organization."""
        return LimitSet(**{u.value: _min(self.get(u), ceiling.get(u)) for u in Unit})

    def scaled(self, factor: float) -> LimitSet:
        """Every limit times `factor` (flex is 10x on_demand by default)."""
        return LimitSet(**{u.value: None if self.get(u) is None else int(self.get(u) * factor) for u in Unit})


def _min(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def effective_limits(org: LimitSet, project: LimitSet | None) -> LimitSet:
    """The tightest limit per unit a project faces: its own (if set) capped by the organization's."""
    return org if project is None else project.capped_by(org)


@dataclass(frozen=True)
class Scope:
    """Who is asking for what: the counters a request touches are keyed by these four."""

    org_id: str
    project_id: str | None
    model: str
    tier: str


@dataclass(frozen=True)
class Cost:
    """What one request reserves: 1 request, prompt + max completion tokens, audio seconds."""

    requests: int = 1
    tokens: int = 0
    audio_seconds: float = 0.0

    @classmethod
    def for_chat(cls, prompt_tokens: int, max_completion_tokens: int) -> Cost:
        return cls(tokens=prompt_tokens + max_completion_tokens)

    def amount(self, measure: Measure) -> float:
        return getattr(self, measure)


@dataclass(frozen=True)
class Window:
    """One applicable window: its unit, whose it is, and the store-level bucket."""

    unit: Unit
    level: Level
    spec: WindowSpec

    @property
    def limit(self) -> float:
        return self.spec.limit


@lru_cache(maxsize=4096)
def _key_base(scope: Scope, level: Level) -> str:
    # Components are percent-encoded so ids holding ':' or braces cannot collide or break the
    # `{org}` hash tag that keeps one request's keys in one Redis Cluster slot. Cached: quoting
    # is most of the cost of resolving windows, and the same scopes recur request after request.
    org = "{" + quote(scope.org_id, safe="") + "}"
    owner = "org" if level == "organization" else "prj:" + quote(scope.project_id or "", safe="")
    return f"{org}:{owner}:{quote(scope.model, safe='')}:{quote(scope.tier, safe='')}:"


def _key(scope: Scope, level: Level, unit: Unit) -> str:
    return _key_base(scope, level) + unit.value


def resolve_windows(scope: Scope, org: LimitSet, project: LimitSet | None = None) -> list[Window]:
    """Every window a request in `scope` must pass: the organization's, plus the project's own
    where it has custom limits (capped by the organization's). Project windows come first, so
    on a tie the more specific limit is the one reported."""
    windows: list[Window] = []
    if project is not None and scope.project_id is not None:
        # Only the units the project sets get a window of its own; the rest are the org's alone.
        for unit, own in _limits(project):
            ceiling = org.get(unit)
            limit = own if ceiling is None else min(own, ceiling)
            windows.append(
                Window(unit, "project", WindowSpec(_key(scope, "project", unit), limit, unit.period))
            )
    for unit, limit in _limits(org):
        spec = WindowSpec(_key(scope, "organization", unit), limit, unit.period)
        windows.append(Window(unit, "organization", spec))
    return windows


def _limits(limits: LimitSet) -> list[tuple[Unit, int]]:
    return [(u, limit) for u in Unit if (limit := limits.get(u)) is not None]


def _snapshot(windows: Sequence[Window], levels: Sequence[float]) -> RateLimitSnapshot:
    """Header values for RPD and TPM: the smallest limit and remaining across the project and
    organization windows, and the longest time until both have fully refilled."""
    statuses: dict[str, WindowStatus | None] = {}
    for family, unit in _HEADER_UNITS.items():
        pairs = [(w, lv) for w, lv in zip(windows, levels, strict=True) if w.unit is unit]
        if not pairs:
            statuses[family] = None
            continue
        statuses[family] = WindowStatus(
            limit=int(min(w.limit for w, _ in pairs)),
            remaining=max(0, min(math.floor(w.limit - lv + EPSILON) for w, lv in pairs)),
            reset=max((lv / w.spec.rate if w.spec.rate > 0 else 0.0) for w, lv in pairs),
        )
    return RateLimitSnapshot(requests=statuses["requests"], tokens=statuses["tokens"])


class RequestTooLarge(PayloadTooLarge):
    """413 for a reservation above a limit outright, shaped like GroqCloud's
    ("Request too large for model ...", type `tokens`, code `rate_limit_exceeded`).
    Belongs in tiergate.errors; it lives here until the lead moves it."""

    type = "tokens"
    code = "rate_limit_exceeded"


@dataclass
class Reservation:
    """Units held for one admitted request until `RateLimiter.settle` (or `release`)."""

    scope: Scope
    cost: Cost
    windows: tuple[Window, ...]
    snapshot: RateLimitSnapshot
    settled: bool = field(default=False)

    @property
    def headers(self) -> dict[str, str]:
        """The x-ratelimit-* headers as of admission, or of settlement once settled."""
        return rate_limit_headers(self.snapshot)


@dataclass(frozen=True)
class Denial:
    """Why a request was not admitted; nothing was reserved.

    `window` is the refusing window that frees last (the longest `retry_after`), so a client
    that waits that long is not refused by another exhausted window right after. `too_large`
    means the request alone exceeds the limit: waiting never helps.
    """

    scope: Scope
    window: Window
    used: float
    requested: float
    retry_after: float
    too_large: bool
    snapshot: RateLimitSnapshot

    @property
    def unit(self) -> Unit:
        return self.window.unit

    @property
    def limit(self) -> float:
        return self.window.limit

    @property
    def kind(self) -> str:
        """GroqCloud's error `type`: "requests" for RPM/RPD, "tokens" otherwise."""
        return "requests" if self.unit.measure == "requests" else "tokens"

    @property
    def headers(self) -> dict[str, str]:
        retry = None if self._payload_too_large else self.retry_after
        return rate_limit_headers(self.snapshot, retry_after=retry)

    @property
    def _payload_too_large(self) -> bool:
        # A request-count window can only be "too large" when its limit is 0, which reads
        # better as an ordinary 429 than as "reduce your message size".
        return self.too_large and self.unit.measure != "requests"

    @property
    def message(self) -> str:
        scope = self.scope
        project_id = scope.project_id if self.window.level == "project" else None
        where = {"model": scope.model, "org_id": scope.org_id, "tier": scope.tier, "project_id": project_id}
        if self._payload_too_large:
            return request_too_large_message(
                **where, unit_label=self.unit.label, limit=self.limit, requested=self.requested
            )
        used = self.used if self.unit.measure == "audio_seconds" else math.ceil(self.used - EPSILON)
        return rate_limited_message(
            **where,
            unit_label=self.unit.label,
            limit=self.limit,
            used=used,
            requested=self.requested,
            retry_after=self.retry_after,
        )

    def to_error(self) -> APIError:
        """The exception the HTTP layer renders: 413 RequestTooLarge or 429 RateLimited."""
        if self._payload_too_large:
            return RequestTooLarge(self.message, headers=self.headers)
        return RateLimited(self.message, retry_after=self.retry_after, kind=self.kind, headers=self.headers)


class RateLimiter:
    """Reserves, settles and reports rate-limit windows in a LimitStore (memory or Redis)."""

    def __init__(self, store: LimitStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    @property
    def store(self) -> LimitStore:
        return self._store

    async def try_reserve(
        self, scope: Scope, cost: Cost, *, org: LimitSet, project: LimitSet | None = None
    ) -> Reservation | Denial:
        """Reserve `cost` in every applicable window at once, or return why not. Never raises
        for a limit, so a tier policy can try the next tier."""
        windows = resolve_windows(scope, org, project)
        amounts = [cost.amount(w.unit.measure) for w in windows]
        now = self._clock.now()
        oversized = [
            i for i, (w, a) in enumerate(zip(windows, amounts, strict=True)) if a > w.limit + EPSILON
        ]
        if oversized:
            levels = await self._store.levels([w.spec for w in windows], now)
            first = oversized[0]
            return Denial(
                scope=scope,
                window=windows[first],
                used=levels[first],
                requested=amounts[first],
                retry_after=windows[first].unit.period,
                too_large=True,
                snapshot=_snapshot(windows, levels),
            )
        result = await self._store.acquire([w.spec for w in windows], amounts, now)
        if result.admitted:
            return Reservation(scope, cost, tuple(windows), _snapshot(windows, result.levels))
        return self._denial(scope, windows, amounts, result.levels)

    def _denial(
        self, scope: Scope, windows: Sequence[Window], amounts: Sequence[float], levels: Sequence[float]
    ) -> Denial:
        # The same comparison as the stores make, on the levels they returned, so at least one
        # window qualifies; the fallback only guards against a store that breaks the contract.
        best: tuple[float, int] = (0.0, 0)
        for i, (w, amount, level) in enumerate(zip(windows, amounts, levels, strict=True)):
            if amount > 0 and level + amount > w.limit + EPSILON:
                wait = (level + amount - w.limit) / w.spec.rate
                if wait > best[0] + EPSILON:
                    best = (wait, i)
        wait, i = best
        return Denial(
            scope=scope,
            window=windows[i],
            used=levels[i],
            requested=amounts[i],
            retry_after=wait,
            too_large=False,
            snapshot=_snapshot(windows, levels),
        )

    async def reserve(
        self, scope: Scope, cost: Cost, *, org: LimitSet, project: LimitSet | None = None
    ) -> Reservation:
        """`try_reserve`, raising the denial as RateLimited (429) or RequestTooLarge (413)."""
        outcome = await self.try_reserve(scope, cost, org=org, project=project)
        if isinstance(outcome, Denial):
            raise outcome.to_error()
        return outcome

    async def settle(
        self, reservation: Reservation, *, tokens: int | None = None, audio_seconds: float | None = None
    ) -> RateLimitSnapshot:
        """Replace the reserved tokens / audio seconds by what the request really used (None:
        keep the reservation as charged). The request itself stays counted. Settling twice is a
        no-op, so `finally:` blocks may call it freely."""
        actual = replace(
            reservation.cost,
            tokens=reservation.cost.tokens if tokens is None else tokens,
            audio_seconds=reservation.cost.audio_seconds if audio_seconds is None else audio_seconds,
        )
        return await self._adjust(reservation, actual)

    async def release(self, reservation: Reservation) -> RateLimitSnapshot:
        """Give back everything, the request count too: for a request refused after admission
        before any work was done (e.g. flex at capacity, 498)."""
        return await self._adjust(reservation, Cost(requests=0))

    async def _adjust(self, reservation: Reservation, actual: Cost) -> RateLimitSnapshot:
        if reservation.settled:
            return reservation.snapshot
        reservation.settled = True
        windows = reservation.windows
        deltas = [actual.amount(w.unit.measure) - reservation.cost.amount(w.unit.measure) for w in windows]
        levels = await self._store.adjust([w.spec for w in windows], deltas, self._clock.now())
        reservation.snapshot = _snapshot(windows, levels)
        return reservation.snapshot

    async def snapshot(
        self, scope: Scope, *, org: LimitSet, project: LimitSet | None = None
    ) -> RateLimitSnapshot:
        """Header values without reserving anything (e.g. a 400 rejected before admission)."""
        windows = [w for w in resolve_windows(scope, org, project) if w.unit in _HEADER_UNITS.values()]
        levels = await self._store.levels([w.spec for w in windows], self._clock.now())
        return _snapshot(windows, levels)
