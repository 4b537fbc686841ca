"""Contract suite: the in-process and Redis limit stores behave the same under RateLimiter.

Every test runs against both stores with a FakeClock (Redis gets the fake time as a script
argument). The Redis runs use the local server (TIERGATE_TEST_REDIS_URL, default
redis://127.0.0.1:6379/0) under a random key prefix that is deleted afterwards; deselect them
with `-m "not redis"` where no Redis runs.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tiergate.clock import FakeClock
from tiergate.errors import RateLimited
from tiergate.tiers.headers import format_reset
from tiergate.tiers.limit_store import LimitStore, MemoryLimitStore, WindowSpec
from tiergate.tiers.limits import (
    Cost,
    Denial,
    LimitSet,
    RateLimiter,
    RequestTooLarge,
    Reservation,
    Scope,
    Unit,
)
from tiergate.tiers.redis_store import RedisLimitStore

REDIS_URL = os.environ.get("TIERGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SRC = Path(__file__).resolve().parents[2] / "src"
ORG = "org_1"
SCOPE = Scope(ORG, None, "llama-3.1-8b-instant", "on_demand")


async def _delete_prefix(store: RedisLimitStore) -> None:
    client = store._client
    keys = [key async for key in client.scan_iter(match=store.prefix + "*", count=500)]
    if keys:
        await client.delete(*keys)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[LimitStore]:
    if request.param == "memory":
        yield MemoryLimitStore()
        return
    redis_store = RedisLimitStore.from_url(REDIS_URL, prefix=f"tiergate-test:{uuid.uuid4().hex}:")
    try:
        yield redis_store
    finally:
        await _delete_prefix(redis_store)
        await redis_store.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(store: LimitStore, clock: FakeClock) -> RateLimiter:
    return RateLimiter(store, clock)


async def admitted(limiter: RateLimiter, n: int, cost: Cost, org: LimitSet, **kw: object) -> int:
    outcomes = [
        await limiter.try_reserve(kw.get("scope", SCOPE), cost, org=org, project=kw.get("project"))
        for _ in range(n)
    ]
    return sum(isinstance(o, Reservation) for o in outcomes)


# --- the store primitive ------------------------------------------------------------------------


async def test_acquire_commits_to_every_window_or_to_none(store: LimitStore) -> None:
    roomy, full = WindowSpec("a", 5, 60), WindowSpec("b", 1, 60)
    assert (await store.acquire([full], [1], 100.0)).admitted
    refused = await store.acquire([roomy, full], [1, 1], 100.0)
    assert not refused.admitted
    assert refused.levels == [0.0, 1.0]
    assert await store.levels([roomy, full], 100.0) == [0.0, 1.0]


async def test_levels_drain_at_limit_per_period(store: LimitStore) -> None:
    window = WindowSpec("w", 60, 60)
    assert (await store.acquire([window], [60], 100.0)).levels == [60.0]
    assert await store.levels([window], 130.0) == [pytest.approx(30.0)]
    assert await store.levels([window], 500.0) == [0.0]


async def test_adjust_gives_back_but_never_below_zero(store: LimitStore) -> None:
    window = WindowSpec("w", 100, 60)
    await store.acquire([window], [80], 100.0)
    assert await store.adjust([window], [-30], 100.0) == [pytest.approx(50.0)]
    assert await store.adjust([window], [-500], 100.0) == [0.0]
    assert await store.adjust([window], [120], 100.0) == [pytest.approx(120.0)]


# --- every window -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "cost", "fill"),
    [
        (Unit.RPM, Cost(), 2),
        (Unit.RPD, Cost(), 2),
        (Unit.TPM, Cost(tokens=500), 4),
        (Unit.TPD, Cost(tokens=500), 4),
        (Unit.ASH, Cost(audio_seconds=30.0), 4),
        (Unit.ASD, Cost(audio_seconds=30.0), 4),
    ],
)
async def test_each_window_refuses_when_full_and_frees_after_retry_after(
    limiter: RateLimiter, clock: FakeClock, unit: Unit, cost: Cost, fill: int
) -> None:
    org = LimitSet(**{unit.value: int(fill * cost.amount(unit.measure))})
    assert await admitted(limiter, fill, cost, org) == fill
    denial = await limiter.try_reserve(SCOPE, cost, org=org)
    assert isinstance(denial, Denial)
    assert denial.unit is unit
    assert denial.kind == ("requests" if unit.measure == "requests" else "tokens")
    # A bucket holding `fill` requests' worth frees one request's worth every period/fill seconds.
    wait = unit.period / fill
    assert denial.retry_after == pytest.approx(wait)
    assert f"on {unit.label}: Limit " in denial.message
    clock.advance(wait - 0.5)
    assert isinstance(await limiter.try_reserve(SCOPE, cost, org=org), Denial)
    clock.advance(0.5)
    assert isinstance(await limiter.try_reserve(SCOPE, cost, org=org), Reservation)


async def test_rpm_denial_reads_like_groqcloud(limiter: RateLimiter, clock: FakeClock) -> None:
    org = LimitSet(rpm=2)
    await admitted(limiter, 2, Cost(), org)
    clock.advance(0.5)
    with pytest.raises(RateLimited) as caught:
        await limiter.reserve(SCOPE, Cost(), org=org)
    error = caught.value
    assert error.status == 429
    assert error.type == "requests"
    assert error.code == "rate_limit_exceeded"
    assert error.retry_after == pytest.approx(29.5)
    assert error.message == (
        "Rate limit reached for model `llama-3.1-8b-instant` in organization `org_1` "
        "service tier `on_demand` on requests per minute (RPM): Limit 2, Used 2, Requested 1. "
        "Please try again in 29.5s."
    )
    assert error.headers["retry-after"] == "30"


# --- headers ------------------------------------------------------------------------------------


async def test_headers_report_rpd_and_tpm_with_time_until_full_refill(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    org = LimitSet(rpm=1_000, rpd=14_400, tpm=18_000)
    for _ in range(29):
        await limiter.reserve(SCOPE, Cost(tokens=0), org=org)
    last = await limiter.reserve(SCOPE, Cost(tokens=2_298), org=org)
    # 14,400 per day frees one request every 6 s: 30 used -> 180 s to refill; TPM frees 300/s.
    assert last.headers == {
        "x-ratelimit-limit-requests": "14400",
        "x-ratelimit-remaining-requests": "14370",
        "x-ratelimit-reset-requests": "3m0s",
        "x-ratelimit-limit-tokens": "18000",
        "x-ratelimit-remaining-tokens": "15702",
        "x-ratelimit-reset-tokens": "7.66s",
    }
    clock.advance(0.44)
    snapshot = await limiter.snapshot(SCOPE, org=org)
    assert snapshot.requests is not None and snapshot.tokens is not None
    assert snapshot.requests.remaining == 14_370
    assert snapshot.tokens.remaining == 15_834
    assert format_reset(snapshot.requests.reset) == "2m59.56s"
    assert format_reset(snapshot.tokens.reset) == "7.22s"


async def test_headers_report_the_tighter_of_project_and_organization(limiter: RateLimiter) -> None:
    org, project = LimitSet(rpd=1_000, tpm=10_000), LimitSet(rpd=100)
    scope = Scope(ORG, "proj_a", "m", "on_demand")
    other = Scope(ORG, "proj_b", "m", "on_demand")
    for _ in range(950):
        await limiter.reserve(other, Cost(), org=org)
    reservation = await limiter.reserve(scope, Cost(tokens=10), org=org, project=project)
    headers = reservation.headers
    assert headers["x-ratelimit-limit-requests"] == "100"
    assert headers["x-ratelimit-remaining-requests"] == "49"  # the org has 49 left, the project 99
    assert headers["x-ratelimit-limit-tokens"] == "10000"
    assert headers["x-ratelimit-remaining-tokens"] == "9990"


async def test_snapshot_before_any_request_shows_full_windows(limiter: RateLimiter) -> None:
    snapshot = await limiter.snapshot(SCOPE, org=LimitSet(rpd=7_000, tpm=6_000))
    assert snapshot.requests is not None and snapshot.tokens is not None
    assert (snapshot.requests.limit, snapshot.requests.remaining, snapshot.requests.reset) == (
        7_000,
        7_000,
        0,
    )
    assert (snapshot.tokens.limit, snapshot.tokens.remaining, snapshot.tokens.reset) == (6_000, 6_000, 0)


# --- settle -------------------------------------------------------------------------------------


async def test_settle_gives_back_the_unused_part_of_max_completion_tokens(limiter: RateLimiter) -> None:
    org = LimitSet(tpm=1_000)
    reservation = await limiter.reserve(SCOPE, Cost.for_chat(100, 700), org=org)
    assert reservation.headers["x-ratelimit-remaining-tokens"] == "200"
    assert isinstance(await limiter.try_reserve(SCOPE, Cost(tokens=300), org=org), Denial)
    snapshot = await limiter.settle(reservation, tokens=150)
    assert snapshot.tokens is not None and snapshot.tokens.remaining == 850
    assert isinstance(await limiter.try_reserve(SCOPE, Cost(tokens=300), org=org), Reservation)


async def test_settle_after_the_window_drained_gives_back_only_what_is_still_held(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    org = LimitSet(tpm=6_000)  # drains 100 tokens per second
    reservation = await limiter.reserve(SCOPE, Cost(tokens=1_000), org=org)
    clock.advance(5)  # 500 of the 1,000 held have drained
    snapshot = await limiter.settle(reservation, tokens=200)
    # 200 tokens used at t=0 would have drained by t=2: nothing is held any more.
    assert snapshot.tokens is not None and snapshot.tokens.remaining == 6_000


async def test_settle_charges_usage_beyond_the_reservation(limiter: RateLimiter) -> None:
    org = LimitSet(tpm=1_000)
    reservation = await limiter.reserve(SCOPE, Cost(tokens=100), org=org)
    snapshot = await limiter.settle(reservation, tokens=1_200)
    assert snapshot.tokens is not None and snapshot.tokens.remaining == 0
    denial = await limiter.try_reserve(SCOPE, Cost(tokens=1), org=org)
    assert isinstance(denial, Denial) and denial.retry_after == pytest.approx((1_200 + 1 - 1_000) * 0.06)


async def test_settle_keeps_the_request_counted_and_is_a_no_op_the_second_time(limiter: RateLimiter) -> None:
    org = LimitSet(rpm=1, tpm=1_000)
    reservation = await limiter.reserve(SCOPE, Cost(tokens=500), org=org)
    await limiter.settle(reservation, tokens=100)
    again = await limiter.settle(reservation, tokens=0)
    assert again.tokens is not None and again.tokens.remaining == 900
    denial = await limiter.try_reserve(SCOPE, Cost(tokens=1), org=org)
    assert isinstance(denial, Denial) and denial.unit is Unit.RPM


async def test_settle_replaces_reserved_audio_seconds(limiter: RateLimiter) -> None:
    org = LimitSet(ash=100)
    reservation = await limiter.reserve(SCOPE, Cost(audio_seconds=90), org=org)
    await limiter.settle(reservation, audio_seconds=12.5)
    assert isinstance(await limiter.try_reserve(SCOPE, Cost(audio_seconds=87.5), org=org), Reservation)


async def test_release_gives_back_the_request_and_its_tokens(limiter: RateLimiter) -> None:
    org = LimitSet(rpm=1, tpm=100)
    reservation = await limiter.reserve(SCOPE, Cost(tokens=100), org=org)
    await limiter.release(reservation)
    assert isinstance(await limiter.try_reserve(SCOPE, Cost(tokens=100), org=org), Reservation)


# --- projects share the organization's quota ----------------------------------------------------


async def test_projects_example_from_the_docs(limiter: RateLimiter) -> None:
    """org 100 RPM; prod 80; staging 30; dev inherits. prod 80 + staging 15 leaves dev 5."""
    org = LimitSet(rpm=100)
    prod, staging, dev = (Scope(ORG, p, "m", "on_demand") for p in ("prod", "staging", "dev"))
    assert await admitted(limiter, 81, Cost(), org, scope=prod, project=LimitSet(rpm=80)) == 80
    assert await admitted(limiter, 15, Cost(), org, scope=staging, project=LimitSet(rpm=30)) == 15
    assert await admitted(limiter, 10, Cost(), org, scope=dev) == 5

    prod_denial = await limiter.try_reserve(prod, Cost(), org=org, project=LimitSet(rpm=80))
    assert isinstance(prod_denial, Denial) and prod_denial.window.level == "project"
    assert "project `prod`" in prod_denial.message
    # staging is under its own 30 but the organization's 100 are spent.
    staging_denial = await limiter.try_reserve(staging, Cost(), org=org, project=LimitSet(rpm=30))
    assert isinstance(staging_denial, Denial) and staging_denial.window.level == "organization"
    assert "project" not in staging_denial.message


async def test_projects_pushing_to_their_caps_never_exceed_the_organization(limiter: RateLimiter) -> None:
    org = LimitSet(rpm=100)
    prod, staging = Scope(ORG, "prod", "m", "on_demand"), Scope(ORG, "staging", "m", "on_demand")
    outcomes = await asyncio.gather(
        *(limiter.try_reserve(prod, Cost(), org=org, project=LimitSet(rpm=80)) for _ in range(80)),
        *(limiter.try_reserve(staging, Cost(), org=org, project=LimitSet(rpm=30)) for _ in range(30)),
    )
    assert sum(isinstance(o, Reservation) for o in outcomes) == 100


async def test_a_project_limit_above_the_organization_is_capped(limiter: RateLimiter) -> None:
    scope = Scope(ORG, "greedy", "m", "on_demand")
    assert await admitted(limiter, 5, Cost(), LimitSet(rpm=3), scope=scope, project=LimitSet(rpm=50)) == 3


# --- which window decides -----------------------------------------------------------------------


async def test_rpm_refuses_before_tpm_when_requests_run_out_first(limiter: RateLimiter) -> None:
    """The docs' example: RPM 50 and TPM 200K; 50 requests of 100 tokens hit the RPM limit."""
    org = LimitSet(rpm=50, tpm=200_000)
    assert await admitted(limiter, 50, Cost(tokens=100), org) == 50
    denial = await limiter.try_reserve(SCOPE, Cost(tokens=100), org=org)
    assert isinstance(denial, Denial) and denial.unit is Unit.RPM and denial.kind == "requests"


