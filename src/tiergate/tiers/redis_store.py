"""The Redis limit store: the same leaky buckets as MemoryLimitStore, shared by every replica.

Check-and-commit runs inside one Lua script (reserve.lua), so replicas sharing a Redis never
admit more than a limit between them. Time comes from the caller's clock as an argument,
never Redis TIME: tests drive it with a FakeClock, and the script stays deterministic.

Keys are `<prefix><key>`; `limits.py` puts the organization in a `{hash tag}`, so all the
windows one request touches hash to one slot and the multi-key script also runs on a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tiergate.tiers.limit_store import AcquireResult, WindowSpec, drained

_HERE = Path(__file__).parent
_RESERVE_LUA = (_HERE / "reserve.lua").read_text()
_SETTLE_LUA = (_HERE / "settle.lua").read_text()


def _script_args(windows: Sequence[WindowSpec], amounts: Sequence[float], now: float) -> list[str]:
    # repr() round-trips a float exactly; Lua's tonumber reads it back without loss.
    args = [repr(float(now))]
    for window, amount in zip(windows, amounts, strict=True):
        args += [repr(float(window.limit)), repr(float(window.period)), repr(float(amount))]
    return args


class RedisLimitStore:
    """LimitStore over `redis.asyncio`; see limit_store.LimitStore for the contract."""

    def __init__(
        self, client: aioredis.Redis, *, prefix: str = "tiergate:rl:", owns_client: bool = False
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._owns_client = owns_client
        # register_script sends EVALSHA and falls back to EVAL after a NOSCRIPT (e.g. Redis restart).
        self._reserve = client.register_script(_RESERVE_LUA)
        self._settle = client.register_script(_SETTLE_LUA)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "tiergate:rl:",
        max_connections: int = 50,
        pool_timeout: float = 5.0,
        **connection_options: Any,
    ) -> RedisLimitStore:
        """A store with its own pool (closed by `aclose`), e.g. redis://127.0.0.1:6379/0.

        The pool blocks for up to `pool_timeout` when all connections are busy: redis-py's
        default pool raises "Too many connections" instead, which a burst of requests would hit.
        """
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=pool_timeout, **connection_options
        )
        return cls(aioredis.Redis.from_pool(pool), prefix=prefix, owns_client=True)

    @property
    def prefix(self) -> str:
        return self._prefix

    def _keys(self, windows: Sequence[WindowSpec]) -> list[str]:
        return [self._prefix + w.key for w in windows]

    async def acquire(
        self, windows: Sequence[WindowSpec], costs: Sequence[float], now: float
    ) -> AcquireResult:
        if not windows:
            return AcquireResult(True, [])
        reply = await self._reserve(keys=self._keys(windows), args=_script_args(windows, costs, now))
        return AcquireResult(int(reply[0]) == 1, [float(level) for level in reply[1:]])

    async def adjust(self, windows: Sequence[WindowSpec], deltas: Sequence[float], now: float) -> list[float]:
        if not windows:
            return []
        reply = await self._settle(keys=self._keys(windows), args=_script_args(windows, deltas, now))
        return [float(level) for level in reply]

    async def levels(self, windows: Sequence[WindowSpec], now: float) -> list[float]:
        if not windows:
            return []
        async with self._client.pipeline(transaction=True) as pipe:
            for key in self._keys(windows):
                pipe.hmget(key, "l", "t")
            states = await pipe.execute()
        return [
            drained(float(level), float(updated_at), now, w.rate) if level is not None else 0.0
            for w, (level, updated_at) in zip(windows, states, strict=True)
        ]

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
