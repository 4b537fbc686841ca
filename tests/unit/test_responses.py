"""The Responses service with scripted engines: stream events and output items agree, 400s name
Responses fields. Streams are read with the openai SDK's own event types and stream accumulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.scripted_app import TWO_WEATHER_CALLS as CALLS
from tests.scripted_app import RecordingEngine, post, scripted_app
from tiergate.errors import APIError
from tiergate.schemas.responses import ResponseCreateRequest
from tiergate.service.response_shape import ResponseShape
from tiergate.service.responses import start_response

THINKING = ["<think>", "\nCount", " the r's.", "\n</think>", "\n\n", "Three", "."]
TOOL = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
EVENTS = TypeAdapter(ResponseStreamEvent)


@pytest.fixture
def app_and_key(tmp_path: Path) -> tuple[Any, str]:
    return scripted_app(tmp_path, {"thinker": {"reasoning": True}, "plain": {}})


def script(app: Any, model: str, pieces: list[str]) -> RecordingEngine:
    engine: RecordingEngine = app.state.runtime.engines[model]
    engine.pieces = pieces
    return engine


def sdk(app: Any, key: str) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    return openai.AsyncOpenAI(base_url="http://t/openai/v1", api_key=key, http_client=http, max_retries=0)


async def run_service(app: Any, key: str, **body: Any) -> tuple[ResponseShape, list[dict[str, Any]]]:
    """start_response + the shape's event stream, as the router runs them."""
    runtime = app.state.runtime
    principal = await runtime.authenticator.authenticate(f"Bearer {key}")
    request = ResponseCreateRequest.model_validate({"input": "How many r's in strawberry?", **body})
    run = await start_response(runtime, principal, request)
    shape = ResponseShape(request, run)
    try:
        events = [event async for event in shape.stream()]
    finally:
        await run.finish()
    for event in events:
        EVENTS.validate_python(event)
    return shape, events


def check_indices(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every item is added and done at one index, in order, and sits at that index in the final output."""
    added = {e["output_index"]: e["item"]["id"] for e in events if e["type"] == "response.output_item.added"}
    done = {e["output_index"]: e["item"]["id"] for e in events if e["type"] == "response.output_item.done"}
    final = events[-1]["response"]["output"]
    assert added == done == {index: item["id"] for index, item in enumerate(final)}
    for event in events:
        if "output_index" in event and "item_id" in event:
            assert final[event["output_index"]]["id"] == event["item_id"], event
    return final


async def test_a_stream_with_two_tool_calls_completes_with_the_sdk_accumulator(
    app_and_key: tuple[Any, str],
) -> None:
    # The newline between the calls once opened a message item that the final output dropped: the
    # stream raised StopIteration inside the generator and died.
    app, key = app_and_key
    script(app, "plain", CALLS)
    client = sdk(app, key)
    async with client.responses.stream(
        model="plain", input="Weather in Paris and Rome?", tools=[TOOL], tool_choice="required"
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[-1] == "response.completed"
    assert "response.output_text.delta" not in kinds
    assert [(item.type, getattr(item, "arguments", None)) for item in final.output] == [
        ("function_call", '{"city": "Paris"}'),
        ("function_call", '{"city": "Rome"}'),
    ]


async def test_two_tool_calls_without_streaming_are_two_function_call_items(
    app_and_key: tuple[Any, str],
) -> None:
    app, key = app_and_key
    script(app, "plain", CALLS)
    response = await post(
        app,
        key,
        "/responses",
        {"model": "plain", "input": "Weather?", "tools": [TOOL], "tool_choice": "required"},
    )
    output = Response.model_validate(response.json()).output
    assert [item.type for item in output] == ["function_call", "function_call"]


async def test_streamed_reasoning_is_the_first_output_item_as_in_the_final_output(
    app_and_key: tuple[Any, str],
) -> None:
    app, key = app_and_key
    script(app, "thinker", THINKING)
    shape, events = await run_service(app, key, model="thinker")
    final = check_indices(events)
    assert [item["type"] for item in final] == ["reasoning", "message"]
    assert final[0]["content"] == [{"type": "reasoning_text", "text": "Count the r's."}]
    deltas = [e["delta"] for e in events if e["type"] == "response.reasoning_text.delta"]
    assert "".join(deltas).strip() == "Count the r's."
    text = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(text) == "Three." == final[1]["content"][0]["text"]
    assert [item["type"] for item in shape.output()] == ["reasoning", "message"]  # the same without stream
    assert events[-1]["response"]["usage"]["output_tokens_details"]["reasoning_tokens"] == 4


async def test_streamed_tool_calls_are_listed_at_the_indices_they_streamed_at(
    app_and_key: tuple[Any, str],
) -> None:
    app, key = app_and_key
    script(app, "plain", CALLS)
    _, events = await run_service(app, key, model="plain", tools=[TOOL], tool_choice="required")
    assert [item["type"] for item in check_indices(events)] == ["function_call", "function_call"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "plain", "max_output_tokens": 10**6}, "max_output_tokens"),
        ({"model": "plain", "reasoning": {"effort": "low"}}, "reasoning.effort"),
        (
            {
                "model": "plain",
                "text": {
                    "format": {
                        "type": "json_schema",
                        "name": "x",
                        "strict": True,
                        "schema": {"type": "object", "properties": {"a": {"type": "string", "pattern": "x"}}},
                    }
                },
            },
            "text.format.schema",
        ),
        (
            {"model": "plain", "tools": [{**TOOL, "parameters": {"type": "nonsense"}}]},
            "tools[0].parameters",
        ),
        (
            {"model": "plain", "tools": [TOOL], "tool_choice": {"type": "function", "name": "nope"}},
            "tool_choice",
        ),
        ({"model": "plain", "input": [{"role": "user", "content": "word " * 500}]}, "input"),
    ],
)
async def test_400s_name_the_responses_field(
    app_and_key: tuple[Any, str], body: dict[str, Any], param: str
) -> None:
    app, key = app_and_key
    script(app, "plain", ["{}"])
    with pytest.raises(APIError) as info:
        await run_service(app, key, **body)
    assert info.value.status == 400 and info.value.param == param
    assert "max_completion_tokens" not in info.value.message and "reasoning_effort" not in info.value.message


async def test_an_input_with_nothing_to_answer_is_a_400_naming_input(app_and_key: tuple[Any, str]) -> None:
    app, key = app_and_key
    response = await post(app, key, "/responses", {"model": "plain", "input": []})
    assert response.status_code == 400 and response.json()["error"]["param"] == "input"
