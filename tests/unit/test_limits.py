"""RateLimiter without a store backend in question: resolution, errors, defaults, tier fallback.

Store-by-store behaviour (windows, settle, concurrency) lives in test_limit_stores.py.
"""

from __future__ import annotations

import pytest

from tiergate.clock import FakeClock
from tiergate.errors import RateLimited
from tiergate.tiers.defaults import (
    DEFAULT_ON_DEMAND,
    GROQCLOUD_FREE_TIER,
    LimitTable,
    ModelLimits,
    parse_limit,
)
from tiergate.tiers.limit_store import MemoryLimitStore
from tiergate.tiers.limits import (
    Cost,
    Denial,
    LimitSet,
    RateLimiter,
    RequestTooLarge,
    Reservation,
    Scope,
    Unit,
    effective_limits,
    resolve_windows,
)

SCOPE = Scope("org_1", "proj_1", "m", "on_demand")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(MemoryLimitStore(), clock)


# --- LimitSet and resolution --------------------------------------------------------------------


def test_limit_sets_reject_negative_limits() -> None:
    with pytest.raises(ValueError):
        LimitSet(rpm=-1)


def test_a_project_limit_is_capped_by_the_organization_and_unset_units_inherit() -> None:
    org = LimitSet(rpm=100, rpd=1_000, tpm=6_000)
    project = LimitSet(rpm=500, tpm=2_000)
    assert effective_limits(org, project) == LimitSet(rpm=100, rpd=1_000, tpm=2_000)
    assert effective_limits(org, None) == org


def test_scaled_multiplies_every_set_limit() -> None:
    assert LimitSet(rpm=30, tpm=6_000).scaled(10) == LimitSet(rpm=300, tpm=60_000)


def test_a_project_without_custom_limits_has_no_windows_of_its_own() -> None:
    windows = resolve_windows(SCOPE, LimitSet(rpm=100, tpm=6_000), None)
    assert [(w.unit, w.level) for w in windows] == [(Unit.RPM, "organization"), (Unit.TPM, "organization")]


def test_a_project_with_custom_limits_adds_its_windows_before_the_organizations() -> None:
    windows = resolve_windows(SCOPE, LimitSet(rpm=100, tpm=6_000), LimitSet(rpm=80))
    assert [(w.unit, w.level, w.limit) for w in windows] == [
        (Unit.RPM, "project", 80),
        (Unit.RPM, "organization", 100),
        (Unit.TPM, "organization", 6_000),
    ]
    assert len({w.spec.key for w in windows}) == 3


def test_window_keys_share_the_organization_hash_tag_for_redis_cluster() -> None:
    windows = resolve_windows(Scope("org {x}", "p", "meta-llama/x", "flex"), LimitSet(rpm=1), LimitSet(rpm=1))
    for window in windows:
        assert window.spec.key.startswith("{org%20%7Bx%7D}:")
        assert ":meta-llama%2Fx:flex:rpm" in window.spec.key


def test_units_name_their_period_and_groqclouds_wording() -> None:
    assert [u.period for u in Unit] == [60, 86_400, 60, 86_400, 3_600, 86_400]
    assert Unit.ASH.label == "audio seconds per hour (ASH)"
    assert Unit.TPD.label == "tokens per day (TPD)"


def test_chat_cost_reserves_prompt_plus_max_completion_tokens() -> None:
    assert Cost.for_chat(120, 1_024) == Cost(requests=1, tokens=1_144)


# --- errors -------------------------------------------------------------------------------------


async def test_reserve_raises_rate_limited_with_headers_and_retry_after(limiter: RateLimiter) -> None:
    org = LimitSet(rpd=1, tpm=100)
    await limiter.reserve(SCOPE, Cost(tokens=10), org=org)
    with pytest.raises(RateLimited) as caught:
        await limiter.reserve(SCOPE, Cost(tokens=10), org=org)
    error = caught.value
    assert error.type == "requests"
    assert error.retry_after == pytest.approx(86_400)
    assert error.headers == {
        "x-ratelimit-limit-requests": "1",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "24h0m0s",
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "90",
        "x-ratelimit-reset-tokens": "6s",
        "retry-after": "86400",
    }
    assert error.body()["error"]["code"] == "rate_limit_exceeded"


async def test_too_many_audio_seconds_is_413_with_the_audio_unit_named(limiter: RateLimiter) -> None:
    with pytest.raises(RequestTooLarge) as caught:
        await limiter.reserve(SCOPE, Cost(audio_seconds=7_200.5), org=LimitSet(ash=7_200))
    assert "audio seconds per hour (ASH): Limit 7200, Requested 7200.5" in caught.value.message


async def test_a_zero_request_limit_is_a_429_not_a_413(limiter: RateLimiter) -> None:
    with pytest.raises(RateLimited) as caught:
        await limiter.reserve(SCOPE, Cost(), org=LimitSet(rpm=0))
    assert "requests per minute (RPM): Limit 0, Used 0, Requested 1" in caught.value.message


