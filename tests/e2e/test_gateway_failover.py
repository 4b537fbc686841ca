"""Failover and the circuit breaker with real upstreams: a model served by llama-cpp-python's server
(`a`, first choice) and a tiergate (`b`, failover). `a` is killed mid-test, then started again on
the same port; the gateway's /metrics says which upstream served each request and which is up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import groq
import pytest

from tests.conftest import LiveServer, start_server
from tests.e2e.gateway_helpers import MODEL, LlamaServer, gguf_path, upstream_counts, upstream_up

HI = [{"role": "user", "content": "Say hi."}]


@pytest.fixture
def upstream_a(models_dir: Path, tmp_path: Path) -> Iterator[LlamaServer]:
    live = LlamaServer(gguf_path(models_dir), tmp_path / "llama-a.log").start()
    yield live
    live.stop()


@pytest.fixture
def gateway(server: LiveServer, upstream_a: LlamaServer, tmp_path: Path) -> Iterator[LiveServer]:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
[[models]]
id = "pair"
engine = "upstream"
[models.options]
max_attempts = 2
failure_threshold = 1
cooldown_seconds = 30.0
health_interval = 0.3
[[models.options.upstreams]]
name = "a"
base_url = "{upstream_a.base_url}"
model = "{MODEL}"
priority = 0
[[models.options.upstreams]]
name = "b"
base_url = "{server.openai_base}"
kind = "tiergate"
model = "{MODEL}"
api_key_env = "UPSTREAM_TIERGATE_KEY"
priority = 1
"""
    )
    live = start_server(
        tmp_path / "gateway", "--config", str(config), env={"UPSTREAM_TIERGATE_KEY": server.api_key}
    )
    yield live
    live.stop()


def _wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def _ask(api: groq.Groq, stream: bool = False) -> str:
    if stream:
        chunks = api.chat.completions.create(model="pair", messages=HI, max_tokens=4, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return (
        api.chat.completions.create(model="pair", messages=HI, max_tokens=4).choices[0].message.content or ""
    )


def test_a_killed_upstream_fails_over_then_comes_back_through_the_circuit_breaker(
    gateway: LiveServer, upstream_a: LlamaServer
) -> None:
    api = groq.Groq(base_url=gateway.root, api_key=gateway.api_key, max_retries=0, timeout=60)
    assert _ask(api)
    assert upstream_counts(gateway).get(("a", "ok")) == 1  # the first choice serves while it is up
    assert upstream_counts(gateway).get(("b", "ok")) is None

    upstream_a.stop()
    # The client never sees the failure: the request goes on to `b` before the first byte.
    assert _ask(api)
    assert _ask(api, stream=True)
    counts = upstream_counts(gateway)
    assert counts.get(("b", "ok")) == 2
    assert counts.get(("a", "ok")) == 1
    _wait_until(lambda: upstream_up(gateway, "a") == 0)
    failed_before = upstream_counts(gateway).get(("a", "failed"), 0)
    assert _ask(api)
    # With the circuit open, `a` is not even tried.
    assert upstream_counts(gateway).get(("a", "failed"), 0) == failed_before

    upstream_a.start()  # same port: the health check sees it answer and closes the circuit
    _wait_until(lambda: upstream_up(gateway, "a") == 1)
    assert _ask(api)
    assert upstream_counts(gateway).get(("a", "ok")) == 2
