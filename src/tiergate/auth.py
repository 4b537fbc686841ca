"""API keys on the request path: `Authorization: Bearer gsk_...` -> Principal.

Lookups are cached for a short TTL (Settings.cache_ttl, 0.5 s), hits and misses alike, so a
busy server reads the store about once per key per TTL instead of once per request, while a
key revoked from the CLI in another process stops working within that TTL. Store reads run
in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from tiergate.clock import Clock
from tiergate.errors import AuthenticationFailed
from tiergate.store.tenancy import ActiveKey, find_active_key_by_hash, hash_key

__all__ = ["Authenticator", "Principal", "hash_key"]

INVALID_KEY_MESSAGE = "Invalid API Key"
MISSING_KEY_MESSAGE = (
    "An API key is required: send it in the Authorization header as `Authorization: Bearer <GROQ_API_KEY>`."
)
# Bounds memory when a client sprays random keys (each would leave a negative entry).
MAX_CACHED_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, its project and organization, and the project's entitlements."""

    org_id: str
    org_name: str
    project_id: str
    project_name: str
    key_id: str
    performance: bool


def _principal(key: ActiveKey) -> Principal:
    return Principal(
        org_id=key.org_id,
        org_name=key.org_name,
        project_id=key.project_id,
        project_name=key.project_name,
        key_id=key.key_id,
        performance=key.performance,
    )


def _bearer_secret(authorization_header: str | None) -> str:
    """The key from an Authorization header; the scheme is case-insensitive ("bearer" appears in the docs)."""
    if authorization_header is None or not authorization_header.strip():
        raise AuthenticationFailed(MISSING_KEY_MESSAGE)
    scheme, _, secret = authorization_header.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise AuthenticationFailed(INVALID_KEY_MESSAGE)
    return secret


class Authenticator:
    """Turns Authorization headers into Principals, with a TTL cache in front of the store."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        clock: Clock,
        ttl_seconds: float,
        *,
        max_cached_keys: int = MAX_CACHED_KEYS,
    ) -> None:
        self._sessions = session_factory
        self._clock = clock
        self._ttl = ttl_seconds
        self._max_cached = max_cached_keys
        # key hash -> (principal or None for "no such active key", monotonic expiry)
        self._cache: dict[str, tuple[Principal | None, float]] = {}
        # One store read per key at a time: concurrent misses for the same key share it.
        self._inflight: dict[str, asyncio.Future[ActiveKey | None]] = {}

    async def authenticate(self, authorization_header: str | None) -> Principal:
        """The caller's Principal; raises AuthenticationFailed for a missing, unknown or revoked key."""
        key_hash = hash_key(_bearer_secret(authorization_header))
        cached = self._cache.get(key_hash)
        if cached is not None and cached[1] > self._clock.monotonic():
            principal = cached[0]
        else:
            principal = await self._lookup(key_hash)
        if principal is None:
            raise AuthenticationFailed(INVALID_KEY_MESSAGE)
        return principal

    def clear_cache(self) -> None:
        """Forget every cached lookup (for a same-process change that must apply at once)."""
        self._cache.clear()

    async def _lookup(self, key_hash: str) -> Principal | None:
        future = self._inflight.get(key_hash)
        if future is None:
            # The entry expires TTL after the read *started*, so a revocation committed
            # during a slow read is still seen within the TTL.
            started = self._clock.monotonic()
            future = asyncio.ensure_future(
                asyncio.to_thread(find_active_key_by_hash, self._sessions, key_hash)
            )
            self._inflight[key_hash] = future
            future.add_done_callback(lambda done: self._remember(key_hash, done, started))
        # Shielded: one caller giving up (client disconnect) must not cancel the shared read.
        active = await asyncio.shield(future)
        return None if active is None else _principal(active)

    def _remember(self, key_hash: str, done: asyncio.Future[ActiveKey | None], started: float) -> None:
        self._inflight.pop(key_hash, None)
        if done.cancelled() or done.exception() is not None:
            return  # a store failure is not cached; the next request tries again
        if len(self._cache) >= self._max_cached:
            self._evict()
        active = done.result()
        self._cache[key_hash] = (None if active is None else _principal(active), started + self._ttl)

    def _evict(self) -> None:
        now = self._clock.monotonic()
        for key_hash in [h for h, (_, expires) in self._cache.items() if expires <= now]:
            del self._cache[key_hash]
        # Still full of live entries: drop the oldest half (dicts keep insertion order).
        if len(self._cache) >= self._max_cached:
            for key_hash in list(self._cache)[: len(self._cache) // 2 + 1]:
                del self._cache[key_hash]
