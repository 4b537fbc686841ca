"""Raw HTTP at the edges: malformed input, auth, sizes, SSE framing, disconnects, health and metrics."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer

MODEL = "qwen2.5-coder-0.5b-instruct"
CHAT = "/openai/v1/chat/completions"


def post(server: LiveServer, body: Any, *, key: str | None = None, path: str = CHAT) -> httpx.Response:
    headers = {"authorization": f"Bearer {key or server.api_key}"}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers["content-type"] = "application/json"
    return httpx.post(server.root + path, content=content, headers=headers, timeout=60)


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code", "param"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    assert "Traceback" not in response.text
    assert response.headers["x-request-id"].startswith("req_"), "every response has an x-request-id"
    return error


def ok_body(**kw: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **kw}


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 2}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_tokens": -3}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0]"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
        ({"service_tier": "gold"}, "service_tier"),
        ({"service_tier": "batch"}, "service_tier"),
        ({"logprobs": True}, "logprobs"),
        ({"logit_bias": {"1": 2}}, "logit_bias"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "function", "function": {"name": f"t{i}"}} for i in range(129)]}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "x" * 65}}]}, "tools[0].function.name"),
        ({"model": ""}, "model"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_invalid_fields_get_400_naming_the_field(
    server: LiveServer, patch: dict[str, Any], param: str
) -> None:
    error = assert_error(post(server, ok_body(**patch)), 400, param)
    assert error["type"] == "invalid_request_error"


def test_batch_tier_points_to_the_batch_api(server: LiveServer) -> None:
    error = assert_error(post(server, ok_body(service_tier="batch")), 400, "service_tier")
    assert "batches" in error["message"].lower()


def test_missing_model_field_is_400_not_422(server: LiveServer) -> None:
    assert_error(post(server, {"messages": [{"role": "user", "content": "hi"}]}), 400, "model")


def test_nulls_for_optional_fields_mean_not_set(server: LiveServer) -> None:
    body = ok_body(
        service_tier="on_demand",
        n=1,
        reasoning_effort=None,
        reasoning_format=None,
        stop=None,
        temperature=None,
    )
    assert post(server, body).status_code == 200
    assert post(server, ok_body(stop=[])).status_code == 200


def test_malformed_json_is_400(server: LiveServer) -> None:
    error = assert_error(post(server, b'{"model": "x", "messages": [}'), 400)
    assert error["code"] == "invalid_json"
    assert_error(post(server, b"[1, 2]"), 400)
    assert_error(post(server, b""), 400)


def test_missing_and_invalid_keys_are_401(server: LiveServer) -> None:
    response = httpx.post(server.root + CHAT, json=ok_body(), timeout=10)
    assert_error(response, 401)
    assert_error(post(server, ok_body(), key="gsk_not_a_real_key"), 401)
    lowercase = httpx.post(
        server.root + CHAT, json=ok_body(), headers={"authorization": f"bearer {server.api_key}"}, timeout=60
    )
    assert lowercase.status_code == 200


def test_unknown_routes_are_404_json(server: LiveServer) -> None:
    response = httpx.get(server.root + "/openai/v1/nope", timeout=10)
    error = assert_error(response, 404)
    assert error["code"] == "unknown_url"


def test_double_slash_prefix_is_tolerated(server: LiveServer) -> None:
    assert post(server, ok_body(), path="//openai/v1/chat/completions").status_code == 200


def test_prompt_longer_than_the_context_window_is_400_before_generation(server: LiveServer) -> None:
    huge = "word " * 40000
    started = time.monotonic()
    response = post(server, ok_body(messages=[{"role": "user", "content": huge}]))
    error = assert_error(response, 400, "messages")
    assert error["code"] == "context_length_exceeded"
    assert "context window" in error["message"]
    assert time.monotonic() - started < 30


def test_sse_framing_is_data_lines_ending_with_done(server: LiveServer) -> None:
    with httpx.stream(
        "POST",
        server.root + CHAT,
        json=ok_body(stream=True, max_tokens=6),
        headers={"authorization": f"Bearer {server.api_key}"},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(response.iter_bytes()).decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(e[len("data: ") :]) for e in events[:-1]]
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    assert payloads[-1]["x_groq"]["usage"]["completion_tokens"] > 0
    assert "usage" not in payloads[0]


def test_healthz_and_metrics(server: LiveServer) -> None:
    assert httpx.get(server.root + "/healthz", timeout=10).status_code == 200
    post(server, ok_body(stream=True))
    text = httpx.get(server.root + "/metrics", timeout=10).text
    assert 'tiergate_requests_total{route="/chat/completions",status="200"}' in text
    assert "tiergate_time_to_first_token_seconds_bucket" in text
    assert "tiergate_tokens_generated_total" in text
    assert "tiergate_request_duration_seconds_bucket" in text


def test_revoked_key_stops_working_within_a_second(server: LiveServer) -> None:
    key = server.new_key()
    assert post(server, ok_body(), key=key).status_code == 200
    listing = server.cli("keys", "list")
    line = next(line for line in listing.splitlines() if key[-4:] in line)
    key_id = re.search(r"key_[0-9a-z]+", line).group(0)
    server.cli("keys", "revoke", key_id)
    time.sleep(1.0)
    assert_error(post(server, ok_body(), key=key), 401)


def test_oversize_body_is_413_without_reading_it(server_factory: Any) -> None:
    small = server_factory("--max-body-bytes", "2000")
    # Declared too large: refused from the header alone, before the body is sent.
    with socket.create_connection(("127.0.0.1", small.port), timeout=10) as sock:
        sock.sendall(
            b"POST /openai/v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer " + small.api_key.encode() + b"\r\ncontent-length: 900000000\r\n\r\n"
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413")
    assert "request_too_large" in reply

    # Chunked (no declared length): refused as soon as the running count passes the limit.
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "x", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}]}'

    response = httpx.post(
        small.root + CHAT,
        content=chunks(),
        headers={"authorization": f"Bearer {small.api_key}", "content-type": "application/json"},
        timeout=30,
    )
    assert_error(response, 413)
    assert post(small, ok_body()).status_code == 200


def test_client_disconnect_mid_stream_frees_the_slot_at_once(server_factory: Any) -> None:
    single = server_factory("--parallel", "1")
    body = ok_body(
        stream=True, max_tokens=3000, messages=[{"role": "user", "content": "Write a very long essay."}]
    )
    with httpx.stream(
        "POST",
        single.root + CHAT,
        json=body,
        headers={"authorization": f"Bearer {single.api_key}"},
        timeout=60,
    ) as response:
        lines = response.iter_lines()
        received = 0
        for line in lines:
            if line.startswith("data: "):
                received += 1
            if received >= 3:
                break
    # The only slot must be free now: a short request is served without waiting out 3000 tokens.
    started = time.monotonic()
    response = post(single, ok_body(max_tokens=2))
    assert response.status_code == 200
    assert response.json()["usage"]["queue_time"] < 2.0
    assert time.monotonic() - started < 20
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        metrics = httpx.get(single.root + "/metrics", timeout=10).text
        if 'tiergate_requests_cancelled_total{route="/chat/completions"} 1.0' in metrics:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the disconnect was not counted as cancelled (499)")
    assert "499" in single.log() or 'status="499"' in metrics