async def test_tpm_refuses_when_tokens_run_out_first(limiter: RateLimiter) -> None:
    org = LimitSet(rpm=50, tpm=1_000)
    assert await admitted(limiter, 3, Cost(tokens=400), org) == 2
    denial = await limiter.try_reserve(SCOPE, Cost(tokens=400), org=org)
    assert isinstance(denial, Denial) and denial.unit is Unit.TPM and denial.kind == "tokens"
    assert "Limit 1000, Used 800, Requested 400" in denial.message


async def test_when_several_windows_are_full_the_one_freeing_last_decides(limiter: RateLimiter) -> None:
    org = LimitSet(rpm=2, rpd=2)
    await admitted(limiter, 2, Cost(), org)
    denial = await limiter.try_reserve(SCOPE, Cost(), org=org)
    assert isinstance(denial, Denial) and denial.unit is Unit.RPD
    assert denial.retry_after == pytest.approx(43_200)


async def test_a_refused_request_reserves_nothing(limiter: RateLimiter) -> None:
    org = LimitSet(rpm=10, tpm=1_000)
    await limiter.reserve(SCOPE, Cost(tokens=900), org=org)
    for _ in range(5):
        assert isinstance(await limiter.try_reserve(SCOPE, Cost(tokens=200), org=org), Denial)
    assert await admitted(limiter, 9, Cost(tokens=10), org) == 9


