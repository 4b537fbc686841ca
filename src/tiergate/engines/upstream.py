"""The upstream engine: a model served by one or more OpenAI-compatible servers (vLLM, SGLang,
llama-server, Ollama, GroqCloud, OpenAI, another tiergate).

It does not template or tokenize like the embedded engine: the service forwards the chat body and
re-issues the answer in our shape. This module owns the wire: one pooled keep-alive client, the tier
carried in each kind's native field, failover across upstreams before the first byte (connect errors,
timeouts, 5xx, garbage), never on a 4xx (engines/upstream_errors.py), and background health checks
and load polls (a round that fails is logged, and the next one still comes). When no upstream is
left to try: 503 (none reachable, or every circuit open), 504 (timeouts), 502 (5xx, or an answer
that is not a chat completion).

The client is aiohttp, not httpx: on the 2-core benchmark machine httpx spent ~4 ms of CPU per
request against ~0.3 ms for aiohttp, and the gateway's whole point is to add almost nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from tiergate.clock import Clock, SystemClock
from tiergate.engines.base import ModelSpec
from tiergate.engines.sse_reader import StreamBroken, sse_batches
from tiergate.engines.tier_mapping import tier_fields
from tiergate.engines.token_estimate import estimate_tokens
from tiergate.engines.upstream_config import PoolConfig, UpstreamConfig, pool_config
from tiergate.engines.upstream_errors import MAX_ERROR_BODY, Retry, chat_body, status_error, stream_error
from tiergate.engines.upstream_pool import UpstreamPool, UpstreamState
from tiergate.engines.upstream_probe import auth_headers, is_alive, tokenized_count, waiting_requests
from tiergate.engines.upstream_tokenizer import ModelTokenizer
from tiergate.errors import APIError, BadGateway, GatewayTimeout, InvalidRequest, ServiceUnavailable
from tiergate.observability.metrics import Metrics

log = logging.getLogger("tiergate.upstream")

# Kinds known to accept `stream_options.include_usage`; others might reject an unknown field.
_STREAM_USAGE_KINDS = ("vllm", "sglang", "openai", "groq", "tiergate", "llama-server")


@dataclass
class UpstreamReply:
    """An upstream's 2xx answer, open: the parsed body (non-streaming) or its event stream.

    `close()` must be called once the caller is done (the run's `finish()` does); it returns the
    connection to the pool and gives the upstream's concurrency back.
    """

    state: UpstreamState
    response: aiohttp.ClientResponse
    body: dict[str, Any] | None
    sent_at: float
    headers_at: float
    engine: UpstreamEngine
    _closed: bool = False

    @property
    def kind(self) -> str:
        return self.state.config.kind

    async def chunk_batches(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The stream's chunks, grouped as they arrived (sse_batches); a cut or garbled stream raises
        BadGateway, a silent one GatewayTimeout, an error event the upstream's error."""
        try:
            async for batch in sse_batches(self.response.content.iter_any()):
                for payload in batch:
                    if not isinstance(payload, dict):
                        raise StreamBroken("a stream event is not a JSON object")
                    if "error" in payload and "choices" not in payload:
                        raise stream_error(payload["error"])
                yield batch
        except StreamBroken as exc:
            self.broke(str(exc))
            raise BadGateway("The upstream's stream broke off before the answer was complete.") from None
        except TimeoutError:
            self.broke("timeout")
            raise GatewayTimeout("The upstream stopped sending before the answer was complete.") from None
        except aiohttp.ClientError as exc:
            self.broke(type(exc).__name__)
            raise BadGateway("The upstream's stream broke off before the answer was complete.") from None

    def broke(self, why: str) -> None:
        """The answer went wrong after the first byte: too late to fail over, but the circuit learns."""
        log.warning("upstream %s: answer broke off (%s)", self.state.config.name, why)
        self.state.breaker.on_failure(self.engine.clock.monotonic())
        self.engine.count(self.state, "broken")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.state.in_flight -= 1
        if self.response.content.at_eof():
            self.response.release()  # the connection goes back to the keep-alive pool
        else:
            self.response.close()  # left mid-stream: hanging up tells the upstream to stop generating


class UpstreamEngine:
    """Engine for `engine = "upstream"` models; the service calls `count_prompt` then `open`."""

    def __init__(
        self,
        spec: ModelSpec,
        config: PoolConfig,
        *,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        tokenizer: ModelTokenizer | None = None,
    ) -> None:
        self.spec = spec
        self.config = config
        self.tokenizer = tokenizer
        self.clock = clock or SystemClock()
        self._sleep = sleep or asyncio.sleep
        self.pool = UpstreamPool(
            config.upstreams,
            clock=self.clock,
            failure_threshold=config.failure_threshold,
            cooldown=config.cooldown_seconds,
        )
        self._timeouts = {
            u.name: aiohttp.ClientTimeout(sock_connect=u.connect_timeout, sock_read=u.read_timeout)
            for u in config.upstreams
        }
        self._headers = {
            u.name: {**auth_headers(u), "content-type": "application/json"} for u in config.upstreams
        }
        self._urls = {u.name: f"{u.base_url}/chat/completions" for u in config.upstreams}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.metrics: Metrics | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> UpstreamEngine:
        """Blocking (the model's tokenizer loads here): the app calls it in its loading thread."""
        config = pool_config(spec.id, spec.options)
        tokenizer = ModelTokenizer(config.tokenizer) if config.tokenizer else None
        return cls(spec, config, tokenizer=tokenizer)

    @property
    def slots(self) -> int:
        """Our scheduler's slots: the sum of the upstreams' `max_concurrency`."""
        return self.pool.slots

    @property
    def session(self) -> aiohttp.ClientSession:
        """One keep-alive pool for all upstreams; made on the running loop (aiohttp binds to it)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None)
            )
        return self._session

    async def start(self, metrics: Metrics | None = None, *, background: bool = True) -> None:
        """Start health checks (and load polls where the upstream reports load) on the running loop."""
        self.metrics = metrics
        if metrics is not None:
            for state in self.pool.states:
                metrics.upstream_up.labels(self.spec.id, state.config.name).set(1)
        if background:
            self._tasks.append(asyncio.create_task(self._health_loop()))
            if any(u.reports_load for u in self.config.upstreams):
                self._tasks.append(asyncio.create_task(self._load_loop()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def saturated(self) -> bool:
        """Every upstream that could take traffic reports more queued requests than its flex allows."""
        return self.pool.saturated()

    async def count_prompt(self, body: dict[str, Any]) -> int:
        """Prompt tokens for the reservation: the primary upstream's /tokenize if it has one, else the
        model's own tokenizer if configured, else the estimate (engines/token_estimate.py). Usage is
        settled with what the upstream reports anyway."""
        primary = next((s for s in self.pool.states if s.breaker.up), None)
        mode = primary.config.count_tokens if primary is not None else "tokenizer"
        messages, tools = body.get("messages") or [], body.get("tools")
        if mode == "tokenize" and primary is not None:
            count = await tokenized_count(self.session, primary.config, body)
            if count is not None:
                return count
        if mode != "estimate" and self.tokenizer is not None:
            count = await self.tokenizer.count_async(messages, tools)
            if count is not None:
                return count
        return estimate_tokens(messages, tools)

    async def open(self, body: dict[str, Any], tier: str, *, stream: bool) -> UpstreamReply:
        """Send the chat request, failing over until one upstream answers 2xx (see module docstring)."""
        order = self.pool.order()
        if not order:
            raise ServiceUnavailable(
                f"Every upstream of the model `{self.spec.id}` is down; please retry shortly."
            )
        last: APIError | None = None
        for attempt, state in enumerate(order[: self.config.max_attempts]):
            data = _payload(state.config, body, tier, stream)
            if attempt:
                await self._sleep(self.pool.backoff(attempt, self.config.backoff_seconds))
            state.breaker.on_attempt()
            state.in_flight += 1
            try:
                reply = await self._send(state, data, stream)
            except Retry as retry:
                state.in_flight -= 1
                state.breaker.on_failure(self.clock.monotonic())
                self.count(state, "failed")
                log.warning("upstream %s failed: %s", state.config.name, retry.error.message)
                last = retry.error
                continue
            except APIError as error:
                state.in_flight -= 1
                state.breaker.on_success()  # it answered: alive, the request was the problem
                self.count(state, "rejected")
                if isinstance(error, BadGateway):
                    log.warning("upstream %s: %s (check its key and model)", state.config.name, error.message)
                raise
            except BaseException:
                state.in_flight -= 1
                raise
            state.breaker.on_success()
            self.count(state, "ok")
            return reply
        assert last is not None
        raise last

    async def _send(self, state: UpstreamState, data: bytes, stream: bool) -> UpstreamReply:
        config = state.config
        sent_at = self.clock.monotonic()
        response = await self._post(config.name, data)
        headers_at = self.clock.monotonic()
        try:
            if response.status >= 400:
                small = response.content_length is not None and response.content_length <= MAX_ERROR_BODY
                raw = await (response.read() if small else response.content.read(MAX_ERROR_BODY))
                raise status_error(self.spec.id, response.status, response.headers, raw)
            parsed: dict[str, Any] | None = None
            if not stream:
                parsed = chat_body(await response.read())
                if parsed is None:
                    raise Retry(BadGateway(f"The upstream for `{self.spec.id}` answered with garbage."))
            elif response.content_type != "text/event-stream":
                raise Retry(BadGateway(f"The upstream for `{self.spec.id}` did not answer with a stream."))
        except TimeoutError:
            response.close()
            raise Retry(
                GatewayTimeout(f"The upstream for `{self.spec.id}` did not answer in time.")
            ) from None
        except aiohttp.ClientError:
            response.close()
            raise Retry(BadGateway(f"The upstream for `{self.spec.id}` broke off its answer.")) from None
        except BaseException:
            response.close()
            raise
        if parsed is not None:
            response.release()
        return UpstreamReply(state, response, parsed, sent_at, headers_at, self)

    async def _post(self, name: str, data: bytes) -> aiohttp.ClientResponse:
        """POST and wait for the status line. A kept-alive connection the server closed meanwhile is
        retried once on a fresh one: that race is not the upstream failing."""
        for fresh in (False, True):
            try:
                return await self.session.post(
                    self._urls[name], data=data, headers=self._headers[name], timeout=self._timeouts[name]
                )
            except aiohttp.ServerDisconnectedError:
                if fresh:
                    raise Retry(ServiceUnavailable(f"The upstream for `{self.spec.id}` hung up.")) from None
            except TimeoutError:
                raise Retry(
                    GatewayTimeout(f"The upstream for `{self.spec.id}` did not answer in time.")
                ) from None
            except aiohttp.ClientError:
                raise Retry(ServiceUnavailable(f"No upstream for `{self.spec.id}` is reachable.")) from None
        raise AssertionError("unreachable")

    def count(self, state: UpstreamState, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.upstream_requests.labels(self.spec.id, state.config.name, outcome).inc()

    async def check_health(self) -> None:
        """Take dead upstreams out (circuit open) and bring them back as soon as they answer."""
        results = await asyncio.gather(
            *(is_alive(self.session, s.config) for s in self.pool.states), return_exceptions=True
        )
        now = self.clock.monotonic()
        for state, alive in zip(self.pool.states, results, strict=True):
            if isinstance(alive, BaseException):
                if not isinstance(alive, Exception):
                    raise alive  # cancellation: the engine is closing
                log.warning("upstream %s: health check failed (%s)", state.config.name, type(alive).__name__)
                alive = False
            if alive:
                if not state.breaker.up:
                    log.info("upstream %s is back", state.config.name)
                state.breaker.on_success()
            else:
                state.breaker.on_failure(now)
            if self.metrics is not None:
                up = 1 if state.breaker.up else 0
                self.metrics.upstream_up.labels(self.spec.id, state.config.name).set(up)

    async def poll_load(self) -> None:
        """Read the load of upstreams that publish it, so flex is refused without asking per request."""
        states = [s for s in self.pool.states if s.config.reports_load]
        results = await asyncio.gather(*(waiting_requests(self.session, s.config) for s in states))
        for state, waiting in zip(states, results, strict=True):
            state.waiting = waiting

    async def _health_loop(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.config.health_interval)
            failing = await _survive(f"{self.spec.id}: health check", self.check_health, failing)

    async def _load_loop(self) -> None:
        failing = False
        while True:
            failing = await _survive(f"{self.spec.id}: load poll", self.poll_load, failing)
            await asyncio.sleep(self.config.load_interval)


async def _survive(what: str, round_: Callable[[], Awaitable[None]], failing: bool) -> bool:
    """One round of a background loop; True if it failed. An escaped exception would end the loop, and
    the checks with it, silently: it is logged (once until a round succeeds again) and the loop goes on."""
    try:
        await round_()
    except Exception:
        if not failing:
            log.exception("upstream %s failed; trying again every round", what)
        return True
    if failing:
        log.info("upstream %s works again", what)
    return False


def _payload(config: UpstreamConfig, body: dict[str, Any], tier: str, stream: bool) -> bytes:
    """The request as this upstream gets it: its model name and tier fields, streaming with usage."""
    payload = {**body, "model": config.model, **tier_fields(config.kind, tier)}
    if stream:
        payload["stream"] = True
        if config.kind in _STREAM_USAGE_KINDS:
            payload["stream_options"] = {"include_usage": True}
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError:  # JSON nested deeper than orjson writes (255 levels)
        raise InvalidRequest(
            "The request is nested too deeply to be forwarded.", code="invalid_value"
        ) from None