async def test_fractional_usage_is_reported_rounded_up(limiter: RateLimiter, clock: FakeClock) -> None:
    org = LimitSet(rpm=2)
    await limiter.reserve(SCOPE, Cost(), org=org)
    await limiter.reserve(SCOPE, Cost(), org=org)
    clock.advance(10)  # 1/3 of a request has drained: 1.67 used, and 1 more does not fit
    denial = await limiter.try_reserve(SCOPE, Cost(), org=org)
    assert isinstance(denial, Denial)
    assert "Limit 2, Used 2, Requested 1. Please try again in 20s." in denial.message


async def test_a_project_window_is_named_in_the_denial(limiter: RateLimiter) -> None:
    await limiter.reserve(SCOPE, Cost(), org=LimitSet(rpm=10), project=LimitSet(rpm=1))
    denial = await limiter.try_reserve(SCOPE, Cost(), org=LimitSet(rpm=10), project=LimitSet(rpm=1))
    assert isinstance(denial, Denial) and denial.window.level == "project"
    assert "in organization `org_1` project `proj_1` service tier `on_demand`" in denial.message


# --- auto: try tiers in order without raising ---------------------------------------------------


async def test_auto_falls_back_to_flex_when_on_demand_is_exhausted(limiter: RateLimiter) -> None:
    table = LimitTable({"m": ModelLimits(on_demand=LimitSet(rpm=1))})

    async def auto(tiers: tuple[str, ...]) -> Reservation:
        denial: Denial | None = None
        for tier in tiers:
            scope = Scope("org_1", None, "m", tier)
            outcome = await limiter.try_reserve(scope, Cost(), org=table.limits("m", tier))
            if isinstance(outcome, Reservation):
                return outcome
            denial = outcome
        assert denial is not None
        raise denial.to_error()

    assert (await auto(("on_demand", "flex"))).scope.tier == "on_demand"
    assert (await auto(("on_demand", "flex"))).scope.tier == "flex"
    for _ in range(9):
        await auto(("on_demand", "flex"))
    with pytest.raises(RateLimited) as caught:
        await auto(("on_demand", "flex"))
    assert "service tier `flex` on requests per minute (RPM): Limit 10" in caught.value.message


# --- defaults and config ------------------------------------------------------------------------


def test_default_limits_are_generous_enough_for_normal_use() -> None:
    limits = LimitTable().limits("anything", "on_demand")
    assert limits == DEFAULT_ON_DEMAND
    assert limits.rpm is not None and limits.rpm >= 1_000
    assert limits.tpm is not None and limits.tpm >= 1_000_000


def test_flex_is_ten_times_on_demand_and_batch_is_unlimited_by_default() -> None:
    table = LimitTable.from_config({"m": {"rpm": 30, "tpm": "6K"}})
    assert table.limits("m", "flex").rpm == 300
    assert table.limits("m", "flex").tpm == 60_000
    assert table.limits("m", "performance") == table.limits("m", "on_demand")
    assert table.limits("m", "batch") == LimitSet()


def test_config_overrides_tiers_unit_by_unit_and_sets_the_flex_multiplier() -> None:
    table = LimitTable.from_config(
        {
            "*": {"rpm": 100, "flex_multiplier": 5},
            "m": {"tpm": "6K", "flex": {"rpm": 7}, "batch": {"tpd": "5M"}, "performance": {"rpm": "-"}},
        }
    )
    assert table.limits("m", "on_demand").rpm == 100  # from "*"
    assert table.limits("m", "flex") == LimitSet(
        rpm=7, rpd=500_000, tpm=30_000, tpd=500_000_000, ash=1_800_000, asd=18_000_000
    )
    assert table.limits("m", "batch") == LimitSet(tpd=5_000_000)
    assert table.limits("m", "performance").rpm is None
    assert table.limits("unlisted", "on_demand").rpm == 100
    assert table.limits("unlisted", "flex").rpm == 500


def test_model_lookup_ignores_case() -> None:
    table = LimitTable.from_config({"meta-llama/llama-guard-4-12b": {"rpm": 30}})
    assert table.limits("meta-llama/Llama-Guard-4-12B", "on_demand").rpm == 30


def test_config_with_an_unknown_key_is_refused() -> None:
    with pytest.raises(ValueError, match="rmp"):
        LimitTable.from_config({"m": {"rmp": 30}})
    with pytest.raises(ValueError, match="unknown tier"):
        LimitTable().limits("m", "priority")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30, 30),
        ("30", 30),
        ("14.4K", 14_400),
        ("1.2k", 1_200),
        ("1M", 1_000_000),
        ("7_200", 7_200),
        ("-", None),
    ],
)
def test_limits_parse_like_the_spec_table(value: object, expected: int | None) -> None:
    assert parse_limit(value) == expected


@pytest.mark.parametrize("value", ["lots", "-5", True])
def test_unreadable_limits_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        parse_limit(value)


def test_the_groqcloud_free_tier_table_reads_as_the_spec_shows() -> None:
    table = LimitTable.from_config(GROQCLOUD_FREE_TIER)
    assert table.limits("llama-3.1-8b-instant", "on_demand") == LimitSet(
        rpm=30, rpd=14_400, tpm=6_000, tpd=500_000
    )
    assert table.limits("whisper-large-v3", "on_demand") == LimitSet(rpm=20, rpd=2_000, ash=7_200, asd=28_800)
    assert table.limits("groq/compound", "flex") == LimitSet(rpm=300, rpd=2_500, tpm=700_000)