# --- request too large --------------------------------------------------------------------------


async def test_a_request_above_the_limit_outright_is_413_and_reserves_nothing(limiter: RateLimiter) -> None:
    org = LimitSet(rpm=10, tpm=6_000)
    denial = await limiter.try_reserve(SCOPE, Cost.for_chat(1_000, 8_192), org=org)
    assert isinstance(denial, Denial) and denial.too_large
    error = denial.to_error()
    assert isinstance(error, RequestTooLarge)
    assert (error.status, error.type, error.code) == (413, "tokens", "rate_limit_exceeded")
    assert error.message.startswith("Request too large for model `llama-3.1-8b-instant`")
    assert "tokens per minute (TPM): Limit 6000, Requested 9192" in error.message
    assert "retry-after" not in error.headers
    assert error.headers["x-ratelimit-remaining-tokens"] == "6000"
    with pytest.raises(RequestTooLarge):
        await limiter.reserve(SCOPE, Cost(tokens=6_001), org=org)
    assert await admitted(limiter, 10, Cost(tokens=1), org) == 10


# --- separate counters --------------------------------------------------------------------------


async def test_tiers_and_models_have_their_own_counters(limiter: RateLimiter) -> None:
    org = LimitSet(rpm=1)
    await limiter.reserve(SCOPE, Cost(), org=org)
    assert isinstance(await limiter.try_reserve(SCOPE, Cost(), org=org), Denial)
    for other in (
        Scope(ORG, None, SCOPE.model, "flex"),
        Scope(ORG, None, "other-model", "on_demand"),
        Scope("org_2", None, SCOPE.model, "on_demand"),
    ):
        assert isinstance(await limiter.try_reserve(other, Cost(), org=org), Reservation)


