"""The upstream engine's failover rules against a scripted aiohttp server on loopback: which failures
move on to the next upstream, which pass through, and what the client gets at the end.

One server plays every upstream: upstream `a` is http://127.0.0.1:PORT/a/v1, and so on; the test's
handler sees which one was asked from the path. Backoff sleeps are recorded, not slept.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest
from aiohttp import web

from tests.conftest import free_port
from tiergate.clock import FakeClock
from tiergate.engines import upstream as upstream_module
from tiergate.engines.base import ModelSpec
from tiergate.engines.upstream import UpstreamEngine
from tiergate.engines.upstream_config import PoolConfig, UpstreamConfig, pool_config
from tiergate.engines.upstream_errors import status_error
from tiergate.errors import (
    BadGateway,
    FlexCapacityExceeded,
    GatewayTimeout,
    InvalidRequest,
    RateLimited,
    ServiceUnavailable,
)

BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
OK = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "yo"}, "finish_reason": "stop"}]}
Handler = Callable[[str, web.Request], Awaitable[web.StreamResponse]]


class Scripted:
    """The loopback server; `handler(upstream, request)` answers, `seen` lists upstreams asked."""

    def __init__(self) -> None:
        self.handler: Handler = _ok
        self.seen: list[str] = []
        self.bodies: list[dict] = []
        self.port = 0

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        upstream = request.path.split("/")[1]
        if request.path.endswith("/chat/completions"):
            self.seen.append(upstream)
            self.bodies.append(orjson.loads(await request.read()))
        return await self.handler(upstream, request)


async def _ok(upstream: str, request: web.Request) -> web.StreamResponse:
    return _json(200, OK)


def _json(status: int, body: object, **headers: str) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), headers=headers, content_type="application/json"
    )


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    server = Scripted()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server._dispatch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = runner.addresses[0][1]
    yield server
    await runner.cleanup()


def _engine(
    scripted: Scripted,
    *hosts: str,
    attempts: int = 3,
    threshold: int = 3,
    read_timeout: float = 5.0,
    kind: str = "vllm",
) -> tuple[UpstreamEngine, list[float]]:
    def port(host: str) -> int:
        return free_port() if host.startswith("dead") else scripted.port

    upstreams = tuple(
        UpstreamConfig(
            name=host,
            base_url=f"http://127.0.0.1:{port(host)}/{host}/v1",
            model=f"{host}-model",
            priority=i,
            kind=kind,
            count_tokens="tokenize",
            read_timeout=read_timeout,
        )
        for i, host in enumerate(hosts)
    )
    config = PoolConfig(upstreams=upstreams, max_attempts=attempts, failure_threshold=threshold)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    engine = UpstreamEngine(ModelSpec(id="m", engine="upstream"), config, clock=FakeClock(), sleep=sleep)
    return engine, sleeps


async def test_a_5xx_fails_over_to_the_next_upstream_after_a_backoff(scripted: Scripted) -> None:
    async def handler(upstream: str, request: web.Request) -> web.Response:
        return _json(503, {"error": "busy"}) if upstream == "a" else _json(200, OK)

    scripted.handler = handler
    engine, sleeps = _engine(scripted, "a", "b")
    reply = await engine.open(BODY, "flex", stream=False)
    assert scripted.seen == ["a", "b"] and reply.body == OK
    assert sleeps == [0.05]
    assert [s.in_flight for s in engine.pool.states] == [0, 1]
    await reply.close()
    assert engine.pool.states[1].in_flight == 0
    await engine.close()


async def test_the_forwarded_body_names_the_upstream_model_and_carries_the_tier(scripted: Scripted) -> None:
    engine, _ = _engine(scripted, "a")
    await (await engine.open(BODY, "batch", stream=False)).close()
    assert scripted.bodies == [{**BODY, "model": "a-model", "priority": 200}]
    await engine.close()


async def test_connect_errors_everywhere_are_a_503(scripted: Scripted) -> None:
    engine, sleeps = _engine(scripted, "dead", "dead-too")  # closed ports
    with pytest.raises(ServiceUnavailable):
        await engine.open(BODY, "on_demand", stream=False)
    assert len(sleeps) == 1 and all(s.in_flight == 0 for s in engine.pool.states)
    await engine.close()


async def test_a_silent_upstream_is_a_504(scripted: Scripted) -> None:
    async def handler(upstream: str, request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return _json(200, OK)

    scripted.handler = handler
    engine, _ = _engine(scripted, "a", read_timeout=0.2)
    with pytest.raises(GatewayTimeout):
        await engine.open(BODY, "on_demand", stream=False)
    await engine.close()


async def test_garbage_is_tried_elsewhere_then_a_502(scripted: Scripted) -> None:
    async def handler(upstream: str, request: web.Request) -> web.Response:
        return web.Response(status=200, text="<html>hello</html>")

    scripted.handler = handler
    engine, _ = _engine(scripted, "a", "b")
    with pytest.raises(BadGateway):
        await engine.open(BODY, "on_demand", stream=False)
    assert scripted.seen == ["a", "b"]
    await engine.close()


async def test_tries_stop_at_max_attempts(scripted: Scripted) -> None:
    async def handler(upstream: str, request: web.Request) -> web.Response:
        return _json(500, {})

    scripted.handler = handler
    engine, _ = _engine(scripted, "a", "b", "c", attempts=2)
    with pytest.raises(BadGateway):
        await engine.open(BODY, "on_demand", stream=False)
    assert scripted.seen == ["a", "b"]
    await engine.close()


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, InvalidRequest), (422, InvalidRequest), (429, RateLimited), (498, FlexCapacityExceeded)],
)
async def test_a_4xx_is_passed_through_and_never_retried(
    scripted: Scripted, status: int, error: type
) -> None:
    async def handler(upstream: str, request: web.Request) -> web.Response:
        return _json(status, {"error": {"message": "nope", "code": "x"}}, **{"retry-after": "7"})

    scripted.handler = handler
    engine, _ = _engine(scripted, "a", "b")
    with pytest.raises(error) as raised:
        await engine.open(BODY, "on_demand", stream=False)
    assert scripted.seen == ["a"] and raised.value.message == "nope"
    assert engine.pool.states[0].breaker.up  # it answered: not a failure of the upstream
    assert engine.pool.states[0].in_flight == 0
    if status == 429:
        assert raised.value.retry_after == 7.0
    await engine.close()


async def test_the_upstream_refusing_our_key_is_a_502_not_a_401(scripted: Scripted) -> None:
    async def handler(upstream: str, request: web.Request) -> web.Response:
        return _json(401, {"error": {"message": "Invalid API Key"}})

    scripted.handler = handler
    engine, _ = _engine(scripted, "a", "b")
    with pytest.raises(BadGateway):
        await engine.open(BODY, "on_demand", stream=False)
    await engine.close()


async def test_failures_open_the_circuit_and_the_next_request_skips_that_upstream(scripted: Scripted) -> None:
    async def handler(upstream: str, request: web.Request) -> web.Response:
        return _json(500, {}) if upstream == "a" else _json(200, OK)

    scripted.handler = handler
    engine, _ = _engine(scripted, "a", "b", threshold=1)
    await (await engine.open(BODY, "on_demand", stream=False)).close()
    await (await engine.open(BODY, "on_demand", stream=False)).close()
    assert scripted.seen == ["a", "b", "b"]
    await engine.close()


async def test_a_health_check_brings_an_open_circuit_back(scripted: Scripted) -> None:
    engine, _ = _engine(scripted, "a", threshold=1)
    engine.pool.states[0].breaker.on_failure(engine.clock.monotonic())
    with pytest.raises(ServiceUnavailable, match="down"):
        await engine.open(BODY, "on_demand", stream=False)  # every circuit open: not even tried
    assert scripted.seen == []
    await engine.check_health()  # GET /a/v1/models answers 200
    await (await engine.open(BODY, "on_demand", stream=False)).close()
    assert scripted.seen == ["a"]
    await engine.close()


async def test_a_stream_request_asks_for_usage_and_reads_chunks(scripted: Scripted) -> None:
    async def handler(upstream: str, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices": [{"delta": {"content": "x"}}]}\n\n')
        await response.write(b"data: [DONE]\n\n")
        return response

    scripted.handler = handler
    engine, _ = _engine(scripted, "a")
    reply = await engine.open(BODY, "on_demand", stream=True)
    chunks = [chunk async for batch in reply.chunk_batches() for chunk in batch]
    await reply.close()
    assert chunks == [{"choices": [{"delta": {"content": "x"}}]}]
    assert scripted.bodies[0]["stream"] is True
    assert scripted.bodies[0]["stream_options"] == {"include_usage": True}
    await engine.close()


async def test_the_tokenizer_count_is_used_and_its_failure_falls_back_to_the_estimate(
    scripted: Scripted,
) -> None:
    async def handler(upstream: str, request: web.Request) -> web.Response:
        if request.path == "/a/tokenize":
            return _json(200, {"count": 42})
        return _json(500, {})

    scripted.handler = handler
    engine, _ = _engine(scripted, "a", "b")
    assert await engine.count_prompt(BODY) == 42
    engine.pool.states[0].breaker.on_failure(0)
    engine.pool.states[0].breaker.state = "open"
    # The primary is now `b`, whose tokenizer fails: "hi" is 1 token, + 4 per message + 3 reply header.
    assert await engine.count_prompt(BODY) == 1 + 4 + 3
    await engine.close()


async def test_the_load_poll_reads_vllm_waiting_requests(scripted: Scripted) -> None:
    async def handler(upstream: str, request: web.Request) -> web.Response:
        text = 'vllm:num_requests_waiting{model_name="x"} 3.0\nvllm:num_requests_running 5.0\n'
        return web.Response(text=text)

    scripted.handler = handler
    engine, _ = _engine(scripted, "a")
    await engine.poll_load()
    assert engine.pool.states[0].waiting == 3 and engine.saturated()
    await engine.close()


async def test_llama_server_is_saturated_when_every_slot_is_processing(scripted: Scripted) -> None:
    slots = [{"id": 0, "is_processing": True}, {"id": 1, "is_processing": False}]

    async def handler(upstream: str, request: web.Request) -> web.Response:
        if request.path == "/a/tokenize":
            return _json(200, {"tokens": [1, 2, 3, 4, 5]})
        return _json(200, slots)

    scripted.handler = handler
    engine, _ = _engine(scripted, "a", kind="llama-server")
    await engine.poll_load()
    assert not engine.saturated()
    slots[1]["is_processing"] = True
    await engine.poll_load()
    assert engine.saturated()
    # llama-server's /tokenize counts text: 5 tokens + 4 for the one message's role markers.
    assert await engine.count_prompt(BODY) == 5 + 4
    await engine.close()


async def test_credentials_in_the_base_url_reach_the_upstream_as_basic_auth(scripted: Scripted) -> None:
    seen: list[str | None] = []

    async def handler(upstream: str, request: web.Request) -> web.Response:
        seen.append(request.headers.get("authorization"))
        return _json(200, OK if request.path.endswith("/chat/completions") else {"data": []})

    scripted.handler = handler
    # A shared key is set too: aiohttp refused to send URL credentials with an Authorization header
    # (ValueError on every request); now the URL's credentials are the upstream's one header.
    options = {"upstreams": [{"base_url": f"http://ann:s3cret@127.0.0.1:{scripted.port}/a/v1"}]}
    config = pool_config("m", options, env={"TIERGATE_UPSTREAM_API_KEY": "sk-shared"})
    engine = UpstreamEngine(ModelSpec(id="m", engine="upstream"), config, clock=FakeClock())
    await (await engine.open(BODY, "on_demand", stream=False)).close()
    await engine.check_health()
    basic = "Basic " + base64.b64encode(b"ann:s3cret").decode()
    assert seen == [basic, basic] and engine.pool.states[0].breaker.up
    await engine.close()


async def test_the_health_and_load_loops_outlive_a_round_that_raises(scripted: Scripted) -> None:
    engine, _ = _engine(scripted, "a")
    engine.config = PoolConfig(upstreams=engine.config.upstreams, health_interval=0.01, load_interval=0.01)
    rounds = {"health": 0, "load": 0}

    def failing_round(name: str) -> Callable[[], Awaitable[None]]:
        async def round_() -> None:
            rounds[name] += 1
            if rounds[name] <= 2:
                raise RuntimeError("an unexpected bug")

        return round_

    engine.check_health = failing_round("health")  # type: ignore[method-assign]
    engine.poll_load = failing_round("load")  # type: ignore[method-assign]
    await engine.start()
    for _ in range(200):
        if min(rounds.values()) >= 4:
            break
        await asyncio.sleep(0.01)
    assert min(rounds.values()) >= 4  # before: the first exception ended each loop for good
    assert all(not task.done() for task in engine._tasks)
    await engine.close()


async def test_a_health_probe_that_raises_counts_as_down_without_stopping_the_others(
    scripted: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _ = _engine(scripted, "a", "b", threshold=1)

    async def is_alive(session: object, config: UpstreamConfig) -> bool:
        if config.name == "a":
            raise ValueError("unexpected")
        return True

    monkeypatch.setattr(upstream_module, "is_alive", is_alive)
    engine.pool.states[1].breaker.on_failure(0)
    await engine.check_health()
    assert [s.breaker.up for s in engine.pool.states] == [False, True]
    await engine.close()


async def test_a_request_nested_too_deeply_to_encode_is_a_400_and_is_never_sent(scripted: Scripted) -> None:
    deep: dict[str, object] = {}
    for _ in range(300):
        deep = {"a": deep}
    engine, _ = _engine(scripted, "a")
    with pytest.raises(InvalidRequest):
        await engine.open({**BODY, "search_settings": deep}, "on_demand", stream=False)
    assert scripted.seen == [] and engine.pool.states[0].in_flight == 0
    await engine.close()


@pytest.mark.parametrize(("value", "seconds"), [("inf", 1.0), ("nan", 1.0), ("-3", 0.0), ("1e12", 86400.0)])
def test_an_upstream_retry_after_that_is_not_a_sane_number_is_not_passed_on(
    value: str, seconds: float
) -> None:
    error = status_error("m", 429, {"retry-after": value}, b"{}")
    assert isinstance(error, RateLimited) and error.retry_after == seconds


class CountingTokenizer:
    """The model tokenizer's surface (ModelTokenizer.count_async), with a scripted answer."""

    def __init__(self, answer: int | None) -> None:
        self.answer = answer
        self.calls = 0

    async def count_async(self, messages: list, tools: list | None = None) -> int | None:
        self.calls += 1
        return self.answer


async def test_the_count_is_tokenize_then_the_models_tokenizer_then_the_estimate(scripted: Scripted) -> None:
    async def handler(upstream: str, request: web.Request) -> web.Response:
        return _json(500, {})  # /tokenize fails

    scripted.handler = handler
    engine, _ = _engine(scripted, "a")
    tokenizer = CountingTokenizer(77)
    engine.tokenizer = tokenizer  # type: ignore[assignment]
    assert await engine.count_prompt(BODY) == 77
    tokenizer.answer = None  # the template could not render these messages
    assert await engine.count_prompt(BODY) == 1 + 4 + 3
    await engine.close()

    generic, _ = _engine(scripted, "a", kind="generic")  # no /tokenize to ask
    generic.tokenizer = CountingTokenizer(5)  # type: ignore[assignment]
    generic.pool.states[0].config = dataclasses.replace(
        generic.pool.states[0].config, count_tokens="tokenizer"
    )
    assert await generic.count_prompt(BODY) == 5
    await generic.close()
