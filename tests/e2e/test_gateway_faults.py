"""Gateway mode against a scripted upstream (tests/e2e/fake_upstream.py): what reaches the upstream for
each tier and kind, and how its failures come back to the client (502, 503, 400, a cut stream).

One live tiergate serves every model below from the same fake; the fake's upstream `model` name picks
its behaviour. A second fake reports its load, for load-aware flex.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import groq
import httpx
import openai
import pytest

from tests.conftest import LiveServer, free_port, start_server
from tests.e2e.fake_upstream import TOKENIZE_COUNT, FakeUpstream

HI = [{"role": "user", "content": "Say hi."}]
CHAT = "/openai/v1/chat/completions"
_PROMISE_BREAKERS = ("notjson", "wrongjson", "badargs", "othertool", "badfunction")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
NAME_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "person",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
            "additionalProperties": False,
        },
    },
}


def _model(model_id: str, base_url: str, upstream_model: str, kind: str, **options: Any) -> str:
    extra = "".join(f"{key} = {value!r}\n" for key, value in options.items()).replace("'", '"')
    return (
        f'[[models]]\nid = "{model_id}"\nengine = "upstream"\n[models.options]\n{extra}'
        f'[[models.options.upstreams]]\nbase_url = "{base_url}"\nmodel = "{upstream_model}"\n'
        f'kind = "{kind}"\napi_key_env = "FAKE_UPSTREAM_KEY"\n\n'
    )


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    recording, loaded = FakeUpstream().start(), FakeUpstream().start()
    yield recording, loaded
    recording.stop()
    loaded.stop()


@pytest.fixture(scope="module")
def gateway(
    fakes: tuple[FakeUpstream, FakeUpstream], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    recording, loaded = fakes
    url = recording.base_url
    config = "".join(
        [
            _model("rec-vllm", url, "echo", "vllm"),
            _model("rec-sglang", url, "echo", "sglang"),
            _model("rec-openai", url, "echo", "openai"),
            _model("rec-groq", url, "echo", "groq"),
            _model("rec-generic", url, "echo", "generic"),
            _model("counted", url, "nousage", "vllm"),
            _model("garbage", url, "garbage", "generic"),
            _model("boom", url, "boom", "generic"),
            _model("bad", url, "bad", "generic"),
            _model("cut", url, "cut", "generic"),
            _model("unfinished", url, "unfinished", "generic"),
            _model("slow", url, "slow", "generic"),
            _model("dead", f"http://127.0.0.1:{free_port()}/v1", "echo", "generic"),
            _model("loaded", loaded.base_url, "echo", "vllm", load_interval=0.1),
            *(_model(name, url, name, "generic") for name in _PROMISE_BREAKERS),
        ]
    )
    data_dir = tmp_path_factory.mktemp("gateway-faults")
    path = Path(data_dir) / "gateway.toml"
    path.write_text(config)
    live = start_server(data_dir / "data", "--config", str(path), env={"FAKE_UPSTREAM_KEY": "sk-fake-secret"})
    yield live
    live.stop()


def _client(gateway: LiveServer) -> groq.Groq:
    return groq.Groq(base_url=gateway.root, api_key=gateway.api_key, max_retries=0, timeout=30)


def _post(gateway: LiveServer, body: dict[str, Any]) -> httpx.Response:
    headers = {"authorization": f"Bearer {gateway.api_key}"}
    return httpx.post(f"{gateway.root}{CHAT}", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize(
    ("model", "tier", "expected"),
    [
        ("rec-vllm", "on_demand", {"priority": 0}),
        ("rec-vllm", "flex", {"priority": 100}),
        ("rec-sglang", "on_demand", {"priority": 0}),
        ("rec-sglang", "flex", {"priority": 100}),
        ("rec-openai", "on_demand", {"service_tier": "default"}),
        ("rec-openai", "flex", {"service_tier": "flex"}),
        ("rec-groq", "on_demand", {"service_tier": "on_demand"}),
        ("rec-groq", "flex", {"service_tier": "flex"}),
        ("rec-generic", "flex", {}),
    ],
)
def test_the_tier_reaches_each_kind_of_upstream_in_its_own_field(
    gateway: LiveServer, fakes: tuple[FakeUpstream, FakeUpstream], model: str, tier: str, expected: dict
) -> None:
    recording = fakes[0]
    before = len(recording.requests)
    # The client's own `priority` must not survive: the gateway decides the tier.
    body = {"model": model, "messages": HI, "service_tier": tier, "priority": -999, "max_tokens": 5}
    response = _post(gateway, body)
    assert response.status_code == 200, response.text
    assert response.json()["service_tier"] == tier
    sent = recording.requests[before:]
    assert len(sent) == 1
    forwarded = {key: sent[0][key] for key in ("priority", "service_tier") if key in sent[0]}
    assert forwarded == expected
    assert sent[0]["model"] == "echo"
    assert sent[0]["max_tokens"] == 5
    assert sent[0]["_authorization"] == "Bearer sk-fake-secret"


def test_performance_reaches_vllm_as_the_lowest_priority_number(
    gateway: LiveServer, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    recording = fakes[0]
    project, key = "perf", None
    gateway.cli("projects", "create", project, "--performance")
    key = gateway.new_key(project)
    before = len(recording.requests)
    response = httpx.post(
        f"{gateway.root}{CHAT}",
        json={"model": "rec-vllm", "messages": HI, "service_tier": "performance"},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert recording.requests[before]["priority"] == -100


def test_the_answer_is_reissued_in_our_shape(gateway: LiveServer) -> None:
    raw = _client(gateway).chat.completions.with_raw_response.create(model="rec-vllm", messages=HI)
    completion = raw.parse()
    assert completion.id.startswith("chatcmpl-") and completion.id != "upstream-id"
    assert completion.model == "rec-vllm"
    assert completion.system_fingerprint == "fp_upstream_vllm"
    assert completion.choices[0].message.content == "hello there"
    assert completion.usage.prompt_tokens == 11 and completion.usage.completion_tokens == 3
    assert completion.usage.total_time >= 0 and completion.usage.queue_time >= 0
    assert raw.headers["x-request-id"] == completion.x_groq.id
    assert int(raw.headers["x-ratelimit-remaining-requests"]) > 0


def test_a_stream_is_reissued_chunk_by_chunk_with_usage_at_the_end(gateway: LiveServer) -> None:
    stream = _client(gateway).chat.completions.create(model="rec-vllm", messages=HI, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello there"
    assert all(c.id == chunks[0].id and c.id.startswith("chatcmpl-") for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].x_groq is not None and chunks[-1].x_groq.usage is not None


def test_prompt_tokens_come_from_the_upstream_tokenizer_when_it_reports_no_usage(
    gateway: LiveServer, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    calls = fakes[0].tokenize_calls
    completion = _client(gateway).chat.completions.create(model="counted", messages=HI)
    assert fakes[0].tokenize_calls == calls + 1
    assert completion.usage.prompt_tokens == TOKENIZE_COUNT
    # No reported completion count: estimated from the text ("hello there", 11 chars -> 3 tokens).
    assert completion.usage.completion_tokens == 3


def test_garbage_from_the_upstream_is_a_502(gateway: LiveServer) -> None:
    response = _post(gateway, {"model": "garbage", "messages": HI})
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "bad_gateway"
    assert "x-ratelimit-limit-requests" in response.headers


def test_an_upstream_5xx_is_a_502_after_the_tries(gateway: LiveServer) -> None:
    response = _post(gateway, {"model": "boom", "messages": HI})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "bad_gateway"


def test_an_unreachable_upstream_is_a_503_in_groqclouds_shape(gateway: LiveServer) -> None:
    for _ in range(2):
        response = _post(gateway, {"model": "dead", "messages": HI})
        assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "service_unavailable" and "dead" in error["message"]
    # Nothing was served: the admissions were withdrawn, not counted against the limits.
    headers = response.headers
    assert headers["x-ratelimit-remaining-requests"] == headers["x-ratelimit-limit-requests"]


def test_an_upstream_4xx_is_passed_through_once_and_never_retried(
    gateway: LiveServer, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    before = len(fakes[0].bodies("bad"))
    response = _post(gateway, {"model": "bad", "messages": HI})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "bad thing"
    assert response.json()["error"]["code"] == "bad_thing"
    assert len(fakes[0].bodies("bad")) == before + 1


@pytest.mark.parametrize("model", ["cut", "unfinished"])
def test_a_stream_cut_midway_ends_with_an_error_event_not_a_hang(gateway: LiveServer, model: str) -> None:
    body = {"model": model, "messages": HI, "stream": True}
    headers = {"authorization": f"Bearer {gateway.api_key}"}
    with httpx.stream("POST", f"{gateway.root}{CHAT}", json=body, headers=headers, timeout=10) as response:
        assert response.status_code == 200
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert '"hello"' in "".join(events)
    assert '"error"' in events[-2] and "bad_gateway" in events[-2]
    assert events[-1] == "data: [DONE]"


def test_flex_is_refused_with_498_while_a_vllm_upstream_reports_waiting_requests(
    gateway: LiveServer, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    loaded = fakes[1]
    assert _post(gateway, {"model": "loaded", "messages": HI, "service_tier": "flex"}).status_code == 200
    loaded.waiting = 7
    try:
        deadline = time.monotonic() + 5
        status = 200
        while time.monotonic() < deadline and status == 200:
            status = _post(gateway, {"model": "loaded", "messages": HI, "service_tier": "flex"}).status_code
        assert status == 498
        # on_demand still queues at the upstream: only flex is refused.
        assert _post(gateway, {"model": "loaded", "messages": HI}).status_code == 200
    finally:
        loaded.waiting = 0


def test_upstream_api_keys_never_reach_the_log(gateway: LiveServer) -> None:
    assert "sk-fake-secret" not in gateway.log()


def test_the_responses_api_works_in_front_of_an_upstream(gateway: LiveServer) -> None:
    api = openai.OpenAI(base_url=gateway.openai_base, api_key=gateway.api_key, max_retries=0)
    response = api.responses.create(model="rec-vllm", input="Say hi.")
    assert response.output_text == "hello there"
    assert response.usage is not None and response.usage.output_tokens == 3


def test_a_client_leaving_mid_stream_frees_the_slot_and_hangs_up_on_the_upstream(
    gateway: LiveServer, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    recording = fakes[0]
    hung_up = recording.hung_up
    body = {"model": "slow", "messages": HI, "stream": True}
    headers = {"authorization": f"Bearer {gateway.api_key}"}
    with httpx.stream("POST", f"{gateway.root}{CHAT}", json=body, headers=headers, timeout=10) as response:
        lines = response.iter_lines()
        assert any('"content":"0 "' in line for line in lines)  # the first chunk, then hang up
    # The stream would last 10 s; leaving after the first chunk must end it upstream at once.
    deadline = time.monotonic() + 5
    while recording.hung_up == hung_up and time.monotonic() < deadline:
        time.sleep(0.05)
    assert recording.hung_up == hung_up + 1
    metrics = httpx.get(f"{gateway.root}/metrics", timeout=5).text
    busy = [line for line in metrics.splitlines() if line.startswith('tiergate_slots_busy{model="slow"')]
    assert busy and all(line.endswith(" 0.0") for line in busy)


def _stream_events(gateway: LiveServer, body: dict[str, Any]) -> list[str]:
    headers = {"authorization": f"Bearer {gateway.api_key}"}
    body = {**body, "stream": True}
    with httpx.stream("POST", f"{gateway.root}{CHAT}", json=body, headers=headers, timeout=10) as response:
        assert response.status_code == 200
        return [line for line in response.iter_lines() if line.startswith("data: ")]


def _stream_error(events: list[str]) -> dict[str, Any]:
    assert events[-1] == "data: [DONE]"
    return json.loads(events[-2].removeprefix("data: "))["error"]


@pytest.mark.parametrize(
    ("model", "response_format", "failed"),
    [
        ("notjson", {"type": "json_object"}, "Sure! {oops"),
        ("wrongjson", NAME_SCHEMA, '{"name": 5}'),
    ],
)
def test_upstream_json_that_breaks_the_requested_format_is_a_400_json_validate_failed(
    gateway: LiveServer, model: str, response_format: dict[str, Any], failed: str
) -> None:
    body = {"model": model, "messages": HI, "response_format": response_format}
    response = _post(gateway, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "json_validate_failed" and error["failed_generation"] == failed
    # The same answer streamed: everything went out, then the stream ends with the error.
    error = _stream_error(_stream_events(gateway, body))
    assert error["code"] == "json_validate_failed" and error["failed_generation"] == failed


def test_the_groq_sdk_sees_json_validate_failed_as_a_bad_request(gateway: LiveServer) -> None:
    with pytest.raises(groq.BadRequestError) as refused:
        _client(gateway).chat.completions.create(
            model="notjson", messages=HI, response_format={"type": "json_object"}
        )
    assert refused.value.body["error"]["code"] == "json_validate_failed"


@pytest.mark.parametrize(("model", "message"), [("badargs", "as JSON"), ("othertool", "launch_rocket")])
def test_upstream_tool_calls_that_break_the_tools_offered_are_a_400_tool_use_failed(
    gateway: LiveServer, model: str, message: str
) -> None:
    body = {"model": model, "messages": HI, "tools": [WEATHER]}
    response = _post(gateway, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "tool_use_failed" and message in error["message"]
    assert "failed_generation" in error
    assert _stream_error(_stream_events(gateway, body))["code"] == "tool_use_failed"


def test_a_malformed_tool_call_from_the_upstream_is_a_502_or_a_stream_error_never_a_500(
    gateway: LiveServer,
) -> None:
    body = {"model": "badfunction", "messages": HI, "tools": [WEATHER]}
    response = _post(gateway, body)
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "bad_gateway"
    assert _stream_error(_stream_events(gateway, body))["code"] == "bad_gateway"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        # A strict schema outside the subset (no additionalProperties: false).
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "x",
                        "strict": True,
                        "schema": {
                            "type": "object",
                            "properties": {"a": {"type": "string"}},
                            "required": ["a"],
                        },
                    },
                }
            },
            "response_format.json_schema.schema",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"reasoning_format": "parsed"}, "reasoning_format"),
        ({"include_reasoning": True, "reasoning_format": "hidden"}, "include_reasoning"),
    ],
)
def test_requests_the_embedded_engine_refuses_are_refused_for_upstream_models_before_sending(
    gateway: LiveServer, fakes: tuple[FakeUpstream, FakeUpstream], extra: dict[str, Any], param: str
) -> None:
    before = len(fakes[0].requests)
    response = _post(gateway, {"model": "rec-generic", "messages": HI, **extra})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert len(fakes[0].requests) == before  # refused before admission: the upstream never saw it


def test_response_format_and_tools_reach_the_upstream_and_legacy_functions_go_as_tools(
    gateway: LiveServer, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    recording = fakes[0]
    before = len(recording.requests)
    body = {"model": "rec-generic", "messages": HI, "tools": [WEATHER], "tool_choice": "auto"}
    assert _post(gateway, body).status_code == 200
    fn = WEATHER["function"]
    legacy = {
        "model": "rec-generic",
        "messages": HI,
        "functions": [fn],
        "function_call": {"name": "get_weather"},
    }
    assert _post(gateway, legacy).status_code == 200
    assert (
        _post(gateway, {"model": "rec-generic", "messages": HI, "response_format": NAME_SCHEMA}).status_code
        == 400
    )
    tools, functions, schema = recording.requests[before:]
    assert tools["tools"] == [WEATHER] and tools["tool_choice"] == "auto"
    assert "functions" not in functions and "function_call" not in functions
    assert functions["tools"] == [{"type": "function", "function": fn}]
    assert functions["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert schema["response_format"] == NAME_SCHEMA