async def test_ids_with_separators_do_not_collide(limiter: RateLimiter) -> None:
    org = LimitSet(rpm=1)
    await limiter.reserve(Scope(ORG, "a:b", "c", "on_demand"), Cost(), org=org, project=LimitSet(rpm=1))
    other = Scope(ORG, "a", "b:c", "on_demand")
    assert isinstance(
        await limiter.try_reserve(other, Cost(), org=LimitSet(rpm=5), project=LimitSet(rpm=1)), Reservation
    )


# --- concurrency --------------------------------------------------------------------------------


async def test_100_concurrent_reservations_against_rpm_5_admit_exactly_5(limiter: RateLimiter) -> None:
    outcomes = await asyncio.gather(
        *(limiter.try_reserve(SCOPE, Cost(), org=LimitSet(rpm=5)) for _ in range(100))
    )
    assert sum(isinstance(o, Reservation) for o in outcomes) == 5


@pytest.mark.redis
async def test_two_redis_connections_share_one_limit() -> None:
    prefix = f"tiergate-test:{uuid.uuid4().hex}:"
    stores = [RedisLimitStore.from_url(REDIS_URL, prefix=prefix) for _ in range(2)]
    clock = FakeClock()
    try:
        limiters = [RateLimiter(s, clock) for s in stores]
        outcomes = await asyncio.gather(
            *(limiters[i % 2].try_reserve(SCOPE, Cost(), org=LimitSet(rpm=5)) for i in range(100))
        )
        assert sum(isinstance(o, Reservation) for o in outcomes) == 5
    finally:
        await _delete_prefix(stores[0])
        for s in stores:
            await s.aclose()


