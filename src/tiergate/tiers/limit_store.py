"""Where rate-limit windows keep their state: the store interface and the in-process store.

Every window is a leaky bucket (the "GCRA" family): a `level` of used units that drains
continuously at `limit / period` units per second, stored as `(level, updated_at)`. Compared
with fixed windows there is no burst of 2x at a window boundary, and compared with a log of
timestamps the state is two numbers per window whatever the limit. Keeping the level in units
(not a theoretical arrival time) means a changed limit changes the drain rate and capacity,
not how much a client has already used.

A store only does arithmetic on opaque keys; which windows apply, how keys are named and what
the numbers mean for headers is `limits.py`'s job. `redis_store.py` implements the same
interface with the same arithmetic in Lua, and tests/unit/test_limit_stores.py holds both to it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# Admission compares floats that went through `limit / period` arithmetic; this tolerance keeps
# exactly-full buckets admissible (e.g. 6000 tokens into an empty TPM 6000 window).
EPSILON = 1e-9


@dataclass(frozen=True)
class WindowSpec:
    """One bucket: `limit` units of capacity that refill from empty to full in `period` seconds."""

    key: str
    limit: float
    period: float

    def __post_init__(self) -> None:
        if self.limit < 0 or self.period <= 0:
            raise ValueError(f"bad window {self.key}: limit {self.limit}, period {self.period}")

    @property
    def rate(self) -> float:
        """Units freed per second."""
        return self.limit / self.period


@dataclass(frozen=True)
class AcquireResult:
    """Whether every window took its cost, and each window's level after the attempt.

    On refusal nothing was written, so `levels` is the state the request was refused against.
    """

    admitted: bool
    levels: list[float]


class LimitStore(Protocol):
    """Atomic multi-window bucket arithmetic. `now` comes from the caller's clock, never the store's,
    so replicas agree on one time base per call and tests can use a fake clock."""

    async def acquire(
        self, windows: Sequence[WindowSpec], costs: Sequence[float], now: float
    ) -> AcquireResult:
        """If every window whose cost is positive has room (level + cost <= limit), add every
        cost; otherwise change nothing. Check and commit are one step."""
        ...

    async def adjust(self, windows: Sequence[WindowSpec], deltas: Sequence[float], now: float) -> list[float]:
        """Add `deltas` (negative gives units back, floored at 0); return the levels after."""
        ...

    async def levels(self, windows: Sequence[WindowSpec], now: float) -> list[float]:
        """Current levels, read-only (for headers when nothing was reserved)."""
        ...

    async def aclose(self) -> None:
        """Release connections; the in-process store has none."""
        ...


def drained(level: float, updated_at: float, now: float, rate: float) -> float:
    """The level at `now` after draining since `updated_at`.

    Time never runs backwards for a bucket: a replica whose clock lags the last writer sees
    no drain instead of a negative one (and `updated_at` is only ever moved forward).
    """
    return max(0.0, level - max(0.0, now - updated_at) * rate)


class MemoryLimitStore:
    """The default store for a single replica: a dict guarded by a lock.

    Each call completes without awaiting, so on one event loop check-and-commit is already
    atomic; the lock also makes it safe from worker threads (e.g. a batch runner thread).
    Empty buckets are deleted, and a periodic sweep drops buckets that drained on their own.
    """

    _SWEEP_EVERY = 4096

    def __init__(self) -> None:
        # key -> (level, updated_at, empty_at): empty_at lets the sweep skip rate arithmetic.
        self._buckets: dict[str, tuple[float, float, float]] = {}
        self._lock = threading.Lock()
        self._writes = 0

    def _level(self, window: WindowSpec, now: float) -> tuple[float, float]:
        level, updated_at, _ = self._buckets.get(window.key, (0.0, now, now))
        return drained(level, updated_at, now, window.rate), max(updated_at, now)

    def _write(self, window: WindowSpec, level: float, updated_at: float) -> None:
        if level <= 0:
            self._buckets.pop(window.key, None)
            return
        empty_at = updated_at + (level / window.rate if window.rate > 0 else float("inf"))
        self._buckets[window.key] = (level, updated_at, empty_at)
        self._writes += 1
        if self._writes % self._SWEEP_EVERY == 0:
            self._sweep(updated_at)

    def _sweep(self, now: float) -> None:
        for key in [k for k, (_, _, empty_at) in self._buckets.items() if empty_at <= now]:
            del self._buckets[key]

    async def acquire(
        self, windows: Sequence[WindowSpec], costs: Sequence[float], now: float
    ) -> AcquireResult:
        with self._lock:
            current = [self._level(w, now) for w in windows]
            fits = all(
                cost <= 0 or level + cost <= w.limit + EPSILON
                for w, cost, (level, _) in zip(windows, costs, current, strict=True)
            )
            if not fits:
                return AcquireResult(False, [level for level, _ in current])
            after = []
            for w, cost, (level, updated_at) in zip(windows, costs, current, strict=True):
                if cost > 0:
                    level += cost
                    self._write(w, level, updated_at)
                after.append(level)
            return AcquireResult(True, after)

    async def adjust(self, windows: Sequence[WindowSpec], deltas: Sequence[float], now: float) -> list[float]:
        with self._lock:
            after = []
            for w, delta in zip(windows, deltas, strict=True):
                level, updated_at = self._level(w, now)
                level = max(0.0, level + delta)
                self._write(w, level, updated_at)
                after.append(level)
            return after

    async def levels(self, windows: Sequence[WindowSpec], now: float) -> list[float]:
        with self._lock:
            return [self._level(w, now)[0] for w in windows]

    async def aclose(self) -> None:
        return None
