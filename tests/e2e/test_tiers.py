"""Service tiers and rate limits on live one-slot servers, through the official groq SDK.

Three kinds of server, each started once per module (a start costs a model load):
    busy      --parallel 1, default (generous) limits: queueing, flex 498, performance priority,
              project limits set live from the CLI, metrics
    limited   --parallel 1 and a TOML `[limits]` table with RPM 2: the organization's 429, `auto`
    replicas  two processes on one data dir and one Redis, RPM 5 between them

A slot is held by a streaming request asking for thousands of tokens: its first chunk (the role
chunk) is sent only once the request holds the slot, and closing the stream frees it. Waits poll
/metrics (a request is counted as queued just before it enters the scheduler's queue) instead of
sleeping.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import groq
import httpx
import pytest
import redis
from groq.types.chat import ChatCompletion
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LiveServer, start_server

MODEL = "qwen2.5-coder-0.5b-instruct"
CHAT = "/openai/v1/chat/completions"
HI = [{"role": "user", "content": "Say hi."}]
COUNT = [{"role": "user", "content": "Count from 1 to 10000, one number per line, no code."}]
# Asked alone, the model stops counting at 100 (~300 tokens); with the count begun for it, it goes
# on well past 200, far longer than any test holds the slot.
ENDLESS = [*COUNT, {"role": "assistant", "content": "".join(f"{n}\n" for n in range(1, 121))}]
REDIS_URL = os.environ.get("TIERGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)
# GroqCloud's reset format: `2m59.56s`, `7.66s`, `1h2m3s`.
RESET = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(\d+(?:\.\d{1,2})?)s$")
RATE_LIMITED = re.compile(
    r"^Rate limit reached for model `(?P<model>[^`]+)` in organization `(?P<org>org_[^`]+)`"
    r"(?: project `(?P<project>[^`]+)`)? service tier `(?P<tier>[a-z_]+)` on (?P<unit>[a-z ]+ \(\w+\)): "
    r"Limit (?P<limit>\d+), Used (?P<used>\d+), Requested (?P<requested>\d+)\. "
    r"Please try again in (?P<wait>\S+)\.$"
)


# -- servers ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def busy(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("busy"), "--parallel", "1")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def limited(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("limited")
    config = data_dir / "tiergate.toml"
    config.write_text(f'[limits."{MODEL}"]\nrpm = 2\nrpd = 1000\ntpm = "100K"\n')
    live = start_server(data_dir, "--parallel", "1", "--config", str(config))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def perf_key(busy: LiveServer) -> str:
    busy.cli("projects", "create", "perf", "--performance")
    return busy.new_key("perf")


# -- helpers ---------------------------------------------------------------------------------------


def client(server: LiveServer, key: str | None = None) -> groq.Groq:
    return groq.Groq(base_url=server.root, api_key=key or server.api_key, max_retries=0, timeout=120)


def chat(server: LiveServer, key: str | None = None, **kw: Any) -> ChatCompletion:
    args: dict[str, Any] = {"model": MODEL, "messages": HI, "max_tokens": 2, **kw}
    return client(server, key).chat.completions.create(**args)


def raw_chat(server: LiveServer, key: str | None = None, **kw: Any) -> httpx.Response:
    """A chat request over plain httpx, for statuses the SDK has no class for (498) and raw headers."""
    body = {"model": MODEL, "messages": HI, "max_tokens": 2, **kw}
    headers = {"authorization": f"Bearer {key or server.api_key}"}
    return httpx.post(server.root + CHAT, json=body, headers=headers, timeout=120)


def new_project(server: LiveServer, name: str, *flags: str) -> str:
    """Create a project and return an API key for it."""
    server.cli("projects", "create", name, *flags)
    return server.new_key(name)


def error_of(exc: groq.APIStatusError) -> dict[str, Any]:
    """The `error` object of GroqCloud's envelope (the groq SDK keeps the whole body)."""
    assert isinstance(exc.body, dict), exc.body
    return exc.body["error"]


def seconds(reset: str) -> float:
    match = RESET.match(reset)
    assert match, f"reset {reset!r} is not in GroqCloud's format"
    hours, minutes, secs = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(secs)


