"""Authenticator: Bearer parsing, GroqCloud's 401s, and the TTL cache that lets CLI revocation land fast."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from tests.unit.store_backends import fresh_store
from tiergate.auth import Authenticator, Principal, hash_key
from tiergate.clock import FakeClock
from tiergate.errors import AuthenticationFailed
from tiergate.store import Store, tenancy, write_session
from tiergate.store.models import ApiKey

TTL = 0.5


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with fresh_store("sqlite", tmp_path) as opened:
        yield opened


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def authenticator(store: Store, clock: FakeClock) -> Authenticator:
    return Authenticator(store.sessions, clock, TTL)


@pytest.fixture
def store_reads(store: Store) -> list[int]:
    """Thread ids of every SELECT on api_keys, to count store reads and see where they ran."""
    reads: list[int] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "api_keys" in statement:
            reads.append(threading.get_ident())

    event.listen(store.engine, "before_cursor_execute", record)
    return reads


async def test_valid_key_yields_its_project_and_org(store: Store, authenticator: Authenticator) -> None:
    project = tenancy.create_project(store.sessions, "perf", performance=True)
    key, secret = tenancy.create_key(store.sessions, "perf")
    principal = await authenticator.authenticate(f"Bearer {secret}")
    assert principal == Principal(
        org_id=project.org_id,
        org_name="default",
        project_id=project.id,
        project_name="perf",
        key_id=key.id,
        performance=True,
    )


@pytest.mark.parametrize("header", ["bearer {}", "BEARER {}", "  Bearer   {}  "])
async def test_bearer_scheme_is_case_insensitive(
    store: Store, authenticator: Authenticator, header: str
) -> None:
    _key, secret = tenancy.create_key(store.sessions)
    assert (await authenticator.authenticate(header.format(secret))).project_name == "default"


@pytest.mark.parametrize("header", [None, "", "   "])
async def test_missing_key_is_a_401_saying_a_key_is_required(
    authenticator: Authenticator, header: str | None
) -> None:
    with pytest.raises(AuthenticationFailed, match="API key is required") as caught:
        await authenticator.authenticate(header)
    assert (caught.value.status, caught.value.code) == (401, "invalid_api_key")


@pytest.mark.parametrize("header", ["Bearer gsk_not_a_real_key", "Bearer", "Basic gsk_abc", "gsk_abc"])
async def test_unknown_or_malformed_key_is_invalid_api_key(authenticator: Authenticator, header: str) -> None:
    with pytest.raises(AuthenticationFailed, match=r"^Invalid API Key$") as caught:
        await authenticator.authenticate(header)
    assert caught.value.body()["error"]["type"] == "invalid_request_error"


async def test_revoked_key_works_until_the_ttl_passes_then_is_rejected(
    store: Store, authenticator: Authenticator, clock: FakeClock
) -> None:
    key, secret = tenancy.create_key(store.sessions)
    await authenticator.authenticate(f"Bearer {secret}")
    tenancy.revoke_key(store.sessions, key.id)
    clock.advance(TTL * 0.8)
    assert (await authenticator.authenticate(f"Bearer {secret}")).key_id == key.id  # still cached
    clock.advance(TTL * 0.4)
    with pytest.raises(AuthenticationFailed, match="Invalid API Key"):
        await authenticator.authenticate(f"Bearer {secret}")


async def test_unknown_key_stays_rejected_until_the_ttl_passes(
    store: Store, authenticator: Authenticator, clock: FakeClock
) -> None:
    secret = "gsk_made_up_then_created"
    with pytest.raises(AuthenticationFailed):
        await authenticator.authenticate(f"Bearer {secret}")
    project = tenancy.get_project_by_name(store.sessions, "default")
    with write_session(store.sessions) as session:
        session.add(
            ApiKey(
                id="key_manual",
                project_id=project.id,
                prefix="gsk_ma…ated",
                key_hash=hash_key(secret),
                created_at=0.0,
            )
        )
    with pytest.raises(AuthenticationFailed):
        await authenticator.authenticate(f"Bearer {secret}")  # the miss is cached
    clock.advance(TTL + 0.01)
    assert (await authenticator.authenticate(f"Bearer {secret}")).key_id == "key_manual"


async def test_repeated_requests_read_the_store_once_per_ttl_off_the_event_loop(
    store: Store, authenticator: Authenticator, clock: FakeClock, store_reads: list[int]
) -> None:
    _key, secret = tenancy.create_key(store.sessions)
    store_reads.clear()
    for _ in range(50):
        await authenticator.authenticate(f"Bearer {secret}")
    assert len(store_reads) == 1
    assert store_reads[0] != threading.get_ident()
    clock.advance(TTL)
    await authenticator.authenticate(f"Bearer {secret}")
    assert len(store_reads) == 2


async def test_concurrent_requests_with_a_cold_cache_share_one_store_read(
    store: Store, authenticator: Authenticator, store_reads: list[int]
) -> None:
    _key, secret = tenancy.create_key(store.sessions)
    store_reads.clear()
    principals = await asyncio.gather(*(authenticator.authenticate(f"Bearer {secret}") for _ in range(20)))
    assert len({p.key_id for p in principals}) == 1
    assert len(store_reads) == 1


async def test_a_flood_of_random_keys_cannot_grow_the_cache_without_bound(
    store: Store, clock: FakeClock
) -> None:
    authenticator = Authenticator(store.sessions, clock, TTL, max_cached_keys=8)
    for i in range(40):
        with pytest.raises(AuthenticationFailed):
            await authenticator.authenticate(f"Bearer gsk_random_{i}")
    assert len(authenticator._cache) <= 8
