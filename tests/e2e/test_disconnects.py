"""Clients that hang up before their answer is complete: queued, or generating a non-streamed answer.

A single-slot server holds one long streamed request on its only slot; the request under test hangs up
by closing its socket. Without the hang-up watch, a queued request would keep its place (and its
token reservation) until the long request ended, minutes later; a generating one would decode on.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, start_server

MODEL = "qwen2.5-coder-0.5b-instruct"
CHAT = "/openai/v1/chat/completions"
# Greedy and long on purpose: a sampled "essay" may end after a few dozen tokens, before the hang-up.
LONG = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Count from 1 to 3000, one number per line."}],
    "max_tokens": 3000,
    "temperature": 0,
}


# TPM refills continuously (1/60 of the limit per second): at 7,000 the two 3,000-token reservations
# fit, and what refills during the test (~120 tokens/s) is far less than one of them.
TPM = 7000


@pytest.fixture(scope="module")
def single(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("single-slot")
    config = data_dir / "limits.toml"
    config.write_text(f'[limits."*"]\ntpm = {TPM}\n')
    live = start_server(data_dir / "data", "--parallel", "1", "--config", str(config))
    yield live
    live.stop()


def _cancelled(server: LiveServer) -> float:
    for line in httpx.get(server.root + "/metrics", timeout=10).text.splitlines():
        if line.startswith('tiergate_requests_cancelled_total{route="/chat/completions"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wait_for_cancelled(server: LiveServer, count: float, seconds: float) -> float:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _cancelled(server) >= count:
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"no 499 counted within {seconds} s (cancelled = {_cancelled(server)})")


@contextmanager
def _slot_held(server: LiveServer) -> Iterator[None]:
    """A long streamed request on the only slot, read by a thread until the block ends.

    (Leaving httpx's line iterator closes the stream, so the stream must be read on, not just left open.)
    """
    started, done = threading.Event(), threading.Event()

    def read() -> None:
        with httpx.stream(
            "POST",
            server.root + CHAT,
            json={**LONG, "stream": True},
            headers={"authorization": f"Bearer {server.api_key}"},
            timeout=60,
        ) as response:
            for line in response.iter_lines():
                if '"content"' in line:
                    started.set()
                if done.is_set():
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert started.wait(60), "the long request did not start streaming"
    try:
        yield
        assert reader.is_alive(), "the long request ended early: the slot was not held throughout"
    finally:
        done.set()
        reader.join(30)


def _send_then_hang_up(server: LiveServer, body: dict[str, object], after: float) -> None:
    """Send a complete request on a raw socket, wait, then close without reading the answer."""
    payload = json.dumps(body).encode()
    head = (
        f"POST {CHAT} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {server.api_key}\r\ncontent-length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + payload)
        time.sleep(after)


def _tokens_left(server: LiveServer) -> int:
    """TPM left, read off a request refused at once (a 400 for a known model carries the headers),
    so it can be read while the only slot is busy."""
    response = httpx.post(
        server.root + CHAT,
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": 5},
        headers={"authorization": f"Bearer {server.api_key}"},
        timeout=10,
    )
    assert response.status_code == 400, response.text
    return int(response.headers["x-ratelimit-remaining-tokens"])


def test_a_client_that_leaves_the_queue_gives_its_place_and_tokens_back_at_once(single: LiveServer) -> None:
    before = _cancelled(single)
    with _slot_held(single):
        tokens_before = _tokens_left(single)
        # It reserves its prompt and 3000 completion tokens, then waits behind the long request.
        _send_then_hang_up(single, LONG, after=0.5)
        hung_up = time.monotonic()
        counted = _wait_for_cancelled(single, before + 1, seconds=10)
        # Noticed while the long request still holds the slot, not when the slot frees,
        assert counted - hung_up < 5
        # and its reservation is back: at least what was left before it came (plus what refilled).
        # Had it kept its place, 3,000 tokens would still be reserved.
        assert _tokens_left(single) >= tokens_before


def test_a_client_that_leaves_during_a_non_streamed_answer_stops_generation(single: LiveServer) -> None:
    before = _cancelled(single)
    _send_then_hang_up(single, LONG, after=1.5)  # long enough to be admitted and decoding
    hung_up = time.monotonic()
    _wait_for_cancelled(single, before + 1, seconds=10)
    assert time.monotonic() - hung_up < 5
    # The only slot is free again: a short request does not wait out 3000 tokens.
    response = httpx.post(
        single.root + CHAT,
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        headers={"authorization": f"Bearer {single.api_key}"},
        timeout=60,
    )
    assert response.status_code == 200
    assert response.json()["usage"]["queue_time"] < 2.0