_CHILD = """
import asyncio, sys, time
from tiergate.clock import FakeClock
from tiergate.tiers.limits import Cost, LimitSet, RateLimiter, Reservation, Scope
from tiergate.tiers.redis_store import RedisLimitStore

async def main(url, prefix, start_at, n):
    store = RedisLimitStore.from_url(url, prefix=prefix)
    await store._client.ping()
    limiter = RateLimiter(store, FakeClock())
    await asyncio.sleep(max(0.0, start_at - time.time()))
    scope = Scope("org_1", None, "llama-3.1-8b-instant", "on_demand")
    tries = [limiter.try_reserve(scope, Cost(), org=LimitSet(rpm=5)) for _ in range(n)]
    outcomes = await asyncio.gather(*tries)
    print(sum(isinstance(o, Reservation) for o in outcomes))
    await store.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
"""


@pytest.mark.redis
async def test_two_processes_sharing_redis_admit_exactly_the_limit() -> None:
    prefix = f"tiergate-test:{uuid.uuid4().hex}:"
    start_at = time.time() + 2.0  # both children fire together, after their imports
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            REDIS_URL,
            prefix,
            repr(start_at),
            "50",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        results = [await child.communicate() for child in children]
    finally:
        cleanup = RedisLimitStore.from_url(REDIS_URL, prefix=prefix)
        await _delete_prefix(cleanup)
        await cleanup.aclose()
    for child, (_, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err.decode()
    assert sum(int(out) for out, _ in results) == 5