def assert_rate_limit_headers(headers: httpx.Headers) -> None:
    missing = [name for name in HEADERS if name not in headers]
    assert not missing, f"missing {missing} in {dict(headers)}"
    for name in HEADERS:
        if "reset" in name:
            seconds(headers[name])
        else:
            assert headers[name].isdigit(), (name, headers[name])


def metrics(server: LiveServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(server.root + "/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(server: LiveServer, name: str, **labels: str) -> float:
    return metrics(server).get((name, frozenset(labels.items())), 0.0)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> float:
    """Poll until `condition()` holds; returns the monotonic time it was first seen true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def wait_queued(server: LiveServer, tier: str, count: float) -> float:
    return wait_for(
        lambda: metric(server, "tiergate_tier_queued_total", tier=tier) >= count, f"{count} {tier} queued"
    )


def wait_idle(server: LiveServer) -> None:
    """A closed stream frees its slot asynchronously; the next test needs it free."""
    wait_for(
        lambda: sum(v for (name, _), v in metrics(server).items() if name == "tiergate_slots_busy") == 0,
        "every slot to be free",
    )


@contextmanager
def slot_held(server: LiveServer) -> Iterator[None]:
    """Hold the server's only slot with a long on_demand generation until the block exits."""
    wait_idle(server)
    stream = client(server).chat.completions.create(
        model=MODEL, messages=ENDLESS, max_tokens=4000, temperature=0, stream=True
    )
    try:
        first = next(iter(stream))
        assert first.choices[0].delta.role == "assistant"
        assert metric(server, "tiergate_slots_busy", model=MODEL, tier="on_demand") == 1
        admitted = admissions(server)
        yield
        # Nobody got the slot meanwhile, so the long generation still held it (had the model
        # stopped by itself, a queued request would have been admitted and the test proves nothing).
        assert admissions(server) == admitted, "the slot-holding generation ended early"
    finally:
        stream.close()


def admissions(server: LiveServer) -> float:
    return sum(v for (name, _), v in metrics(server).items() if name == "tiergate_tier_admitted_total")


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as executor:
        yield executor


def timed(call: Callable[[], Any]) -> Callable[[], tuple[Any, float]]:
    def run() -> tuple[Any, float]:
        result = call()
        return result, time.monotonic()

    return run


# -- rate-limit headers ------------------------------------------------------------------------------


def test_rate_limit_headers_count_down_request_by_request(busy: LiveServer) -> None:
    key = new_project(busy, "headers")
    # Project limits far below the organization's: the headers report the tighter of the two.
    busy.cli("limits", "set", "--project", "headers", "--model", MODEL, "--rpd", "1000", "--tpm", "600")
    api = client(busy, key).chat.completions
    started = time.monotonic()
    seen: list[tuple[httpx.Headers, ChatCompletion]] = []
    for max_tokens in (48, 4, 4):
        raw = api.with_raw_response.create(model=MODEL, messages=HI, max_tokens=max_tokens)
        seen.append((raw.headers, raw.parse()))
    elapsed = time.monotonic() - started

    for headers, completion in seen:
        assert_rate_limit_headers(headers)
        assert headers["x-ratelimit-limit-requests"] == "1000"
        assert headers["x-ratelimit-limit-tokens"] == "600"
        assert headers["x-request-id"] == completion.x_groq.id
    # One request less each time (a 1,000-a-day bucket refills one request per 86.4 s).
    assert [int(h["x-ratelimit-remaining-requests"]) for h, _ in seen] == [999, 998, 997]
    assert seconds(seen[2][0]["x-ratelimit-reset-requests"]) == pytest.approx(3 * 86.4, abs=elapsed + 0.1)

    # At admission a request holds prompt + max_tokens; when done it keeps only what it used.
    (first_headers, first), (second_headers, second) = seen[0], seen[1]
    assert int(first_headers["x-ratelimit-remaining-tokens"]) == 600 - first.usage.prompt_tokens - 48
    floor = 600 - first.usage.total_tokens - (second.usage.prompt_tokens + 4)
    refilled = math.ceil(600 / 60 * elapsed)
    assert floor <= int(second_headers["x-ratelimit-remaining-tokens"]) <= floor + refilled
    assert seconds(second_headers["x-ratelimit-reset-tokens"]) > 0


def test_rate_limit_headers_are_sent_on_a_400(busy: LiveServer) -> None:
    response = raw_chat(busy, max_tokens=100_000)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "max_tokens"
    assert_rate_limit_headers(response.headers)


def test_rate_limit_headers_are_sent_on_a_schema_validation_400(busy: LiveServer) -> None:
    response = raw_chat(busy, temperature=5)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "temperature"
    assert_rate_limit_headers(response.headers)


# -- 429s --------------------------------------------------------------------------------------------


def exhaust_on_demand(server: LiveServer) -> groq.RateLimitError:
    """Spend the RPM 2 on_demand budget (whatever earlier tests left) and return the first 429."""
    for _ in range(3):
        try:
            chat(server, max_tokens=1)
        except groq.RateLimitError as error:
            return error
    raise AssertionError("three on_demand requests passed an RPM 2 limit")


def test_requests_over_rpm_get_429_with_retry_after_and_groqcloud_message(limited: LiveServer) -> None:
    refused = exhaust_on_demand(limited)
    assert refused.status_code == 429
    error = error_of(refused)
    assert error["code"] == "rate_limit_exceeded"
    assert error["type"] == "requests"
    message = RATE_LIMITED.match(error["message"])
    assert message, error["message"]
    assert message["model"] == MODEL
    assert message["project"] is None, "the organization's limit refused it, not a project's"
    assert message["tier"] == "on_demand"
    assert message["unit"] == "requests per minute (RPM)"
    assert (message["limit"], message["used"], message["requested"]) == ("2", "2", "1")
    # A 2-per-minute bucket frees one request every 30 s.
    wait = seconds(message["wait"])
    assert 0 < wait <= 30
    headers = refused.response.headers
    assert int(headers["retry-after"]) == math.ceil(wait)
    assert_rate_limit_headers(headers)
    assert headers["x-ratelimit-limit-requests"] == "1000"  # RPD from the [limits] table
    assert headers["x-ratelimit-limit-tokens"] == "100000"


def test_tokens_over_tpm_get_429_naming_the_tpm_limit(busy: LiveServer) -> None:
    key = new_project(busy, "tokens")
    busy.cli("limits", "set", "--project", "tokens", "--model", MODEL, "--tpm", "300")
    # The first request holds prompt + 200 tokens of the 300 while it runs; the second cannot fit.
    holder = client(busy, key).chat.completions.create(
        model=MODEL, messages=COUNT, max_tokens=200, temperature=0, stream=True
    )
    try:
        next(iter(holder))
        with pytest.raises(groq.RateLimitError) as info:
            chat(busy, key, messages=COUNT, max_tokens=200)
    finally:
        holder.close()
    error = error_of(info.value)
    assert error["code"] == "rate_limit_exceeded"
    assert error["type"] == "tokens"
    message = RATE_LIMITED.match(error["message"])
    assert message, error["message"]
    assert message["unit"] == "tokens per minute (TPM)"
    assert message["project"] is not None and message["project"].startswith("project_")
    used, requested = int(message["used"]), int(message["requested"])
    assert message["limit"] == "300"
    assert 200 < requested <= 300 and used <= requested and used + requested > 300
    headers = info.value.response.headers
    assert int(headers["retry-after"]) == math.ceil(seconds(message["wait"]))
    assert headers["x-ratelimit-limit-tokens"] == "300"
    assert int(headers["x-ratelimit-remaining-tokens"]) < requested


# -- tiers -------------------------------------------------------------------------------------------


def test_auto_falls_back_to_flex_once_on_demand_rpm_is_used_up(limited: LiveServer) -> None:
    exhaust_on_demand(limited)
    raw = client(limited).chat.completions.with_raw_response.create(
        model=MODEL, messages=HI, max_tokens=1, service_tier="auto"
    )
    assert raw.parse().service_tier == "flex"
    # The headers describe the tier that served it: flex has 10x the on_demand limits.
    assert raw.headers["x-ratelimit-limit-requests"] == "10000"
    assert raw.headers["x-ratelimit-limit-tokens"] == "1000000"
    with pytest.raises(groq.RateLimitError):
        chat(limited, max_tokens=1, service_tier="on_demand")


def test_auto_picks_the_highest_tier_the_project_may_use(busy: LiveServer, perf_key: str) -> None:
    wait_idle(busy)
    assert chat(busy, service_tier="auto").service_tier == "on_demand"
    assert chat(busy, perf_key, service_tier="auto").service_tier == "performance"
    assert chat(busy).service_tier == "on_demand"


def test_flex_gets_498_at_once_while_on_demand_queues_for_the_busy_slot(
    busy: LiveServer, pool: ThreadPoolExecutor
) -> None:
    rejected_before = metric(busy, "tiergate_tier_rejected_total", tier="flex", status="498")
    queued_before = metric(busy, "tiergate_tier_queued_total", tier="on_demand")
    with slot_held(busy):
        waiting: Future[ChatCompletion] = pool.submit(chat, busy)
        queued_at = wait_queued(busy, "on_demand", queued_before + 1)

        started = time.monotonic()
        flex = raw_chat(busy, service_tier="flex")
        flex_latency = time.monotonic() - started

        assert not waiting.done(), "on_demand must wait for the slot, not fail"
        released_at = time.monotonic()
    on_demand = waiting.result(timeout=60)

    assert flex.status_code == 498, flex.text
    # Refused while the slot is still held (a queued request would not have returned at all), after
    # the ~100 ms flex wait plus the request's own road: well under a second on a loaded 2-core box.
    assert flex_latency < 1.0
    error = flex.json()["error"]
    assert error["code"] == "capacity_exceeded"
    assert error["type"] == "capacity_exceeded"
    assert "Flex Tier Capacity Exceeded" in error["message"]
    assert_rate_limit_headers(flex.headers)
    assert flex.headers["x-ratelimit-limit-requests"] == "1000000"  # flex: 10x the 100K RPD default
    assert metric(busy, "tiergate_tier_rejected_total", tier="flex", status="498") == rejected_before + 1

    assert on_demand.service_tier == "on_demand"
    assert on_demand.choices[0].message.content
    # It waited at least from when it was seen queued until the slot was released.
    assert on_demand.usage.queue_time >= released_at - queued_at > 0


def test_performance_request_overtakes_queued_on_demand_requests(
    busy: LiveServer, perf_key: str, pool: ThreadPoolExecutor
) -> None:
    on_demand_queued = metric(busy, "tiergate_tier_queued_total", tier="on_demand")
    performance_queued = metric(busy, "tiergate_tier_queued_total", tier="performance")
    with slot_held(busy):
        first = pool.submit(timed(lambda: chat(busy)))
        wait_queued(busy, "on_demand", on_demand_queued + 1)
        second = pool.submit(timed(lambda: chat(busy)))
        wait_queued(busy, "on_demand", on_demand_queued + 2)
        performance = pool.submit(timed(lambda: chat(busy, perf_key, service_tier="performance")))
        wait_queued(busy, "performance", performance_queued + 1)
    (perf, perf_done), (od1, od1_done), (od2, od2_done) = (
        f.result(timeout=60) for f in (performance, first, second)
    )

    assert perf.service_tier == "performance"
    assert od1.service_tier == od2.service_tier == "on_demand"
    # Queued last, served first: with one slot, the performance request finished before both and
    # waited less than either, though it arrived after them.
    assert perf_done < min(od1_done, od2_done)
    assert perf.usage.queue_time < min(od1.usage.queue_time, od2.usage.queue_time)


def test_performance_tier_needs_an_entitled_project(busy: LiveServer, perf_key: str) -> None:
    with pytest.raises(groq.PermissionDeniedError) as info:
        chat(busy, service_tier="performance")
    assert error_of(info.value)["param"] == "service_tier"
    assert_rate_limit_headers(info.value.response.headers)
    assert chat(busy, perf_key, service_tier="performance").service_tier == "performance"


# -- live changes from the CLI -----------------------------------------------------------------------


def test_a_project_rpm_set_from_the_cli_applies_within_a_second(busy: LiveServer) -> None:
    key = new_project(busy, "live")
    assert chat(busy, key, max_tokens=1).service_tier == "on_demand"
    busy.cli("limits", "set", "--project", "live", "--model", MODEL, "--rpm", "1")
    changed = time.monotonic()
    admitted = 0
    while True:
        try:
            chat(busy, key, max_tokens=1)
            admitted += 1
        except groq.RateLimitError as error:
            refused = error
            break
        assert time.monotonic() - changed < 2.0, "the new limit was not applied within ~1 s"
    # Within the 0.5 s cache the old limits may still admit; then the new window takes exactly 1.
    assert admitted >= 1
    message = RATE_LIMITED.match(error_of(refused)["message"])
    assert message, error_of(refused)["message"]
    assert message["project"] is not None and message["unit"] == "requests per minute (RPM)"
    assert message["limit"] == "1"
    assert chat(busy, max_tokens=1).service_tier == "on_demand", "other projects are unaffected"


def test_limits_set_by_a_model_alias_apply_to_that_model(busy: LiveServer) -> None:
    key = new_project(busy, "by-alias")
    busy.cli(
        "limits", "set", "--project", "by-alias", "--model", "qwen2.5-coder", "--rpd", "7", "--tpm", "5000"
    )
    changed = time.monotonic()
    while True:
        headers = raw_chat(busy, key, max_tokens=1).headers
        if headers["x-ratelimit-limit-requests"] == "7":
            break
        assert time.monotonic() - changed < 2.0, "limits set by an alias were not applied"
    assert headers["x-ratelimit-limit-tokens"] == "5000"


def test_granting_performance_from_the_cli_turns_403_into_200_without_restart(busy: LiveServer) -> None:
    key = new_project(busy, "upgrade")
    with pytest.raises(groq.PermissionDeniedError):
        chat(busy, key, service_tier="performance")
    busy.cli("projects", "update", "upgrade", "--performance")
    changed = time.monotonic()
    while True:
        try:
            completion = chat(busy, key, service_tier="performance")
            break
        except groq.PermissionDeniedError:
            assert time.monotonic() - changed < 2.0, "the entitlement was not applied within ~1 s"
    assert completion.service_tier == "performance"


# -- metrics -----------------------------------------------------------------------------------------


def test_metrics_count_admissions_and_queue_time_per_tier(busy: LiveServer, perf_key: str) -> None:
    wait_idle(busy)
    tiers = {"on_demand": None, "flex": None, "performance": perf_key}
    before = metrics(busy)
    for tier, key in tiers.items():
        assert chat(busy, key, service_tier=tier).service_tier == tier
    after = metrics(busy)

    def delta(name: str, **labels: str) -> float:
        sample = (name, frozenset(labels.items()))
        return after.get(sample, 0.0) - before.get(sample, 0.0)

    for tier in tiers:
        assert delta("tiergate_tier_admitted_total", tier=tier) == 1
        assert delta("tiergate_tier_queue_time_seconds_count", tier=tier) == 1
        assert after[("tiergate_slots_busy", frozenset({"model": MODEL, "tier": tier}.items()))] == 0
    names = {name for name, _ in after}
    assert {"tiergate_tier_queued_total", "tiergate_tier_rejected_total"} <= names


# -- replicas ----------------------------------------------------------------------------------------


@pytest.mark.redis
def test_two_servers_sharing_redis_enforce_one_rpm_limit_exactly(
    server_factory: Callable[..., LiveServer], tmp_path: Path
) -> None:
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    config = tmp_path / "tiergate.toml"
    config.write_text(f'[limits."{MODEL}"]\nrpm = 5\n')
    # One data dir: one organization (a fresh ulid, so no other run shares its Redis keys).
    flags = ("--parallel", "1", "--config", str(config), "--redis-url", REDIS_URL)
    replicas = [server_factory(*flags, data_dir=tmp_path / "shared") for _ in range(2)]
    gate = threading.Barrier(12)

    def send(index: int) -> int:
        replica = replicas[index % 2]
        gate.wait()
        return raw_chat(replica, max_tokens=1).status_code

    with ThreadPoolExecutor(max_workers=12) as executor:
        statuses = list(executor.map(send, range(12)))
    # Each replica alone would admit 5 of its 6; together they admit 5 of 12.
    assert sorted(statuses) == [200] * 5 + [429] * 7, statuses
